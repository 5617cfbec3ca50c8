// dip::exec::execute: runs a dip::plan for real, every rank in its own thread over an in-process
// fabric (cpu_transport.hpp), on the exact CPU backend; the entry point of the executor. It runs
// an executable plan: the plan, and the items and rows of every sub-microbatch (exec/data.hpp). Its parts,
// each usable on its own (the CUDA backend in reference_executor/cuda/ runs the same walk):
// - compute_backend.hpp: compute_backend_like, what the walk needs from a backend;
// - cpu_compute.hpp: the exact CPU backend (Eigen, double, bit-exact);
// - execution_context.hpp: what all ranks share, checked before any thread starts;
// - stage_runner.hpp: one rank's compute actions and the activations they keep;
// - walk.hpp: run_rank, one rank's walk over its actions on a backend and a transport;
// - rank_report.hpp: a rank's figures and combine_reports, the step's result from them.
// execute() joins every thread always: an exception on one rank aborts the fabric, so the
// others fail within the timeout, and the first error is rethrown.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/compute_backend.hpp"
#include "dip/exec/cpu_compute.hpp"
#include "dip/exec/cpu_transport.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/execution_context.hpp"
#include "dip/exec/rank_report.hpp"
#include "dip/exec/stage_runner.hpp"
#include "dip/exec/transport.hpp"
#include "dip/exec/walk.hpp"
#include "dip/io/executable_batch.hpp"
#include "dip/io/model_export.hpp"
#include "dip/planner/planner.hpp"
#include "dip/schedule/plan.hpp"

namespace dip::exec {

// One rank's stage runner on the exact CPU backend.
using cpu_stage_runner = stage_runner<cpu_compute>;

// run_rank (walk.hpp) on the exact CPU backend: the rank's own cpu_stage_runner.
template <transport_like Transport>
rank_report run_rank(const execution_context& ctx, rank_id rank, Transport& transport,
                     const execute_options& options = {}) {
  cpu_stage_runner runner(ctx, rank, cpu_compute(*ctx.model, ctx.batch));
  return run_rank(ctx, rank, runner, transport, options);
}

// The executable batch of a planned batch: which items each sub-microbatch holds as the plan's
// graph runs them (dip::export_batch on planned.split and the `packed` microbatches planned).
inline exported_batch executable_batch(const planned_batch& planned, std::span<const packed_microbatch> packed,
                                       const multimodal_model& model) {
  require(planned.plan.graph != nullptr, errc::invalid_argument, "executable_batch", "no plan");
  return export_batch(*planned.plan.graph, describe_model(model), planned.split, packed);
}

// Runs plan `p` of `model` on `batch` (the executable batch of the microbatches its graph was
// built from; `tensors`: a plan file's edge tensors to check, or empty), one thread per rank
// over an in-process fabric, and returns the reduced gradients, loss and per-rank figures.
inline step_result execute(const std::shared_ptr<const plan>& p, const multimodal_model& model,
                           const exported_batch& batch, const execute_options& options = {},
                           const std::vector<std::vector<message_tensor>>& tensors = {}) {
  require(p != nullptr && p->graph != nullptr, errc::invalid_argument, "execute", "no plan");
  const execution_context ctx(p, std::make_shared<const executable_model>(model), batch, tensors);
  const std::size_t ranks = p->ranks.size();
  cpu_fabric fabric(int(ranks), options.timeout);
  std::vector<rank_report> reports(ranks);
  std::mutex failure_mutex;
  std::exception_ptr first_failure;
  {
    std::vector<std::jthread> threads;
    threads.reserve(ranks);
    for (std::size_t r = 0; r < ranks; ++r) {
      threads.emplace_back([&, r] {
        cpu_transport transport(fabric, int(r));
        try {
          reports[r] = run_rank(ctx, rank_id::from_index(r), transport, options);
        } catch (...) {
          {
            std::lock_guard lock(failure_mutex);
            if (!first_failure) first_failure = std::current_exception();
          }
          transport.abort();
        }
      });
    }
  }  // jthreads join here, whatever happened
  if (first_failure) std::rethrow_exception(first_failure);
  return combine_reports(std::move(reports));
}

inline step_result execute(const plan& p, const multimodal_model& model, const exported_batch& batch,
                           const execute_options& options = {}) {
  return execute(std::make_shared<const plan>(p), model, batch, options);
}

// A planned batch (planner::plan on `packed`) on the executor.
inline step_result execute(const planned_batch& planned, std::span<const packed_microbatch> packed,
                           const multimodal_model& model, const execute_options& options = {}) {
  return execute(planned.plan, model, executable_batch(planned, packed, model), options);
}

}  // namespace dip::exec
