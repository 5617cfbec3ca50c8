// dip::exec::cuda::execute_cuda: runs a dip::plan on GPUs with the CUDA backend, through the
// executor's shared walk (dip::exec::run_rank) with cuda_compute and a CUDA transport.
//
// Modes:
// - single_gpu: every rank on device 0, each with its own compute and communication streams
//   and cuBLAS handle, one host thread per rank; messages are device-to-device copies ordered
//   by events (d2d_transport). One GPU shows the whole pipeline.
// - nccl: rank r on device r (needs as many devices as ranks), one process, one host thread
//   per rank, a non-blocking NCCL communicator per rank (ncclCommInitRankConfig with a shared
//   ncclUniqueId; ncclCommInitAll cannot make non-blocking ones) and nccl_transport.
// As execute(): every thread is joined; a failing rank aborts the others (fabric abort or
// ncclCommAbort) and the first error is rethrown.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "dip/exec/data.hpp"
#include "dip/io/executable_batch.hpp"
#include "dip/model/model.hpp"
#include "dip/schedule/plan.hpp"

namespace dip::exec::cuda {

enum class cuda_mode { single_gpu, nccl };

struct cuda_execute_options {
  cuda_mode mode = cuda_mode::single_gpu;
  std::chrono::milliseconds timeout = std::chrono::seconds(30);  // longest a receive may wait
  std::function<void(rank_id, const action&)> before_action;     // test hook, as execute_options'
};

// Devices CUDA can use (0 without a driver or device).
int device_count();
// Whether this build has the NCCL transport.
bool have_nccl();

// As dip::exec::execute, on the GPU; gradients are the reduced per-(module, layer) sums in
// double (from fp32 device values), comparable with the CPU backend within gradient_tolerance.
step_result execute_cuda(std::shared_ptr<const plan> p, const multimodal_model& model, const exported_batch& batch,
                         const cuda_execute_options& options = {});

}  // namespace dip::exec::cuda
