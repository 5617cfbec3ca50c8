// Static schedules on a modality-aware placement, the baselines between Megatron and DIP:
// - static-dip (like nnScaler*'s offline plans): DIP's placement and sub-microbatches, but one
//   fixed rule instead of a per-batch search: segments in natural order (microbatch by
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
#include "dip/schedule/dip_planner.hpp"
#include "dip/schedule/dual_queue.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/validate.hpp"

namespace dip {

// 1F1B's in-flight limit as per-rank memory caps: weights + n_r x the most activation bytes one
// microbatch keeps on rank r, never above `memory_cap` when one is given. n_r is the most
// chunks any of rank r's chunks has ahead of it, itself included, on the way to the loss
// (along its chain, then the longest consumer chain): a microbatch's activations there come
// back for backward after that many forward stages, so more in flight only costs memory. On a
// single chain of P chunks this is P - r, exactly 1F1B's rule.
inline std::vector<bytes> one_f_one_b_caps(const stage_graph& graph, const std::vector<bytes>& weight_memory,
                                           std::optional<bytes> memory_cap) {
  const std::size_t ranks = std::size_t(graph.ranks());
  const placement& layout = graph.placement();
  std::vector<std::vector<double>> kept(ranks, std::vector<double>(graph.microbatch_count(), 0.0));
  for (const stage& st : graph.stages()) {
    if (st.kind == stage_kind::forward) kept[st.rank.index()][st.microbatch.index()] += st.memory_delta.base();
  }
  // Chunks from the start of each chain to the loss: its length plus the longest consumer's
  // (chains are in topological order: inputs come first, so walk backwards).
  std::vector<std::size_t> to_loss(layout.chains.size(), 0);
  for (std::size_t k = layout.chains.size(); k-- > 0;) {
    std::size_t after = 0;
    for (std::size_t c = 0; c < layout.chains.size(); ++c) {
      const auto& inputs = layout.chain_inputs[c];
      if (std::find(inputs.begin(), inputs.end(), k) != inputs.end()) after = std::max(after, to_loss[c]);
    }
    to_loss[k] = layout.chains[k].size() + after;
  }
  std::vector<std::size_t> in_flight(ranks, 1);
  for (const chunk_spec& chunk : layout.chunks) {
    const std::size_t ahead = to_loss[chunk.chain] - chunk.position;
    in_flight[chunk.rank.index()] = std::max(in_flight[chunk.rank.index()], ahead);
  }
  std::vector<bytes> caps;
  for (std::size_t r = 0; r < ranks; ++r) {
    const double most = kept[r].empty() ? 0.0 : *std::max_element(kept[r].begin(), kept[r].end());
    bytes cap = (weight_memory.empty() ? bytes{} : weight_memory[r]) + bytes(most * double(in_flight[r]));
    if (memory_cap) cap = std::min(cap, *memory_cap);
    caps.push_back(cap);
  }
  return caps;
}

namespace detail {

inline plan plan_with_order(std::shared_ptr<const stage_graph> graph, const dip_planner_options& options,
                            const std::vector<std::uint32_t>& priority) {
  const segment_index segments(*graph);
  interleave_options interleave = interleave_options_of(*graph, options);
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
  const std::vector<std::uint32_t> priority = default_segment_priority(segments);
  return detail::plan_with_order(graph, options, priority);
}

}  // namespace dip
