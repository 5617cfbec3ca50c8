// Static schedules on a modality-aware placement, the baselines between Megatron and DIP:
// - static-dip (like nnScaler*'s offline plans): DIP's placement and sub-microbatches, but one
//   fixed rule instead of a per-batch search: segments in natural order (microbatch by
//   microbatch, producers first) and 1F1B's in-flight limit, rank r holding at most P - r
//   microbatches' activations (as bytes: P - r times the most one microbatch keeps on it);
// - optimus (Optimus, Feng et al. 2024, in spirit): the backbone runs a plain 1F1B pipeline and
//   encoder work fills its bubbles: backbone segments come first in priority, the encoders'
//   only run when the backbone cannot, under the same in-flight limit. Use it with a placement
//   of one chunk per rank per chain (partition_options::segments_per_rank = 1).
// Both are orders for the dual-queue interleaver (dual_queue.hpp), so they run on any
// multi-chain stage graph. Like the classic baselines they are not memory-aware beyond 1F1B's
// rule: `options.memory_cap` only lowers the in-flight caps, and a plan is validated without a
// cap (dip-plan reports its peak). Only the DIP planner searches for an order within the cap.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "dip/core/units.hpp"
#include "dip/schedule/dip_planner.hpp"
#include "dip/schedule/dual_queue.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/validate.hpp"

namespace dip {

// 1F1B's in-flight limit as per-rank memory caps: weights + (P - r) x the most activation bytes
// one microbatch keeps on rank r, never above `memory_cap` when one is given.
inline std::vector<bytes> one_f_one_b_caps(const stage_graph& graph, const std::vector<bytes>& weight_memory,
                                           std::optional<bytes> memory_cap) {
  const std::size_t ranks = std::size_t(graph.ranks());
  std::vector<std::vector<double>> kept(ranks, std::vector<double>(graph.microbatch_count(), 0.0));
  for (const stage& st : graph.stages()) {
    if (st.kind == stage_kind::forward) kept[st.rank.index()][st.microbatch.index()] += st.memory_delta.base();
  }
  std::vector<bytes> caps;
  for (std::size_t r = 0; r < ranks; ++r) {
    const double most = kept[r].empty() ? 0.0 : *std::max_element(kept[r].begin(), kept[r].end());
    bytes cap = (weight_memory.empty() ? bytes{} : weight_memory[r]) + bytes(most * double(ranks - r));
    if (memory_cap) cap = std::min(cap, *memory_cap);
    caps.push_back(cap);
  }
  return caps;
}

namespace detail {

inline plan plan_with_order(std::shared_ptr<const stage_graph> graph, const dip_planner_options& options,
                            const std::vector<std::uint32_t>& priority) {
  const segment_index segments(*graph);
  interleave_options interleave;
  interleave.weight_memory = options.weight_memory;
  interleave.comm = options.comm;
  interleave.memory_cap = one_f_one_b_caps(*graph, options.weight_memory, options.memory_cap);
  const interleave_result order = interleave_stages(*graph, segments, priority, interleave);
  plan result = make_plan(std::move(graph), order.order);
  validate(result, {.memory_cap = std::nullopt, .weight_memory = options.weight_memory});
  return result;
}

}  // namespace detail

inline plan plan_static_dip(std::shared_ptr<const stage_graph> graph, const dip_planner_options& options) {
  require(graph != nullptr, errc::invalid_argument, "static-dip", "no stage graph");
  const segment_index segments(*graph);
  return detail::plan_with_order(graph, options, default_segment_priority(segments));
}

inline plan plan_optimus(std::shared_ptr<const stage_graph> graph, const dip_planner_options& options) {
  require(graph != nullptr, errc::invalid_argument, "optimus", "no stage graph");
  const segment_index segments(*graph);
  // Backbone chains: those no other chain consumes (the loss is computed at their end).
  const placement& layout = graph->placement();
  std::vector<bool> consumed(layout.chains.size(), false);
  for (const auto& inputs : layout.chain_inputs) {
    for (std::size_t k : inputs) consumed[k] = true;
  }
  std::vector<std::uint32_t> order(segments.size());
  for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_partition(order.begin(), order.end(), [&](std::uint32_t s) { return !consumed[segments.at(s).chain]; });
  std::vector<std::uint32_t> priority(order.size());
  for (std::uint32_t i = 0; i < order.size(); ++i) priority[order[i]] = i;
  return detail::plan_with_order(graph, options, priority);
}

}  // namespace dip
