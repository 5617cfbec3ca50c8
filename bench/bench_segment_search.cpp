// Search speed and quality: the DIP planner's segment search (phase 1 over phase 2) on VLM-L
// (PP 8, TP 8, H800), 32 packed OBELICS microbatches, for time budgets from 10 ms to 10 s and 1
// or 2 threads. Counters: the estimated iteration time of the best order found (makespan_ms),
// rollouts, and the ratio to the natural order. The target: after at most 1 s on 2
// cores, within 1% of what a 10x longer search finds.
//
//   build/bench/dip-bench-segment_search --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "vlm_l_workload.hpp"

#include <memory>

#include <dip/schedule/pass_search.hpp>

namespace {

const dip_bench::search_workload& vlm_l() {
  static const dip_bench::search_workload w = dip_bench::vlm_l_batches().next(32);
  return w;
}

void search(benchmark::State& state) {
  const dip_bench::search_workload& w = vlm_l();
  const dip::pass_index segments(*w.graph);
  const double natural = dip::to_milliseconds(
      dip::interleave_stages(*w.graph, segments, dip::default_pass_priority(segments), w.interleave)
          .estimated_makespan);
  dip::pass_search_options options;
  options.time_budget_ms = double(state.range(0));
  options.threads = unsigned(state.range(1));
  options.interleave = w.interleave;
  dip::pass_search_result result;
  for (auto _ : state) {
    result = dip::search_pass_order(*w.graph, options);
    benchmark::DoNotOptimize(result.makespan);
  }
  state.counters["makespan_ms"] = dip::to_milliseconds(result.makespan);
  state.counters["vs_natural"] = dip::to_milliseconds(result.makespan) / natural;
  state.counters["rollouts"] = double(result.rollouts);
  // Phase 1's tree search: each rollout is one phase-2 interleaving of a candidate order.
  state.counters["rollouts_per_s"] =
      benchmark::Counter(double(result.rollouts) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["within_cap"] = result.within_cap ? 1 : 0;
  state.counters["stages"] = double(w.graph->size());
}

}  // namespace

BENCHMARK(search)
    ->ArgsProduct({{10, 100, 1000, 10000}, {1, 2}})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
