// Plans one vision-language batch with DIP, from a preset to a validated, simulated plan:
//
//   vlm-s (ViT-5B + Llama3-8B) --partition_modalities--> a chain per module, K chunks per rank
//   "obelics" batch (images vary per microbatch) --split_batch--> sub-microbatches of B images
//   placement + sub-microbatches --build_stage_graph--> stages --plan_dip_schedule--> plan
//   plan --validate, simulate--> iteration time, bubbles, peak memory (and the static plan's)
#include <algorithm>
#include <cstdio>
#include <memory>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/dip.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/dip_async.hpp>  // static_dip_fallback, to compare with
#include <dip/schedule/dip_planner.hpp>
#include <dip/sim/simulator.hpp>

int main() {
  const dip::model_preset preset = dip::find_preset("vlm-s");
  const dip::gpu_spec gpu = dip::find_gpu(preset.gpu);
  const dip::analytic_cost_model costs(gpu, preset.parallel.tp);

  // Offline, once per run: each module gets its own chain of chunks on the pipeline ranks.
  dip::partition_options partition;
  partition.ranks = preset.parallel.pp;
  partition.memory = {preset.parallel.tp, 16.0, gpu.memory};  // weights + grads + Adam per parameter
  const dip::modality_partition part = dip::partition_modalities(preset.model, costs, partition);
  for (const dip::segment_group& g : part.groups) {
    std::printf("chain %-9s B = %zu items per sub-microbatch, K = %zu chunks per rank\n",
                preset.model.module(g.leader).name.c_str(), g.sub_microbatch_size, g.segments_per_rank);
  }

  // Per batch: eight packed microbatches of interleaved image-text documents, split for the chains.
  dip::batch_source source = dip::make_batch_source("obelics", preset.model, /*seed=*/1);
  const auto packed = source.next_batch(8);
  const dip::batch_work batch = dip::to_batch_work(dip::split_batch(packed, preset.model, part.policy, costs));
  const auto graph = std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(preset.model, part.placement, batch, costs));

  dip::dip_planner_options options;
  options.memory_cap = gpu.memory;
  options.weight_memory = part.weight_memory;
  options.comm = {{}, gpu.nvlink};  // ranks of one node: NVLink
  options.search_rollouts = 64;     // phase 1 budget; reproducible (one thread, fixed seed)
  const dip::plan searched = dip::plan_dip_schedule(graph, options);
  dip::validate(searched, dip::validation_options_of(options));  // plan_dip_schedule did; cheap

  const auto report = [&](const char* name, const dip::plan& p) {
    const dip::simulation_result r = dip::simulate(p, dip::simulation_options_of(options));
    dip::bytes peak{};
    for (const dip::rank_stats& s : r.ranks) peak = std::max(peak, s.peak_memory);
    std::printf("%-10s iteration %s, bubble %.1f%%, peak memory %s of %s\n", name,
                dip::to_string(r.makespan).c_str(), 100 * r.bubble_ratio, dip::to_string(peak).c_str(),
                dip::to_string(gpu.memory).c_str());
  };
  std::printf("%zu stages, %zu actions on rank 0\n", graph->size(), searched.ranks[0].size());
  report("dip", searched);
  report("static", dip::static_dip_fallback(graph, options));  // no search: what DIP improves on
  return 0;
}
