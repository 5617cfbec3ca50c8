// Plans a tiny-vlm batch with dip::planner (as examples/execute_cpu.cpp) and runs it with the CUDA backend
// of the reference executor, then compares with the exact CPU backend:
//
//   dip-execute-cuda [--mode single|nccl|mpi]
//   single: every rank on GPU 0 with its own streams, device-to-device copies (default)
//   nccl:   rank r on GPU r, NCCL send/recv (one process, a thread per GPU)
//   mpi:    one process per rank under mpirun (mpirun -np 4 dip-execute-cuda --mode mpi), each
//           on the GPU of its node-local rank, NCCL send/recv; every process plans the same
//           batch (deterministic), MPI rank 0 gathers the reports, compares and prints
//
// Prints the loss of both, the largest relative gradient difference (bf16 GEMMs: expected below
// dip::exec::cuda::gradient_tolerance) and the measured time per rank. Exits 77 when there is no
// GPU (or, for nccl, fewer GPUs than ranks or no NCCL in this build; for mpi, on every process,
// when any process lacks a GPU of its own or the build lacks NCCL or MPI), 1 when out of tolerance.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <dip/dip.hpp>
#include <dip/exec/executor.hpp>
#include <dip/schedule/build_stage_graph.hpp>

#include "cuda_compute.hpp"
#include "cuda_executor.hpp"
#ifdef DIP_HAVE_MPI
#include <mpi.h>

#include "mpi_launch.hpp"
#endif

namespace {

constexpr int skip_code = 77;

double relative_difference(const dip::exec::tensor& got, const dip::exec::tensor& want) {
  if (got.rows() != want.rows() || got.cols() != want.cols()) return INFINITY;
  const double norm = want.norm();
  return (got - want).norm() / (norm > 0 ? norm : 1.0);
}

// Prints the comparison of the CUDA run with the CPU one; 0 within tolerance, 1 otherwise.
int report(const dip::exec::step_result& got, const dip::exec::step_result& want, std::size_t microbatches,
           std::size_t stages, std::size_t actions, std::size_t ranks, const std::string& mode) {
  namespace cu = dip::exec::cuda;
  double worst = 0;
  std::size_t tensors = 0;
  for (const auto& [key, grads] : want.gradients) {
    const auto it = got.gradients.find(key);
    for (std::size_t p = 0; p < grads.size(); ++p) {
      worst = std::max(worst, it == got.gradients.end() || p >= it->second.size()
                                  ? double(INFINITY)
                                  : relative_difference(it->second[p], grads[p]));
      ++tensors;
    }
  }
  const double loss_difference = std::abs(got.loss - want.loss) / std::abs(want.loss);
  std::printf("tiny-vlm, %zu microbatches, %zu stages, %zu actions on %zu ranks, mode %s\n", microbatches, stages,
              actions, ranks, mode.c_str());
  std::printf("loss: cuda %.8f, cpu %.8f (relative difference %.2g)\n", got.loss, want.loss, loss_difference);
  std::printf("gradients: %zu tensors, largest relative difference %.3g (tolerance %.g)\n", tensors, worst,
              cu::gradient_tolerance);
  for (std::size_t r = 0; r < got.rank_seconds.size() && r < want.rank_seconds.size(); ++r) {
    std::printf("rank %zu: %.2f ms on the GPU (cpu backend %.2f ms), peak activations %.1f KiB, %.1f KiB offloaded\n",
                r, got.rank_seconds[r] * 1e3, want.rank_seconds[r] * 1e3, double(got.peak_activation_bytes[r]) / 1024.0,
                double(got.peak_offloaded_bytes[r]) / 1024.0);
  }
  return worst <= cu::gradient_tolerance && loss_difference <= cu::gradient_tolerance ? 0 : 1;
}

// Every MPI process's decision, agreed on: true only when all are true.
#ifdef DIP_HAVE_MPI
bool all_agree(bool mine) {
  int ok = mine ? 1 : 0, all = 0;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "single";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
      mode = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--mode single|nccl|mpi]\n", argv[0]);
      return 2;
    }
  }
  if (mode != "single" && mode != "nccl" && mode != "mpi") {
    std::fprintf(stderr, "--mode is single, nccl or mpi, not '%s'\n", mode.c_str());
    return 2;
  }
  namespace cu = dip::exec::cuda;
  const bool mpi = mode == "mpi";
