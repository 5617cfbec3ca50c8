#!/usr/bin/env bash
# Builds dip in build/ (Release) and runs every test: unit tests, the header self-containment
# check, the consumer projects, the examples, and the GPU smoke test (skipped without a GPU).
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit   or   scripts/test.sh -R consumer
#
# DIP_SANITIZE="address thread" additionally builds build-asan (ASan+UBSan) and/or build-tsan
# (TSan), without CUDA, and runs the unit tests and examples there.
#
# Then the short fuzz runs: scripts/fuzz.sh in build-fuzz, DIP_FUZZ_SECONDS per target (default
# 20; 0 skips them), when clang++ is found (fuzz/README.md).
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

fuzz_seconds=${DIP_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" = 0 ]; then
  echo "dip: fuzzing skipped (DIP_FUZZ_SECONDS=0)"
elif command -v clang++ >/dev/null 2>&1; then
  scripts/fuzz.sh "$fuzz_seconds"
else
  echo "dip: fuzzing skipped: no clang++ (libFuzzer needs Clang; scripts/install-deps.sh installs it)"
fi
