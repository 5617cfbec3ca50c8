#!/usr/bin/env bash
# Builds dip in build/ (Release) and runs every test: unit tests, the header self-containment
# check, the consumer projects, the examples, and the GPU smoke test (skipped without a GPU).
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit   or   scripts/test.sh -R consumer
#
# Then the sanitizers (DIP_SANITIZE, default "address thread"; "" skips them): build-asan
# (ASan+UBSan) runs the unit tests and examples; build-tsan (TSan) the threaded parts: the
# asynchronous planner, the MCTS workers and the CPU executor. Both without CUDA, Python,
# tools or benchmarks.
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

# The threaded tests and their targets (TSan builds only these).
tsan_targets=(dip-test-async_planner dip-test-dip_async dip-test-pass_search dip-test-planner dip-test-executor)
tsan_tests='^test_(async_planner|dip_async|pass_search|planner|executor)/'
for sanitizer in ${DIP_SANITIZE-address thread}; do
  case "$sanitizer" in
    address) dir=build-asan flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined" ;;
    thread)  dir=build-tsan flags="-fsanitize=thread" ;;
    *) echo "dip: DIP_SANITIZE: unknown sanitizer '$sanitizer' (address, thread)" >&2; exit 2 ;;
  esac
  flags="$flags -fno-omit-frame-pointer"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDIP_BUILD_TESTS=ON \
        -DDIP_ENABLE_CUDA=OFF -DDIP_BUILD_BENCH=OFF -DDIP_BUILD_TOOLS=OFF -DDIP_BUILD_PYTHON=OFF \
        -DDIP_HEADER_CHECK=OFF \
        -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags"
  if [ "$sanitizer" = thread ]; then
    cmake --build "$dir" -j "$jobs" --target "${tsan_targets[@]}"
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" -R "$tsan_tests"
  else
    cmake --build "$dir" -j "$jobs"
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" -L "unit|example"
  fi
done

fuzz_seconds=${DIP_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" = 0 ]; then
  echo "dip: fuzzing skipped (DIP_FUZZ_SECONDS=0)"
elif command -v clang++ >/dev/null 2>&1; then
  scripts/fuzz.sh "$fuzz_seconds"
else
  echo "dip: fuzzing skipped: no clang++ (libFuzzer needs Clang; scripts/install-deps.sh installs it)"
fi
