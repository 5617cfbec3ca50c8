// Search speed and quality: the DIP planner's segment search (phase 1 over phase 2) on VLM-L
// (PP 8, TP 8, H800), 32 packed OBELICS microbatches, for time budgets from 10 ms to 10 s and 1
// or 2 threads. Counters: the estimated iteration time of the best order found (makespan_ms),
// rollouts, and the ratio to the natural order. The target: after at most 1 s on 2
// cores, within 1% of what a 10x longer search finds.
//
//   build/bench/dip-bench-segment_search --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <memory>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/segment_search.hpp>
#include <dip/schedule/stage_graph.hpp>

namespace {

struct workload {
  std::shared_ptr<const dip::stage_graph> graph;
  dip::interleave_options interleave;
};

const workload& vlm_l() {
  static const workload w = [] {
    const dip::model_preset preset = dip::find_preset("vlm-l");
    const dip::gpu_spec gpu = dip::find_gpu("H800");
    const dip::analytic_cost_model costs(gpu, preset.parallel.tp);
    dip::partition_options options;
    options.ranks = preset.parallel.pp;
    options.memory = {preset.parallel.tp, 16.0, gpu.memory};
    const dip::modality_partition part = dip::partition_modalities(preset.model, costs, options);
    dip::batch_source source = dip::make_batch_source("obelics", preset.model, 1);
    const auto packed = source.next_batch(32);
    const dip::batch_work batch = dip::to_batch_work(dip::split_batch(packed, preset.model, part.policy, costs));
    workload out;
    out.graph = std::make_shared<const dip::stage_graph>(dip::build_stage_graph(preset.model, part.placement, batch, costs));
    out.interleave.weight_memory = part.weight_memory;
    out.interleave.memory_cap.assign(std::size_t(options.ranks), gpu.memory);
    out.interleave.comm = {{}, gpu.nvlink};
    return out;
  }();
  return w;
}

void search(benchmark::State& state) {
  const workload& w = vlm_l();
  const dip::segment_index segments(*w.graph);
  const double natural =
      dip::to_milliseconds(dip::interleave_stages(*w.graph, segments, dip::default_segment_priority(segments), w.interleave)
                               .estimated_makespan);
  dip::segment_search_options options;
  options.time_budget_ms = double(state.range(0));
  options.threads = unsigned(state.range(1));
  options.interleave = w.interleave;
  dip::segment_search_result result;
  for (auto _ : state) {
    result = dip::search_segment_order(*w.graph, options);
    benchmark::DoNotOptimize(result.makespan);
  }
  state.counters["makespan_ms"] = dip::to_milliseconds(result.makespan);
  state.counters["vs_natural"] = dip::to_milliseconds(result.makespan) / natural;
  state.counters["rollouts"] = double(result.rollouts);
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
