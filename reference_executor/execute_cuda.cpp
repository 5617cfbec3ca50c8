// Plans a tiny-vlm batch with DIP (as examples/execute_cpu.cpp) and runs it with the CUDA backend
// of the reference executor, then compares with the exact CPU backend:
//
//   dip-execute-cuda [--mode single|nccl]
//   single: every rank on GPU 0 with its own streams, device-to-device copies (default)
//   nccl:   rank r on GPU r, NCCL send/recv (one process, a thread per GPU)
//
// Prints the loss of both, the largest relative gradient difference (bf16 GEMMs: expected below
// dip::exec::cuda::gradient_tolerance) and the measured time per rank. Exits 77 when there is no
// GPU (or, for nccl, fewer GPUs than ranks or no NCCL in this build), 1 when out of tolerance.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <dip/cost/analytic.hpp>
#include <dip/exec/executor.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/dip_planner.hpp>

#include "cuda_compute.hpp"
#include "cuda_executor.hpp"

namespace {

constexpr int skip_code = 77;

double relative_difference(const dip::exec::tensor& got, const dip::exec::tensor& want) {
  if (got.rows() != want.rows() || got.cols() != want.cols()) return INFINITY;
  const double norm = want.norm();
  return (got - want).norm() / (norm > 0 ? norm : 1.0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "single";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
      mode = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--mode single|nccl]\n", argv[0]);
      return 2;
    }
  }
  if (mode != "single" && mode != "nccl") {
    std::fprintf(stderr, "--mode is single or nccl, not '%s'\n", mode.c_str());
    return 2;
  }
  namespace cu = dip::exec::cuda;
  const int devices = cu::device_count();
  if (devices == 0) {
    std::printf("execute_cuda: skipped, no CUDA device\n");
    return skip_code;
  }

  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const dip::analytic_cost_model costs(dip::find_gpu(preset.gpu), preset.parallel.tp);
  dip::partition_options partition;
  partition.ranks = preset.parallel.pp;
  const dip::modality_partition part = dip::partition_modalities(preset.model, costs, partition);
  dip::batch_work batch;
  for (std::size_t j = 0; j < 8; ++j) {
    dip::microbatch_work mb;
    mb.modules.resize(3);
    for (std::size_t image = 0; image <= j % 3; ++image) {
      mb.modules[0].push_back(dip::work_unit::sequence(double(16 + 8 * ((j + image) % 3))));
      mb.modules[1].push_back(dip::work_unit::sequence(double(1 + (j + image) % 3)));
    }
    for (std::size_t text = 0; text <= j % 2; ++text) mb.modules[2].push_back(dip::work_unit::sequences_of(2, 12));
    batch.microbatches.push_back(std::move(mb));
  }
  const auto graph = std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(preset.model, part.placement, batch, costs));
  dip::dip_planner_options options;
  options.search_rollouts = 16;
  auto planned = std::make_shared<dip::plan>(dip::plan_dip_schedule(graph, options));
  std::size_t forwards = 0;
  for (auto& list : planned->ranks) {
    for (dip::action& a : list) {
      if (a.kind == dip::action_kind::compute && graph->at(a.stage).kind == dip::stage_kind::forward) {
        a.strategy = dip::memory_strategy(forwards++ % 3);
      }
    }
  }
  const std::size_t ranks = planned->ranks.size();
  if (mode == "nccl" && (!cu::have_nccl() || std::size_t(devices) < ranks)) {
    std::printf("execute_cuda: skipped, nccl mode needs NCCL and %zu GPUs (%s, %d GPUs)\n", ranks,
                cu::have_nccl() ? "NCCL built in" : "no NCCL in this build", devices);
    return skip_code;
  }

  const dip::exec::step_result want = dip::exec::execute(planned, preset.model, batch);
  cu::cuda_execute_options run;
  run.mode = mode == "nccl" ? cu::cuda_mode::nccl : cu::cuda_mode::single_gpu;
  cu::execute_cuda(planned, preset.model, batch, run);  // warm-up: allocator pools, cuBLAS handles
  const dip::exec::step_result got = cu::execute_cuda(planned, preset.model, batch, run);

  double worst = 0;
  std::size_t tensors = 0;
  for (const auto& [key, grads] : want.gradients) {
    for (std::size_t p = 0; p < grads.size(); ++p) {
      worst = std::max(worst, relative_difference(got.gradients.at(key).at(p), grads[p]));
      ++tensors;
    }
  }
  const double loss_difference = std::abs(got.loss - want.loss) / std::abs(want.loss);
  std::printf("tiny-vlm, %zu microbatches, %zu stages, %zu actions on %zu ranks, mode %s\n",
              batch.microbatches.size(), graph->size(), planned->action_count(), ranks, mode.c_str());
  std::printf("loss: cuda %.8f, cpu %.8f (relative difference %.2g)\n", got.loss, want.loss, loss_difference);
  std::printf("gradients: %zu tensors, largest relative difference %.3g (tolerance %.g)\n", tensors, worst,
              cu::gradient_tolerance);
  for (std::size_t r = 0; r < got.rank_seconds.size(); ++r) {
    std::printf("rank %zu: %.2f ms on the GPU (cpu backend %.2f ms), peak activations %.1f KiB, %.1f KiB offloaded\n",
                r, got.rank_seconds[r] * 1e3, want.rank_seconds[r] * 1e3,
                double(got.peak_activation_bytes[r]) / 1024.0, double(got.peak_offloaded_bytes[r]) / 1024.0);
  }
  return worst <= cu::gradient_tolerance && loss_difference <= cu::gradient_tolerance ? 0 : 1;
}
