#!/usr/bin/env bash
# Builds dip's libFuzzer targets in build-fuzz (Clang, ASan + UBSan, -O1 -g), replays every kept
# crash input under tests/fuzz/<target>/ (each must now pass), then fuzzes each target for the
# given seconds (default 20) from a copy of fuzz/corpus/<target>/ and prints libFuzzer's figures:
# executions (#N DONE), coverage (cov: edges, ft: features), corpus size.
#
#   scripts/fuzz.sh            # 20 s per target, as scripts/test.sh runs it
#   scripts/fuzz.sh 600        # a longer run (fuzz/README.md)
#   DIP_FUZZ_TARGETS="trace" scripts/fuzz.sh 60
#
# Exits non-zero when a regression input fails or a target crashes; libFuzzer then leaves the
# input as build-fuzz/fuzz-runs/<target>/crash-* (reproduce: build-fuzz/fuzz/dip-fuzz-<target> FILE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-20}
targets=(${DIP_FUZZ_TARGETS:-model_json trace plan_batch})
build=build-fuzz
jobs=$(nproc 2>/dev/null || echo 2)

# Only the fuzz targets: every other part of the project is off (and needs no Clang build).
CXX=${DIP_FUZZ_CXX:-clang++} cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDIP_BUILD_FUZZERS=ON -DDIP_BUILD_TESTS=OFF -DDIP_BUILD_EXAMPLES=OFF -DDIP_BUILD_BENCH=OFF \
  -DDIP_BUILD_TOOLS=OFF -DDIP_BUILD_REFERENCE_EXECUTOR=OFF -DDIP_BUILD_PYTHON=OFF -DDIP_INSTALL=OFF \
  -DDIP_ENABLE_CUDA=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]/#/dip-fuzz-}"

status=0
for target in "${targets[@]}"; do
  binary=$build/fuzz/dip-fuzz-$target
  runs=$build/fuzz-runs/$target
  # A fresh copy of the seed corpus each time: libFuzzer adds to the corpus it is given, and the
  # source tree stays as committed.
  rm -rf "$runs"
  mkdir -p "$runs/corpus"
  cp fuzz/corpus/"$target"/* "$runs/corpus/"

  regressions=(tests/fuzz/"$target"/*)
  if [ -e "${regressions[0]}" ]; then
    echo "dip fuzz: $target: replaying ${#regressions[@]} regression input(s) from tests/fuzz/$target"
    if ! "$binary" -runs=1 "${regressions[@]}" >"$runs/regressions.log" 2>&1; then
      tail -n 40 "$runs/regressions.log" >&2
      echo "dip fuzz: $target: a regression input fails again (log: $runs/regressions.log)" >&2
      status=1
      continue
    fi
  fi

  echo "dip fuzz: $target: fuzzing for ${seconds} s"
  if (cd "$runs" && "../../fuzz/dip-fuzz-$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 corpus >fuzz.log 2>&1); then
    # The last coverage line and the final count: "#N DONE cov: E ft: F corp: C/S ..."
    { grep -E '^#[0-9]+[[:space:]]+DONE' "$runs/fuzz.log" | tail -n 1 || true; } | sed "s/^/dip fuzz: $target: /"
  else
    tail -n 60 "$runs/fuzz.log" >&2
    echo "dip fuzz: $target: CRASH (input: $(ls "$runs"/crash-* "$runs"/timeout-* "$runs"/oom-* 2>/dev/null | head -n 1);" \
         "log: $runs/fuzz.log)" >&2
    status=1
  fi
done
exit "$status"
