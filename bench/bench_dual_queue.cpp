// Phase 2 speed: the dual-queue interleaver (schedule/dual_queue.hpp) orders every stage of one
// batch per call, and the segment search calls it once per rollout, so stages ordered per second
// bounds how many orders the search can try in its budget. Workload: VLM-L (PP 8, TP 8, H800) on
// its modality-aware partition, 8 to 64 packed OBELICS microbatches, the GPU's memory as the cap.
//
//   build/bench/dip-bench-dual_queue --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include "vlm_l_workload.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

#include <dip/schedule/dual_queue.hpp>

namespace {

void interleave(benchmark::State& state) {
  const dip_bench::search_workload w = dip_bench::vlm_l_batches().next(std::size_t(state.range(0)));
  const dip::pass_index segments(*w.graph);
  const std::vector<std::uint32_t> priority = dip::default_pass_priority(segments);
  double makespan_ms = 0;
  for (auto _ : state) {
    const dip::interleave_result r = dip::interleave_stages(*w.graph, segments, priority, w.interleave);
    makespan_ms = dip::to_milliseconds(r.estimated_makespan);
    benchmark::DoNotOptimize(makespan_ms);
  }
  const double stages = double(w.graph->size());
  state.counters["stages"] = stages;
  state.counters["stages_per_s"] = benchmark::Counter(stages * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["orders_per_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["makespan_ms"] = makespan_ms;
}

}  // namespace

BENCHMARK(interleave)->RangeMultiplier(2)->Range(8, 64)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
