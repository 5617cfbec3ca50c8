#!/usr/bin/env bash
# Builds dip in build/ (Release) and runs every test: unit tests, the header self-containment
# check, the consumer projects, the examples, and the GPU smoke test (skipped without a GPU).
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit   or   scripts/test.sh -R consumer
#
# First the managed virtual environment .venv/: `pip install ".[torch,test]"` (dip's wheel, the
# pinned torch from PyPI, about 3 GB the first time; pip's own settings such as PIP_INDEX_URL
# apply), redone only when the package's inputs change. The torch tests run under its python
# and must not skip (DIP_REQUIRE_TORCH). DIP_TORCH=0 leaves .venv/ alone and lets them skip
# (offline work; refused when CI is set).
#
# The sanitizers (DIP_SANITIZE, default "address thread"; "" leaves them out): with "address" the
# main build compiles the unit tests with ASan+UBSan (at -O1 -g1; tools, examples, benchmarks and
# the Python module stay uninstrumented), so the one test run checks them; with "thread" a second
# build, build-tsan (TSan), runs the threaded parts: the asynchronous planner, the MCTS workers
# and the CPU executor, without CUDA, Python, tools, benchmarks or examples. (A separate ASan
# build of the unit tests took 21 of the 78 minutes of a fresh-clone run on 2 cores, most of it
# compiling what the main build had just compiled.)
#
# Then the short fuzz runs: scripts/fuzz.sh in build-fuzz, DIP_FUZZ_SECONDS per target (default
# 20; 0 skips them), when clang++ is found (fuzz/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# How long each phase took, printed at the end (CI's limit is 60 minutes on 2 cores: this says
# where they went).
phase_times=()
phase_started=$SECONDS
phase_done() {
  phase_times+=("$1 $((SECONDS - phase_started)) s")
  echo "dip: [$(date +%T)] $1 done in $((SECONDS - phase_started)) s"
  phase_started=$SECONDS
}
trap 'echo "dip: phase times: ${phase_times[*]/%/,} (total ${SECONDS} s)"' EXIT

# Ninja for a new build folder where it is installed: it keeps both cores busy across targets and
# its log (.ninja_log) says what each object took to compile. A folder keeps its generator.
generator_for() { # sets generator=(...) for build folder $1
  generator=()
  if [ ! -f "$1/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
    generator=(-G Ninja)
  fi
}

scripts/install-deps.sh
phase_done "dependencies"

torch_options=()
if [ "${DIP_TORCH:-1}" = 0 ]; then
  if [ -n "${CI:-}" ]; then
    echo "dip: DIP_TORCH=0 under CI: the torch tests must run there" >&2
    exit 2
  fi
  echo "dip: .venv/ not refreshed (DIP_TORCH=0); the torch tests may skip"
  torch_options=(-DDIP_REQUIRE_TORCH=OFF)
else
  venv=$PWD/.venv
  if ! "$venv/bin/python" -c "" 2>/dev/null; then # missing, or its base interpreter is gone
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  # Everything the wheel is built from, and the interpreter it is built for.
  inputs=$({ "$venv/bin/python" --version
             find pyproject.toml CMakeLists.txt cmake include python/CMakeLists.txt python/src \
                  python/dip -type f ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
           } | sha256sum | cut -d' ' -f1)
  stamp=$venv/.dip-package-inputs
  if [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    echo "dip: .venv/ is up to date (dip, torch, pytest)"
  else
    echo "dip: pip install '.[torch,test]' into .venv/"
    rm -f "$stamp"
    pip=("$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
    # The build requirements go into .venv/ too and the build is not isolated, so that the
    # build folder (build-wheel/) sees the same pybind11 each time and rebuilds only what changed.
    mapfile -t build_requires < <("$venv/bin/python" -c 'import tomllib
print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")')
    "${pip[@]}" "${build_requires[@]}"
    "${pip[@]}" --no-build-isolation ".[torch,test]"
    echo "$inputs" > "$stamp"
  fi
  torch_options=(-DDIP_TORCH_PYTHON="$venv/bin/python" -DDIP_REQUIRE_TORCH=ON)
fi
phase_done "venv"

sanitizers=${DIP_SANITIZE-address thread}
for sanitizer in $sanitizers; do
  case "$sanitizer" in
    address | thread) ;;
    *) echo "dip: DIP_SANITIZE: unknown sanitizer '$sanitizer' (address, thread)" >&2; exit 2 ;;
  esac
done
test_sanitizers=
if [[ " $sanitizers " == *" address "* ]]; then test_sanitizers=address,undefined; fi

jobs=$(nproc 2>/dev/null || echo 2)
generator_for build
# The unit tests at -O1 (tests/CMakeLists.txt, DIP_TEST_COMPILE_OPTIONS), with ASan+UBSan unless
# DIP_SANITIZE leaves "address" out; everything else at -O3.
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DDIP_BUILD_TESTS=ON \
      -DDIP_TEST_COMPILE_OPTIONS=-O1 -DDIP_TEST_SANITIZERS="$test_sanitizers" "${torch_options[@]}"
cmake --build build -j "$jobs"
phase_done "build"
ctest --test-dir build --output-on-failure -j "$jobs" "$@"
phase_done "tests"

# The threaded tests and their targets (TSan builds only these).
tsan_targets=(dip-tests-threaded) # tests/CMakeLists.txt: dip_test_group_threaded
tsan_tests='^test_(async_planner|dip_async|pass_search|planner|executor)/'
# Not under TSan: the classic schedules on the executor (2.5 min there; the same executor threads
# as the DIP plans it runs, which stay; the main build runs it).
tsan_skipped='^test_executor/classic plans'
if [[ " $sanitizers " == *" thread "* ]]; then
  # The unit tests' own sanitizer options (tests/CMakeLists.txt: -O1 -g1, frame pointers; a test
  # compiled so takes 2.3x less time to build than at RelWithDebInfo's -O2 -g: test_planner.cpp
  # 67 s against 158 s on this 2-core machine).
  generator_for build-tsan
  cmake -S . -B build-tsan "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DDIP_TEST_COMPILE_OPTIONS=-O1 -DDIP_TEST_SANITIZERS=thread \
        -DDIP_BUILD_TESTS=ON -DDIP_BUILD_EXAMPLES=OFF \
        -DDIP_ENABLE_CUDA=OFF -DDIP_BUILD_BENCH=OFF -DDIP_BUILD_TOOLS=OFF -DDIP_BUILD_PYTHON=OFF \
        -DDIP_HEADER_CHECK=OFF
  cmake --build build-tsan -j "$jobs" --target "${tsan_targets[@]}"
  phase_done "thread build"
  ctest --test-dir build-tsan --output-on-failure -j "$jobs" -R "$tsan_tests" -E "$tsan_skipped"
  phase_done "thread tests"
fi

fuzz_seconds=${DIP_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" = 0 ]; then
  echo "dip: fuzzing skipped (DIP_FUZZ_SECONDS=0)"
elif command -v clang++ >/dev/null 2>&1; then
  scripts/fuzz.sh "$fuzz_seconds"
  phase_done "fuzz"
else
  echo "dip: fuzzing skipped: no clang++ (libFuzzer needs Clang; scripts/install-deps.sh installs it)"
fi
