// dip.Planner as the bindings hold it: a dip::planner (dip/planner/planner.hpp) over the model
// handle's cost model, built from the keyword arguments of dip.Planner / dip.plan, and the packed
// batches submitted ahead (their summaries go into the plans get() returns).
//
// Only glue lives here: keyword arguments -> dip::cluster_spec and dip::planner_options (with the
// defaults dip-plan has), checked under their Python names; planning itself (placement, split,
// stage graph, schedule, memory fit, validation, simulation) is the facade's.
#pragma once

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <dip/batch/packing.hpp>
#include <dip/core/error.hpp>
#include <dip/core/units.hpp>
#include <dip/model/hardware.hpp>
#include <dip/planner/planner.hpp>

#include "model_handle.hpp"
#include "plan_view.hpp"

namespace dip::python {

// The keyword arguments of dip.Planner (and dip.plan), dip-plan's flags of the same names.
// nullopt: the model's value (pp, tp, gpu), the GPU's memory, or the planner's choice.
struct planner_request {
  std::optional<int> pp;
  std::optional<int> tp;
  std::optional<std::string> gpu;
  std::optional<std::string> partition;  // nullopt: "balanced"
  std::string balance = "uniform";       // what "balanced" balances for: uniform or batch
  std::optional<double> memory_cap_gib;
  double search_ms = 200;
  std::size_t search_rollouts = 0;
  std::uint64_t seed = 0;
  unsigned threads = 1;
  int chunks = 2;  // chunks per rank of "interleaved"
  double p2p_latency_us = 0;
  std::optional<double> link_gbps;  // nullopt: NVLink when tp * pp fits one node, else the network
  bool memory_strategies = true;
  bool fit_memory = true;
  bool tune_segments = true;
  std::optional<int> segments_per_rank;                        // nullopt: the partitioner's (or tuned) K
  std::optional<int> sub_microbatch_size;                      // nullopt: the partitioner's B
  std::vector<std::vector<packed_microbatch>> tuning_batches;  // empty: the first batch planned
  profiled_cost_model costs;                                   // dip.ProfiledCosts; empty: analytic
};

// Checks what the facade would report under its own names (cluster.pp, interleaved_chunks), or
// could not see at all (a negative count cast to size_t), under the Python keyword's name.
inline void check_request(const planner_request& r) {
  for (const auto& [value, name] : {std::pair{r.pp, "pp"}, std::pair{r.tp, "tp"}}) {
    require(!value || *value >= 1, errc::invalid_argument, name, "must be >= 1 (or None)");
  }
  require(!r.memory_cap_gib || *r.memory_cap_gib > 0, errc::invalid_argument, "memory_cap_gib",
          "must be > 0 (or None for the GPU's memory)");
  require(r.search_ms >= 0, errc::invalid_argument, "search_ms", "must be >= 0");
  require(r.threads >= 1, errc::invalid_argument, "threads", "must be >= 1");
  require(r.chunks >= 1, errc::invalid_argument, "chunks", "must be >= 1");
  require(r.p2p_latency_us >= 0, errc::invalid_argument, "p2p_latency_us", "must be >= 0");
  require(!r.link_gbps || (std::isfinite(*r.link_gbps) && *r.link_gbps > 0), errc::invalid_argument, "link_gbps",
          "must be a finite number > 0 (GB/s), or None for NVLink inside a node and the network across nodes");
  require(r.segments_per_rank.value_or(0) >= 0, errc::invalid_argument, "segments_per_rank", "must be >= 0");
  require(r.sub_microbatch_size.value_or(0) >= 0, errc::invalid_argument, "sub_microbatch_size", "must be >= 0");
}

// The cluster as dip-plan makes it from its flags, else from the model (preset or file).
inline cluster_spec cluster_of(const model_handle& model, const planner_request& r) {
  cluster_spec cluster{.pp = r.pp.value_or(model.pp),
                       .tp = r.tp.value_or(model.tp),
                       .gpu = find_gpu(r.gpu.value_or(model.gpu)),
                       .memory_cap = std::nullopt,
                       .p2p_latency = microseconds(r.p2p_latency_us),
                       .link = std::nullopt};
  if (r.memory_cap_gib) cluster.memory_cap = gib(*r.memory_cap_gib);
  if (r.link_gbps) cluster.link = gigabytes_per_second(*r.link_gbps);
  return cluster;
}

// The planner's options (tools/dip_plan.cpp, planner_options_of), with the timeline recorded:
// every action of a dip.Plan carries its simulated start and end.
inline planner_options options_of(planner_request r) {
  planner_options o;
  o.partition = r.partition.value_or("balanced");
  o.balance = r.balance;
  o.interleaved_chunks = std::size_t(r.chunks);
  o.segments_per_rank = std::size_t(r.segments_per_rank.value_or(0));
  o.sub_microbatch_size = std::size_t(r.sub_microbatch_size.value_or(0));
  o.tune_segments = r.tune_segments;
  o.tuning_batches = std::move(r.tuning_batches);
  o.search_ms = r.search_ms;
  o.search_rollouts = r.search_rollouts;
  o.threads = r.threads;
  o.seed = r.seed;
  o.memory_strategies = r.memory_strategies;
  o.fit_memory = r.fit_memory;
  o.record_timeline = true;
  return o;
}

// How get() obtained a plan, as Python spells it.
inline std::string source_name(plan_source source) {
  switch (source) {
    case plan_source::in_time: return "in_time";
    case plan_source::best_so_far: return "best_so_far";
    case plan_source::fallback: return "fallback";
    case plan_source::error: return "error";
  }
  return "fallback";
}

// Thread-safety: plan() may run in several threads at once (the facade is); submit() and get()
// too, as the asynchronous planner's are, once the first submit() has started its workers.
class planner_handle {
 public:
  planner_handle(std::shared_ptr<const model_handle> model, planner_request request)
      : model_(std::move(model)), planner_(make(*model_, std::move(request))) {}

