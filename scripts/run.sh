#!/usr/bin/env bash
# Builds dip (Release, in build/) and runs its main job with this script's arguments.
# Build output goes to stderr so that the main job's stdout stays clean for pipes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ---- main job: the program to run, relative to build/; its file name is its CMake target ----
MAIN_JOB="tools/dip-plan"

{
  scripts/install-deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDIP_BUILD_TESTS=ON
  cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target "$(basename "$MAIN_JOB")"
} >&2

exec "build/$MAIN_JOB" "$@"
