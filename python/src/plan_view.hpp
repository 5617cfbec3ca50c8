// A planned batch as Python sees it: plain values only (names, ints, milliseconds), built once
// when planning returns so that Python never reaches into the stage graph; and, shared, what its
// executable export (Plan.executable(), Plan.to_json()) is made from when asked for.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <dip/batch/packing.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/core/units.hpp>
#include <dip/io/plan_export.hpp>
#include <dip/model/model.hpp>
#include <dip/planner/planner.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/strategy_cost.hpp>

namespace dip::python {

// One action of one rank's list. For send and recv, stage/module/chunk/microbatch/sub describe
// the producing stage of the message (the tensor that travels); `edge` pairs a send with its recv.
struct action_view {
  std::string kind;    // "compute", "send", "recv"
  std::string stage;   // "F", "B", "I", "W"
  std::string module;  // the chunk's modules, "+"-joined when it spans several ("vit+projector")
  int chunk = 0;
  int chain = 0;
  int microbatch = 0;
  int sub = 0;
  std::string strategy;     // "keep", "recompute", "offload" (compute of a forward; else "keep")
  std::optional<int> peer;  // send: the receiver; recv: the sender
  std::optional<int> edge;  // send/recv: the stage-graph edge (message id)
  double start_ms = 0;      // simulated: compute runs [start, end); send: on the link until arrival;
  double end_ms = 0;        // recv: from waiting to having the data
  std::string label;        // "F3.1@c2", "send F3@c1 -> F3@c2 to rank 2"
};

// What the action-list JSON of a plan is exported from: the plan, its split and work, the packed
// microbatches it was planned from and the model.
struct plan_export_source {
  dip::plan plan;
  std::vector<split_microbatch> split;
  batch_work work;
  std::vector<packed_microbatch> packed;  // not the split's (unknown): the file has "batch": null
  multimodal_model model;
  std::string schedule;
  std::uint64_t index = 0;

  // Version 2 of docs/plan-format.md; throws dip::error as dip::export_plan does.
  exported_plan exported() const {
    if (!packed.empty() && packed.size() == split.size()) {
      return export_plan(plan, model, work, split, packed, schedule, std::int64_t(index));
    }
    return export_plan(plan, model, work, schedule, std::int64_t(index));
  }
};

struct plan_view {
  std::string model;
  std::string schedule;
  std::string partition;
  int pp = 0;
  int tp = 0;
  std::string gpu;
  std::int64_t memory_cap_bytes = 0;
  double makespan_ms = 0;
  double bubble_ratio = 0;
  double lower_bound_ms = 0;
  double busiest_rank_ms = 0;
  double critical_path_ms = 0;
  double average_work_ms = 0;
  double rank_window_ms = 0;        // dip/sim/lower_bounds.hpp
  double memory_free_bound_ms = 0;  // lower_bound_ms with the rank window
  double cap_bound_ms = 0;          // under the memory cap
  std::vector<std::int64_t> peak_memory_per_rank;
  std::vector<std::int64_t> weight_memory_per_rank;
  std::vector<double> busy_ms;
  double plan_ms = 0;
  std::uint64_t index = 0;            // the batch index it was planned as
  std::optional<std::string> source;  // get(): in_time, best_so_far, fallback or error; plan(): nullopt
  std::string search_error;           // source "error": what dip's search threw
  std::vector<std::vector<action_view>> ranks;
  std::vector<microbatch_summary> microbatches;
  std::shared_ptr<const plan_export_source> source_plan;  // for the export
  std::int64_t peak_memory() const {
    std::int64_t peak = 0;
    for (std::int64_t p : peak_memory_per_rank) peak = std::max(peak, p);
    return peak;
  }
};

inline std::string chunk_modules(const multimodal_model& model, const chunk_spec& chunk) {
  std::string names;
  for (const layer_span& span : chunk.spans) {
    const std::string& name = model.module(span.module).name;
    if (names == name || names.ends_with("+" + name)) continue;
    names += (names.empty() ? "" : "+") + name;
  }
  return names;
}

// `packed`: the batch as planned (the summaries of its microbatches, and its items in the export).
// `planned` is taken by value: a plan() result moves in, get()'s is copied.
inline plan_view view_of(planned_batch planned, const cluster_spec& cluster, const multimodal_model& model,
                         const std::vector<packed_microbatch>& packed) {
  const stage_graph& graph = *planned.plan.graph;
  const simulation_result& sim = planned.simulation;
  plan_view v;
  v.model = model.name();
  v.schedule = planned.schedule;
  v.partition = planned.placement;
  v.pp = cluster.pp;
  v.tp = cluster.tp;
  v.gpu = cluster.gpu.name;
  v.memory_cap_bytes = std::int64_t(cluster.cap().base());
  v.makespan_ms = to_milliseconds(sim.makespan);
  v.bubble_ratio = sim.bubble_ratio;
  v.lower_bound_ms = to_milliseconds(sim.bounds.classic());
  v.busiest_rank_ms = to_milliseconds(sim.bounds.busiest_rank);
  v.critical_path_ms = to_milliseconds(sim.bounds.critical_path);
  v.average_work_ms = to_milliseconds(sim.bounds.average_work);
  v.rank_window_ms = to_milliseconds(sim.bounds.rank_window);
  v.memory_free_bound_ms = to_milliseconds(sim.bounds.memory_free());
  v.cap_bound_ms = to_milliseconds(sim.bounds.under_cap());
  for (const rank_stats& r : sim.ranks) {
    v.peak_memory_per_rank.push_back(std::int64_t(r.peak_memory.base()));
    v.busy_ms.push_back(to_milliseconds(r.busy));
  }
  for (bytes w : planned.weight_memory) v.weight_memory_per_rank.push_back(std::int64_t(w.base()));
  v.plan_ms = planned.times.plan_ms;
  v.index = planned.index;

  v.ranks.resize(planned.plan.ranks.size());
  for (std::size_t r = 0; r < planned.plan.ranks.size(); ++r) {
    for (const action& a : planned.plan.ranks[r]) {
      const dip::stage& s = graph.at(a.stage);
      const chunk_spec& chunk = graph.placement().chunk(s.chunk);
      action_view out;
      out.kind = a.kind == action_kind::compute ? "compute" : a.kind == action_kind::send ? "send" : "recv";
      out.stage = std::string(1, to_char(s.kind));
      out.module = chunk_modules(model, chunk);
      out.chunk = int(s.chunk.index());
      out.chain = int(chunk.chain);
      out.microbatch = int(s.microbatch.index());
      out.sub = int(s.sub);
      out.strategy = std::string(to_string(a.strategy));
      if (a.kind != action_kind::compute) {
        out.peer = int(a.peer.index());
        out.edge = int(a.edge);
      }
      out.label = describe(graph, a);
      v.ranks[r].push_back(std::move(out));
    }
  }
  // The timeline is ordered by rank, then action index.
  for (const timed_action& t : sim.timeline) {
    action_view& a = v.ranks.at(t.rank.index()).at(t.index);
    a.start_ms = to_milliseconds(t.start);
    a.end_ms = to_milliseconds(t.end);
  }
  for (std::size_t j = 0; j < packed.size() && j < planned.split.size(); ++j) {
    v.microbatches.push_back(summarize(packed[j], planned.split[j], model));
  }
  v.source_plan = std::make_shared<const plan_export_source>(
      plan_export_source{std::move(planned.plan), std::move(planned.split), std::move(planned.work), packed, model,
                         std::move(planned.schedule), planned.index});
  return v;
}

}  // namespace dip::python
