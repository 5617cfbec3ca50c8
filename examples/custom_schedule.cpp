// Adding a schedule of your own to a dip::planner: a name and a dip::schedule_entry in its
// registry, then planner.plan(batch, "your-name") as for the built-in ones.
//
//   "encoders-first": DIP's placement; every encoder sub-microbatch of the batch before any of
//   the backbone's (a GPipe-like order for the encoders), then DIP's interleaving and memory
//   phases on that order (plan_dip with a given segment priority: no search)
//   planner.plan(batch, "encoders-first") --split, stage graph, your function, validate, simulate-->
//   compared with "dip" and "static-dip" on the same batch
#include <cstdint>
#include <cstdio>
#include <vector>

#include <dip/dip.hpp>

int main() {
  const dip::model_preset preset = dip::find_preset("vlm-s");
  dip::planner planner = dip::make_planner(preset, {.search_ms = 0, .search_rollouts = 64});

  // The function gets the batch's stage graph and the planner's options (memory cap, weights,
  // link, search budget, seed) and returns a plan of that graph.
  planner.schedules().add(
      "encoders-first",
      {.placement = dip::schedule_placement::modality,  // DIP's chains, K tuned per chain
       .plans_within_cap = true,                        // plan_dip fits the cap itself
       .make =
           [](const dip::schedule_request& q) {
             // A segment is one sub-microbatch's pass through one chain; lower priority runs first.
             const dip::pass_index segments(*q.graph);
             const std::vector<std::vector<std::size_t>>& inputs = q.graph->placement().chain_inputs;
             std::vector<std::uint32_t> priority(segments.size());
             for (std::uint32_t s = 0; s < priority.size(); ++s) {
               const bool encoder = inputs[segments.at(s).chain].empty();  // a chain nothing feeds
               priority[s] = s + (encoder ? 0 : std::uint32_t(segments.size()));
             }
             return dip::plan_dip(q.graph, q.options, priority);
           },
       .description = "every encoder sub-microbatch first, then DIP's interleaving and memory phases"});

  dip::batch_source data = dip::make_batch_source("obelics", preset.model, /*seed=*/1);
  const std::vector<dip::packed_microbatch> batch = data.next_batch(8);
  for (const char* schedule : {"encoders-first", "static-dip", "dip"}) {
    const dip::planned_batch p = planner.plan(batch, schedule);
    std::printf("%-15s iteration %s, bubble %.1f%% (%s)\n", schedule, dip::to_string(p.simulation.makespan).c_str(),
                100 * p.simulation.bubble_ratio, planner.schedules().at(schedule).description.c_str());
  }
  std::printf("registered: %s\n", planner.schedules().known().c_str());
  return 0;
}
