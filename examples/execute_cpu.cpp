// Plans a tiny-vlm batch with DIP and runs the plan for real on the CPU backend of the
// reference executor, one thread per pipeline rank, then checks it against the sequential run:
//
//   batch (uneven images per microbatch) --partition + plan_dip_schedule--> plan
//   plan --dip::exec::execute (4 rank threads, in-process channels)--> gradients, loss
//   model + batch --dip::exec::run_sequential--> the same gradients, bit for bit
#include <algorithm>
#include <cstdio>
#include <memory>

#include <dip/cost/analytic.hpp>
#include <dip/exec/executor.hpp>
#include <dip/exec/reference.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/dip_planner.hpp>

int main() {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const dip::analytic_cost_model costs(dip::find_gpu(preset.gpu), preset.parallel.tp);
  dip::partition_options partition;
  partition.ranks = preset.parallel.pp;
  const dip::modality_partition part = dip::partition_modalities(preset.model, costs, partition);

  // Eight microbatches; microbatch j has 1 + j % 3 images (vit and projector split alike, one
  // sub-microbatch per image) and one or two text sub-microbatches.
  dip::batch_work batch;
  for (std::size_t j = 0; j < 8; ++j) {
    dip::microbatch_work mb;
    mb.modules.resize(3);
    for (std::size_t image = 0; image <= j % 3; ++image) {
      mb.modules[0].push_back(dip::work_unit::sequence(double(16 + 8 * ((j + image) % 3))));  // patches
      mb.modules[1].push_back(dip::work_unit::sequence(double(1 + (j + image) % 3)));          // merged tokens
    }
    for (std::size_t text = 0; text <= j % 2; ++text) mb.modules[2].push_back(dip::work_unit::sequences_of(2, 12));
    batch.microbatches.push_back(std::move(mb));
  }

  const auto graph = std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(preset.model, part.placement, batch, costs));
  dip::dip_planner_options options;
  options.search_rollouts = 16;
  dip::plan planned = dip::plan_dip_schedule(graph, options);
  // Exercise every memory strategy: every third forward recomputes, every third offloads.
  std::size_t forwards = 0;
  for (auto& list : planned.ranks) {
    for (dip::action& a : list) {
      if (a.kind == dip::action_kind::compute && graph->at(a.stage).kind == dip::stage_kind::forward) {
        a.strategy = dip::memory_strategy(forwards++ % 3);
      }
    }
  }

  const dip::exec::step_result got = dip::exec::execute(planned, preset.model, batch);
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
  std::printf("tiny-vlm, %zu microbatches, %zu stages, %zu actions on %d ranks\n", batch.microbatches.size(),
              graph->size(), planned.action_count(), graph->ranks());
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
