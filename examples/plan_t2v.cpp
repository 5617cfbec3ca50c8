// Plans text-to-video batches with DIP: clips of different lengths make every microbatch cost
// something else, and each batch gets its own plan:
//
//   t2v-s (Llama3-8B caption encoder + DiT-5B) --make_planner--> dip::planner, once per run
//   "video" batches: clips of 2..16 s, several per microbatch
//   for each batch: planner.plan(batch, "dip", i) --split, stage graph, plan_dip, simulate--> plan
//                   planner.plan(batch, "static-dip", i) --no search--> what DIP improves on
#include <cstdint>
#include <cstdio>

#include <dip/dip.hpp>

int main() {
  const dip::model_preset preset = dip::find_preset("t2v-s");
  const dip::planner planner = dip::make_planner(preset, {.search_ms = 0, .search_rollouts = 32});  // reproducible
  dip::batch_source data = dip::make_batch_source("video", preset.model, /*seed=*/2);
  for (std::uint64_t i = 0; i < 3; ++i) {
    const std::vector<dip::packed_microbatch> batch = data.next_batch(4);
    std::printf("batch %llu:", static_cast<unsigned long long>(i));
    for (const dip::packed_microbatch& mb : batch) {
      double seconds = 0;
      std::int64_t latent = 0;
      for (const dip::packed_clip& clip : mb.clips) {
        seconds += clip.seconds;
        latent += clip.latent_tokens;
      }
      std::printf("  [clips %zu: %.1f s, %lld latent tokens]", mb.clips.size(), seconds,
                  static_cast<long long>(latent));
    }
    const dip::planned_batch next = planner.plan(batch, "dip", i);  // batch i: the search's seed is seed + i
    const dip::planned_batch fixed = planner.plan(batch, "static-dip", i);
    std::printf("\n  -> %zu stages, dip %s (bubble %.1f%%, lower bound %s), static-dip %s: %.2fx\n",
                next.plan.graph->size(), dip::to_string(next.simulation.makespan).c_str(),
                100 * next.simulation.bubble_ratio, dip::to_string(next.simulation.bounds.classic()).c_str(),
                dip::to_string(fixed.simulation.makespan).c_str(),
                fixed.simulation.makespan / next.simulation.makespan);
  }
  return 0;
}
