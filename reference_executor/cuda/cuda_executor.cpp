// execute_cuda (cuda_executor.hpp): the shared walk with the CUDA backend, a host thread per rank.
#include "cuda_executor.hpp"

#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda_compute.hpp"
#include "cuda_transport.hpp"
#include "dip/exec/executor.hpp"
#ifdef DIP_HAVE_NCCL
#include "nccl_transport.hpp"
#endif

namespace dip::exec::cuda {

int device_count() { return usable_device_count(); }

bool have_nccl() {
#ifdef DIP_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

step_result execute_cuda(std::shared_ptr<const plan> p, const multimodal_model& model, const exported_batch& batch,
                         const cuda_execute_options& options) {
  require(p != nullptr && p->graph != nullptr, errc::invalid_argument, "execute_cuda", "no plan");
  const std::size_t ranks = p->ranks.size();
  const int devices = device_count();
  require(devices > 0, errc::invalid_argument, "execute_cuda", "no CUDA device");
  const bool nccl = options.mode == cuda_mode::nccl;
  require(!nccl || have_nccl(), errc::invalid_argument, "execute_cuda", "this build has no NCCL");
  require(
      !nccl || std::size_t(devices) >= ranks, errc::invalid_argument, "execute_cuda",
      "nccl mode needs a GPU per rank: " + std::to_string(ranks) + " ranks, " + std::to_string(devices) + " devices");
  const execution_context ctx(p, std::make_shared<const executable_model>(model), batch);
  const execute_options walk{.timeout = options.timeout, .before_action = options.before_action};

  // Contexts outlive every thread and transport: in single-GPU mode a rank may free another
  // rank's buffer (on that rank's stream) when its copy is done.
  std::vector<std::unique_ptr<device_context>> contexts;
  for (std::size_t r = 0; r < ranks; ++r) contexts.push_back(std::make_unique<device_context>(nccl ? int(r) : 0));
  d2d_fabric fabric(int(ranks), options.timeout);
#ifdef DIP_HAVE_NCCL
  ncclUniqueId id{};
  if (nccl && ncclGetUniqueId(&id) != ncclSuccess)
    throw error(errc::invalid_argument, "execute_cuda", "ncclGetUniqueId failed");
  auto failed = std::make_shared<std::atomic<bool>>(false);
#endif

  std::vector<rank_report> reports(ranks);
  std::mutex failure_mutex;
  std::exception_ptr first_failure;
  const auto record_failure = [&] {
    std::lock_guard lock(failure_mutex);
    if (!first_failure) first_failure = std::current_exception();
  };
  {
    std::vector<std::jthread> threads;
    for (std::size_t r = 0; r < ranks; ++r) {
      threads.emplace_back([&, r] {
        const device_context& dc = *contexts[r];
        try {
          check(cudaSetDevice(dc.device()), "cudaSetDevice");
        } catch (...) {
          record_failure();
          fabric.abort("rank " + std::to_string(r) + " failed");
          return;
        }
        const rank_id rank = rank_id::from_index(r);
        if (!nccl) {
          d2d_transport transport(fabric, int(r), dc);
          try {
            stage_runner<cuda_compute> runner(ctx, rank, cuda_compute(*ctx.model, ctx.batch, dc));
            reports[r] = run_rank(ctx, rank, runner, transport, walk);
          } catch (...) {
            record_failure();
            transport.abort();
          }
          return;
        }
#ifdef DIP_HAVE_NCCL
        ncclComm_t comm = nullptr;
        try {
          comm = init_nccl_rank(id, int(ranks), int(r), options.timeout);
        } catch (...) {
          record_failure();
          failed->store(true);
          return;
        }
        bool aborted = false;
        {
          nccl_transport transport(comm, int(r), dc, options.timeout, failed);
          try {
            stage_runner<cuda_compute> runner(ctx, rank, cuda_compute(*ctx.model, ctx.batch, dc));
            reports[r] = run_rank(ctx, rank, runner, transport, walk);
          } catch (...) {
            record_failure();
            transport.abort();
          }
          aborted = transport.aborted();
        }
        if (!aborted) {
          ncclResult_t state = ncclCommFinalize(comm);
          while (state == ncclInProgress) {
            std::this_thread::yield();
            if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) break;
          }
          (void)ncclCommDestroy(comm);
        }
#endif
      });
    }
  }  // jthreads join here
  if (first_failure) std::rethrow_exception(first_failure);
  return combine_reports(std::move(reports));
}

}  // namespace dip::exec::cuda
