// Static schedules on a modality-aware placement, the baselines between Megatron and DIP:
// - static-dip (like nnScaler*'s offline plans): DIP's placement and sub-microbatches, but one
//   fixed rule instead of a per-batch search: passes in natural order (microbatch by
//   microbatch, producers first) and 1F1B's in-flight limit, rank r holding at most P - r
//   microbatches' activations (as bytes: P - r times the most one microbatch keeps on it);
// - optimus (Optimus, Feng et al. 2024, in spirit): the backbone runs a plain 1F1B pipeline
//   (one chunk per rank: use a placement with partition_options::segments_per_rank = 1 for
//   every module) and the encoders, spread over all ranks, run in its bubbles: microbatch by
//   microbatch, an encoder's stages run whenever the backbone's next stage is not ready.
//   (Prioritising the backbone over the encoders outright starves it: its next microbatch needs
//   the encoders' output, so that order is slower on every preset.)
// Both are orders for the dual-queue interleaver (dual_queue.hpp), so they run on any
// multi-chain stage graph. Like the classic baselines they are not memory-aware beyond 1F1B's
// rule: `options.memory_cap` only lowers the in-flight caps, and a plan is validated without a
// cap (dip-plan reports its peak). Only the DIP planner searches for an order within the cap.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "dip/core/units.hpp"
#include "dip/planner/dip_planner.hpp"
#include "dip/schedule/dual_queue.hpp"
#include "dip/schedule/in_flight_caps.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/validate.hpp"

namespace dip {

namespace detail {

// The order's plan under 1F1B's in-flight caps, not validated yet.
inline plan interleave_with_order(std::shared_ptr<const stage_graph> graph, const dip_planner_options& options,
                                  const pass_index& passes, const std::vector<std::uint32_t>& priority) {
  interleave_options interleave = interleave_options_of(*graph, options);
  interleave.memory_cap = one_f_one_b_caps(*graph, options.weight_memory, options.memory_cap);
  const interleave_result order = interleave_stages(*graph, passes, priority, interleave);
  return make_plan(std::move(graph), order.order);
}

// The natural order's plan (static-dip's and optimus's), validated without a cap.
inline plan plan_natural_order(const std::shared_ptr<const stage_graph>& graph, const dip_planner_options& options,
                               const char* schedule) {
  require(graph != nullptr, errc::invalid_argument, schedule, "no stage graph");
  const pass_index passes(*graph);
  plan result = interleave_with_order(graph, options, passes, default_pass_priority(passes));
  validate(result, {.memory_cap = std::nullopt, .weight_memory = options.weight_memory});
  return result;
}

}  // namespace detail

inline plan plan_static_dip(const std::shared_ptr<const stage_graph>& graph, const dip_planner_options& options) {
  return detail::plan_natural_order(graph, options, "static-dip");
}

inline plan plan_optimus(const std::shared_ptr<const stage_graph>& graph, const dip_planner_options& options) {
  return detail::plan_natural_order(graph, options, "optimus");
}

}  // namespace dip
