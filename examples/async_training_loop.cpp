// The asynchronous planner in a training loop: batch i+1 is planned on spare CPU cores while
// batch i trains, and the loop never waits for a plan longer than its deadline.
//
//   loader:   metadata(i+1) ----------------------------> submit_dip_batch(i+1)
//   planner:                      [ search batch i+1 on a worker thread ... offers plans ]
//   trainer:  get(i) -> run batch i on the GPUs ---------> get(i+1, deadline) -> run batch i+1
//
// Here "training" a batch sleeps a few milliseconds, and a batch's metadata comes from a
// synthetic source; a trainer puts its executor and its data loader's prefetched metadata there.
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/dip.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/dip_async.hpp>
#include <dip/sim/simulator.hpp>

using namespace std::chrono_literals;

namespace {

const char* source_name(dip::plan_source s) {
  switch (s) {
    case dip::plan_source::in_time: return "searched in time";
    case dip::plan_source::best_so_far: return "best so far at the deadline";
    case dip::plan_source::fallback: return "static fallback";
    case dip::plan_source::error: return "fallback after an error";
  }
  return "?";
}

}  // namespace

int main() {
  // Once per run: model, cost model, the modality-aware placement, the planner's options.
  const dip::model_preset preset = dip::find_preset("vlm-s");
  const dip::gpu_spec gpu = dip::find_gpu(preset.gpu);
  const dip::analytic_cost_model costs(gpu, preset.parallel.tp);
  dip::partition_options partition;
  partition.ranks = preset.parallel.pp;
  partition.memory = {preset.parallel.tp, 16.0, gpu.memory};
  const dip::modality_partition part = dip::partition_modalities(preset.model, costs, partition);
  dip::dip_planner_options options;
  options.memory_cap = gpu.memory;
  options.weight_memory = part.weight_memory;
  options.comm = {{}, gpu.nvlink};
  options.search_ms = 30;  // phase 1 per batch; with phases 2 and 3 it must fit in an iteration

  // The stage graph of batch i from its metadata (shared: the search runs on another thread).
  dip::batch_source loader = dip::make_batch_source("obelics", preset.model, /*seed=*/5);
  const auto graph_of_next_batch = [&] {
    const auto packed = loader.next_batch(8);
    const dip::batch_work batch = dip::to_batch_work(dip::split_batch(packed, preset.model, part.policy, costs));
    return std::make_shared<const dip::stage_graph>(dip::build_stage_graph(preset.model, part.placement, batch, costs));
  };

  // Two workers (a search cut short by its deadline may still be finishing when the next batch
  // comes), at most two batches ahead; submit_dip_batch brings each batch's search and fallback.
  dip::async_planner<dip::plan> planner({.workers = 2, .max_ahead = 2}, {}, {});
  const std::size_t steps = 6;
  dip::submit_dip_batch(planner, 0, graph_of_next_batch(), options);
  for (std::size_t i = 0; i < steps; ++i) {
    // The first batch has nothing to overlap with: give it time. Later ones had batch i-1's run.
    const dip::delivered_plan<dip::plan> next = planner.get(i, i == 0 ? std::chrono::milliseconds(2000) : 5ms);
    if (i + 1 < steps) dip::submit_dip_batch(planner, i + 1, graph_of_next_batch(), options);

    const dip::simulation_result r = dip::simulate(next.plan, dip::simulation_options_of(options));
    std::printf("step %zu: plan %-28s simulated iteration %s\n", i, source_name(next.source),
                dip::to_string(r.makespan).c_str());
    std::this_thread::sleep_for(150ms);  // executor.run(next.plan, batch i): the GPUs train
  }
  const dip::async_planner_stats s = planner.stats();
  std::printf("plans: %zu searched in time, %zu best so far, %zu fallback, %zu errors\n", s.planned_in_time,
              s.best_so_far_used, s.fallback_used, s.errors);
  return s.errors == 0 ? 0 : 1;
}
