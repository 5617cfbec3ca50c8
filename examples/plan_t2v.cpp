// Plans text-to-video batches with DIP: clips of different lengths make every microbatch cost
// something else, and the plan follows:
//
//   t2v-s (Llama3-8B caption encoder + DiT-5B) --partition_modalities--> chains
//   "video" batches: clips of 2..16 s, several per microbatch --split_batch--> sub-microbatches
//   for each batch: stage graph --plan_dip_schedule--> plan --simulate--> iteration time
#include <cstdio>
#include <memory>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/dip.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/dip_planner.hpp>
#include <dip/sim/simulator.hpp>

int main() {
  const dip::model_preset preset = dip::find_preset("t2v-s");
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
  options.search_rollouts = 32;

  dip::batch_source source = dip::make_batch_source("video", preset.model, /*seed=*/2);
  for (int iteration = 0; iteration < 3; ++iteration) {
    const auto packed = source.next_batch(4);
    const auto split = dip::split_batch(packed, preset.model, part.policy, costs);
    std::printf("batch %d:", iteration);
    for (const dip::packed_microbatch& mb : packed) {
      double seconds = 0;
      std::int64_t latent = 0;
      for (const dip::packed_clip& clip : mb.clips) {
        seconds += clip.seconds;
        latent += clip.latent_tokens;
      }
      std::printf("  [clips %zu: %.1f s, %lld latent tokens]", mb.clips.size(), seconds, static_cast<long long>(latent));
    }
    const auto graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(preset.model, part.placement, dip::to_batch_work(split), costs));
    const dip::plan p = dip::plan_dip_schedule(graph, options);
    const dip::simulation_result r = dip::simulate(p, dip::simulation_options_of(options));
    std::printf("\n  -> %zu stages, iteration %s, bubble %.1f%% (lower bound %s)\n", graph->size(),
                dip::to_string(r.makespan).c_str(), 100 * r.bubble_ratio, dip::to_string(r.bounds.best()).c_str());
  }
  return 0;
}
