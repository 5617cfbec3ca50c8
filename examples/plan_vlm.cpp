// Plans one vision-language batch with DIP, then the same batch with the static modality-aware
// schedule that DIP improves on:
//
//   vlm-s (ViT-5B + Llama3-8B, TP 4, PP 4, H800) --make_planner--> dip::planner, once per run
//   "obelics" batch: 8 packed microbatches, a different number of images in each
//   planner.plan(batch) --split, stage graph, plan_dip, validate, simulate--> dip::planned_batch
//   planner.plan(batch, "static-dip") --same placement, natural order, fitted to memory--> baseline
#include <algorithm>
#include <cstdio>

#include <dip/dip.hpp>

int main() {
  const dip::model_preset preset = dip::find_preset("vlm-s");
  const dip::planner planner = dip::make_planner(preset, {.search_ms = 0, .search_rollouts = 64});  // reproducible
  dip::batch_source data = dip::make_batch_source("obelics", preset.model, /*seed=*/1);
  const std::vector<dip::packed_microbatch> batch = data.next_batch(8);
  const dip::planned_batch next = planner.plan(batch);  // "dip"; next.plan.ranks[r]: rank r's actions
  const auto peak = std::ranges::max(next.simulation.ranks, {}, &dip::rank_stats::peak_memory).peak_memory;
  std::printf("dip:        iteration %s, bubble %.1f%%, peak memory %s\n",
              dip::to_string(next.simulation.makespan).c_str(), 100 * next.simulation.bubble_ratio,
              dip::to_string(peak).c_str());

  // What the planner fixed for the run on its first batch: a chain per module, with its B and K.
  for (const dip::chain_group& g : planner.modality_partition_if_built()->groups) {
    std::printf("  chain %-9s B = %zu items per sub-microbatch, K = %zu chunks per rank\n",
                preset.model.module(g.leader).name.c_str(), g.sub_microbatch_size, g.segments_per_rank);
  }
  std::printf("  %zu stages, %zu actions on rank 0; pipeline link %.0f GB/s, memory cap %s per GPU\n",
              next.plan.graph->size(), next.plan.ranks[0].size(), planner.cluster().comm().link.base() / 1e9,
              dip::to_string(planner.cluster().cap()).c_str());

  // The same batch without the search: what DIP improves on.
  const dip::planned_batch fixed = planner.plan(batch, "static-dip");
  const auto fixed_peak = std::ranges::max(fixed.simulation.ranks, {}, &dip::rank_stats::peak_memory).peak_memory;
  std::printf("static-dip: iteration %s, bubble %.1f%%, peak memory %s; dip is %.2fx faster\n",
              dip::to_string(fixed.simulation.makespan).c_str(), 100 * fixed.simulation.bubble_ratio,
              dip::to_string(fixed_peak).c_str(), fixed.simulation.makespan / next.simulation.makespan);
  return 0;
}