#ifndef DIP_HAVE_MPI
  if (mpi) {
    std::printf("execute_cuda: skipped, this build has no MPI (install Open MPI and reconfigure)\n");
    return skip_code;
  }
#else
  // Every process decides the same: all run, or all skip (after MPI_Finalize, so that mpirun
  // sees clean exits and returns 77), or all stop on a usage error.
  int world_rank = 0, world_size = 1;
  cu::mpi_placement where;
  if (mpi) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    where = cu::mpi_place(MPI_COMM_WORLD);
    // NCCL puts the ranks of one communicator on distinct GPUs: a node needs a GPU per process.
    const bool usable = cu::have_nccl() && where.devices > 0 && where.local_ranks <= where.devices;
    if (!all_agree(usable)) {
      if (world_rank == 0) {
        std::printf("execute_cuda: skipped, mpi mode needs NCCL and a GPU per process on every node (%s; rank 0: "
                    "%d processes on its node, %d GPUs)\n",
                    cu::have_nccl() ? "NCCL built in" : "no NCCL in this build", where.local_ranks, where.devices);
      }
      std::fflush(stdout);
      MPI_Finalize();
      return skip_code;
    }
  }
#endif
  const int devices = cu::device_count();
  if (devices == 0) {
    std::printf("execute_cuda: skipped, no CUDA device\n");
    return skip_code;
  }

  // The batch of examples/execute_cpu.cpp. Every MPI process plans the same: no time budget.
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const dip::planner planner = dip::make_planner(preset, {.search_ms = 0, .search_rollouts = 16});
  dip::batch_source data =
      dip::make_batch_source("obelics", preset.model, /*seed=*/1, {.max_tokens = 256, .max_images = 4});
  const std::vector<dip::packed_microbatch> packed = data.next_batch(8);
  dip::planned_batch next = planner.plan(packed);
  const dip::exported_batch batch = dip::exec::executable_batch(next, packed, preset.model);
  const std::shared_ptr<const dip::stage_graph> graph = next.plan.graph;
  // Exercise every memory strategy: every third forward recomputes, every third offloads.
  std::size_t forwards = 0;
  for (auto& list : next.plan.ranks) {
    for (dip::action& a : list) {
      if (a.kind == dip::action_kind::compute && graph->at(a.stage).kind == dip::stage_kind::forward) {
        a.strategy = dip::memory_strategy(forwards++ % 3);
      }
    }
  }
  const auto planned = std::make_shared<const dip::plan>(std::move(next.plan));
  const std::size_t ranks = planned->ranks.size();
#ifdef DIP_HAVE_MPI
  if (mpi) {
    if (std::size_t(world_size) != ranks) {
      if (world_rank == 0) {
        std::fprintf(stderr, "execute_cuda: the plan has %zu ranks; run it with mpirun -np %zu, not %d\n", ranks, ranks,
                     world_size);
      }
      MPI_Finalize();
      return 2;
    }
    cu::cuda_execute_options run;
    int code = 0;
    try {
      cu::execute_cuda_mpi(planned, preset.model, batch, run);  // warm-up: allocator pools, cuBLAS handles
      const std::optional<dip::exec::step_result> got = cu::execute_cuda_mpi(planned, preset.model, batch, run);
      if (world_rank == 0) {
        // The CPU run comes after the GPU runs: the other processes do not wait on it.
        const dip::exec::step_result want = dip::exec::execute(planned, preset.model, batch);
        code = report(*got, want, batch.microbatches.size(), graph->size(), planned->action_count(), ranks,
                      "mpi (" + std::to_string(world_size) + " processes)");
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "execute_cuda: MPI rank %d: %s\n", world_rank, e.what());
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    return code;
  }
#endif
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

  return report(got, want, batch.microbatches.size(), graph->size(), planned->action_count(), ranks, mode);
}
