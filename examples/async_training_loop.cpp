// The asynchronous planner in a training loop: batch i+1 is planned on spare CPU cores while
// batch i trains, and the loop never waits for a plan longer than its deadline.
//
//   loader:   metadata(i+1) ----------------------------> planner.submit(i+1, batch)
//   planner:                      [ search batch i+1 on a worker thread ... offers plans ]
//   trainer:  get(i) -> run batch i on the GPUs ---------> get(i+1, deadline) -> run batch i+1
//
// Here "training" a batch sleeps a few milliseconds, and a batch's metadata comes from a
// synthetic source; a trainer puts its executor and its data loader's prefetched metadata there.
#include <chrono>
#include <cstdio>
#include <thread>

#include <dip/dip.hpp>

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
  // Once per run. 30 ms of search per batch (with the phases after it, well inside an iteration).
  // Two workers, so that the two batches it may run ahead (max_ahead) are searched at once; a
  // deadline stops every phase of a search, so a worker cut short is free again within
  // milliseconds.
  const dip::model_preset preset = dip::find_preset("vlm-s");
  dip::planner planner = dip::make_planner(preset, {.search_ms = 30, .async = {.workers = 2, .max_ahead = 2}});
  dip::batch_source loader = dip::make_batch_source("obelics", preset.model, /*seed=*/5);

  const std::size_t steps = 6;
  planner.submit(0, loader.next_batch(8));  // the first submit also fixes the placement (K tuned on this batch)
  for (std::size_t i = 0; i < steps; ++i) {
    // The first batch has nothing to overlap with: give it time. Later ones had batch i-1's run.
    const dip::delivered_plan<dip::planned_batch> next = planner.get(i, i == 0 ? 2000ms : 5ms);
    if (i + 1 < steps) planner.submit(i + 1, loader.next_batch(8));

    std::printf("step %zu: plan %-28s simulated iteration %s\n", i, source_name(next.source),
                dip::to_string(next.plan.simulation.makespan).c_str());
    std::this_thread::sleep_for(150ms);  // executor.run(next.plan.plan, next.plan.work): the GPUs train
  }
  const dip::async_planner_stats s = planner.async_stats();
  std::printf("plans: %zu searched in time, %zu best so far, %zu fallback, %zu errors\n", s.planned_in_time,
              s.best_so_far_used, s.fallback_used, s.errors);
  return s.errors == 0 ? 0 : 1;
}