  const std::shared_ptr<const model_handle>& model() const noexcept { return model_; }
  const planner<cost_model>& facade() const noexcept { return planner_; }

  // Throws dip::error(not_found) naming the known schedules.
  void check_schedule(const std::string& schedule) const { (void)planner_.schedules().at(schedule); }

  plan_view plan(const std::vector<packed_microbatch>& batch, const std::string& schedule, std::uint64_t index) const {
    return view_of(planner_.plan(batch, schedule, index), planner_.cluster(), model_->model, batch);
  }

  // Plans batch `index` ahead on the facade's workers; keeps the batch for get()'s summaries.
  void submit(std::uint64_t index, std::vector<packed_microbatch> batch, const std::string& schedule) {
    std::lock_guard lock(mutex_);
    planner_.submit(index, batch, schedule);
    submitted_[index] = std::move(batch);
    started_ = true;
  }

  // Batch `index`'s plan within `timeout_s` seconds (nullopt: when its search ends).
  plan_view get(std::uint64_t index, std::optional<double> timeout_s) {
    require(!timeout_s || *timeout_s >= 0, errc::invalid_argument, "timeout_s",
            "must be >= 0 (or None to wait for the search to end)");  // NaN too
    std::unique_lock lock(mutex_);
    // Before the first submit the facade has no workers yet and makes them on first use: keep
    // the lock then (get throws at once: nothing was submitted); after, its get is thread-safe.
    if (started_) lock.unlock();
    delivered_plan<planned_batch> delivered =
        timeout_s ? planner_.get(index, std::chrono::duration<double>(*timeout_s))  // clamps a huge timeout
                  : planner_.get(index, std::chrono::steady_clock::time_point::max());
    if (!lock.owns_lock()) lock.lock();
    std::vector<packed_microbatch> batch;
    if (const auto found = submitted_.find(index); found != submitted_.end()) batch = std::move(found->second);
    submitted_.erase(submitted_.begin(), submitted_.upper_bound(index));  // delivered in order
    lock.unlock();
    plan_view view = view_of(delivered.plan, planner_.cluster(), model_->model, batch);
    view.source = source_name(delivered.source);
    view.search_error = delivered.error;
    return view;
  }

 private:
  static planner<cost_model> make(const model_handle& model, planner_request request) {
    check_request(request);
    const cluster_spec cluster = cluster_of(model, request);
    cost_model costs = model.costs(cluster.gpu, cluster.tp, request.costs);
    return planner<cost_model>(model.model, std::move(costs), cluster, options_of(std::move(request)));
  }

  std::shared_ptr<const model_handle> model_;
  std::mutex mutex_;  // submitted_, started_
  std::map<std::uint64_t, std::vector<packed_microbatch>> submitted_;
  bool started_ = false;
  planner<cost_model> planner_;  // last: its workers stop before the rest goes
};

}  // namespace dip::python
