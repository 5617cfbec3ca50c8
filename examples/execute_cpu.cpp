// Plans a tiny-vlm batch with DIP and runs the plan for real on the CPU backend of the
// reference executor, one thread per pipeline rank, then checks it against the sequential run:
//
//   tiny-vlm + "obelics" batch (packing limits of a CPU run) --planner.plan--> plan, batch work
//   plan --dip::exec::execute (4 rank threads, in-process channels)--> gradients, loss
//   model + executable batch --dip::exec::run_sequential--> the same gradients, bit for bit
#include <algorithm>
#include <cstdio>

#include <dip/dip.hpp>
#include <dip/exec/executor.hpp>
#include <dip/exec/reference.hpp>

int main() {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const dip::planner planner = dip::make_planner(preset, {.search_ms = 0, .search_rollouts = 16});
  // Eight microbatches of interleaved image-text documents, packed to at most 256 tokens and 4
  // images each so that the CPU trains them in moments.
  dip::batch_source data =
      dip::make_batch_source("obelics", preset.model, /*seed=*/1, {.max_tokens = 256, .max_images = 4});
  const std::vector<dip::packed_microbatch> packed = data.next_batch(8);
  dip::planned_batch planned = planner.plan(packed);
  // The items and rows of the sub-microbatches the plan's stages run.
  const dip::exported_batch batch = dip::exec::executable_batch(planned, packed, preset.model);

  // Exercise every memory strategy: every third forward recomputes, every third offloads.
  std::size_t forwards = 0;
  for (auto& list : planned.plan.ranks) {
    for (dip::action& a : list) {
      if (a.kind == dip::action_kind::compute && planned.plan.graph->at(a.stage).kind == dip::stage_kind::forward) {
        a.strategy = dip::memory_strategy(forwards++ % 3);
      }
    }
  }

  const dip::exec::step_result got = dip::exec::execute(planned.plan, preset.model, batch);
  const dip::exec::step_result want = dip::exec::run_sequential(preset.model, batch);

  double max_difference = 0;
  std::size_t tensors = 0, identical = 0;
  for (const auto& [key, grads] : want.gradients) {
    for (std::size_t p = 0; p < grads.size(); ++p) {
      const dip::exec::tensor& other = got.gradients.at(key).at(p);
      max_difference = std::max(max_difference, dip::exec::max_abs_difference(other, grads[p]));
      identical += dip::exec::bitwise_equal(other, grads[p]) ? 1 : 0;
      ++tensors;
    }
  }
  std::printf("tiny-vlm, %zu microbatches, %zu stages, %zu actions on %d ranks (simulated iteration %s on H800s)\n",
              batch.microbatches.size(), planned.plan.graph->size(), planned.plan.action_count(),
              planned.plan.graph->ranks(), dip::to_string(planned.simulation.makespan).c_str());
  std::printf("loss: executor %.12f, sequential %.12f\n", got.loss, want.loss);
  std::printf("gradients: %zu tensors, %zu bitwise identical, max |difference| %.3g\n", tensors, identical,
              max_difference);
  for (std::size_t r = 0; r < got.rank_seconds.size(); ++r) {
    std::printf("rank %zu: %.1f ms, peak activations %.1f KiB on device, %.1f KiB offloaded\n", r,
                got.rank_seconds[r] * 1e3, double(got.peak_activation_bytes[r]) / 1024.0,
                double(got.peak_offloaded_bytes[r]) / 1024.0);
  }
  return identical == tensors && got.loss == want.loss ? 0 : 1;
}
