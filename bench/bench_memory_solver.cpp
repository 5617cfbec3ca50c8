// Speed and quality of the phase-3 memory-strategy solver (solve_memory_problem) on one
// pipeline-like rank of 1000 and 5000 forward/backward pairs, 8 and 32 in flight, the cap 20%
// and 50% of the way from the smallest to the keep-everything peak (the tight cases: loose caps
// are solved exactly in about a millisecond). Counters: the proven gap (extra - bound) / bound
// and whether the choice is proven optimal. The instances are those of the test "large
// pipeline-like ranks" (same generator, another seed).
//
//   build/bench/dip-bench-memory_solver --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstddef>

#include <dip/schedule/memory_solver.hpp>

#include "memory_instances.hpp"

namespace {

void solve(benchmark::State& state) {
  const dip::memory_problem pr =
      dip_bench::pipeline_rank(std::size_t(state.range(0)), int(state.range(1)), double(state.range(2)) / 100, 2024);
  dip::memory_solution solution;
  for (auto _ : state) {
    solution = dip::solve_memory_problem(pr);
    benchmark::DoNotOptimize(solution.extra);
  }
  state.counters["gap_pct"] = 100 * solution.gap();
  state.counters["optimal"] = solution.optimal ? 1 : 0;
  state.counters["components"] = double(solution.components);
}

BENCHMARK(solve)
    ->ArgNames({"pairs", "in_flight", "cap_pct"})
    ->ArgsProduct({{1000, 5000}, {8, 32}, {20, 50}})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
