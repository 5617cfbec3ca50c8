// The DIP planner: one call from a stage graph (a placement and a batch) to a validated plan.
//
// Phase 1 (segment reordering by tree search, segment_search.hpp) picks the segment order within
// a budget, unless the caller gives one; phase 2 (dual-queue interleaving, dual_queue.hpp) turns
// it into per-rank stage orders within the memory cap.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/dual_queue.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/segment_search.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/validate.hpp"
#include "dip/sim/simulator.hpp"

namespace dip {

struct dip_planner_options {
  std::optional<bytes> memory_cap;   // per GPU, weights included; nullopt: unlimited
  std::vector<bytes> weight_memory;  // per rank static memory; empty: zeros
  communication_model comm;          // the link the interleaver estimates arrivals with
  double search_ms = 0;              // phase 1 budget; 0 with search_rollouts 0: no search (natural order)
  std::size_t search_rollouts = 0;   // phase 1 rollout budget (reproducible with one thread)
  unsigned threads = 1;
  std::uint64_t seed = 1;
};

// Plans `graph` with dual-queue interleaving under `priority` (empty: the natural order), and
// validates the plan, the memory cap included. Throws dip::error(errc::invalid_plan) naming the
// violation when no order within the cap was found.
inline plan plan_dip_schedule(std::shared_ptr<const stage_graph> graph, const dip_planner_options& options,
                              std::span<const std::uint32_t> priority = {}) {
  require(graph != nullptr, errc::invalid_argument, "plan_dip_schedule", "no stage graph");
  const segment_index segments(*graph);
  const std::vector<std::uint32_t> natural = default_segment_priority(segments);
  interleave_options interleave;
  interleave.weight_memory = options.weight_memory;
  interleave.comm = options.comm;
  if (options.memory_cap) interleave.memory_cap.assign(std::size_t(graph->ranks()), *options.memory_cap);
  std::vector<std::uint32_t> searched;
  if (priority.empty() && (options.search_ms > 0 || options.search_rollouts > 0)) {
    segment_search_options search;
    search.time_budget_ms = options.search_ms;
    search.max_rollouts = options.search_rollouts;
    search.threads = options.threads;
    search.seed = options.seed;
    search.interleave = interleave;
    searched = search_segment_order(*graph, search).priority;
    priority = searched;
  }
  const interleave_result order = interleave_stages(*graph, segments, priority.empty() ? std::span(natural) : priority,
                                                    interleave);
  plan result = make_plan(std::move(graph), order.order);
  validate(result, {.memory_cap = options.memory_cap, .weight_memory = options.weight_memory});
  return result;
}

}  // namespace dip
