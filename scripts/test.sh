#!/usr/bin/env bash
# Builds dip in build/ (Release) and runs every test: unit tests, the header self-containment
# check, the consumer projects, the examples, and the GPU smoke test (skipped without a GPU).
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit   or   scripts/test.sh -R consumer
#
# DIP_SANITIZE="address thread" additionally builds build-asan (ASan+UBSan) and/or build-tsan
# (TSan), without CUDA, and runs the unit tests and examples there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDIP_BUILD_TESTS=ON
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" "$@"

for sanitizer in ${DIP_SANITIZE:-}; do
  case "$sanitizer" in
    address) dir=build-asan flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined" ;;
    thread)  dir=build-tsan flags="-fsanitize=thread" ;;
    *) echo "dip: DIP_SANITIZE: unknown sanitizer '$sanitizer' (address, thread)" >&2; exit 2 ;;
  esac
  flags="$flags -fno-omit-frame-pointer"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDIP_BUILD_TESTS=ON \
        -DDIP_ENABLE_CUDA=OFF -DDIP_BUILD_BENCH=OFF \
        -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags"
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" -L "unit|example"
done
