// The DIP planner: one call from a stage graph (a placement and a batch) to a validated plan.
//
// This version runs phase 2 (dual-queue interleaving, dual_queue.hpp) with the natural segment
// priority or one the caller gives; segment reordering by tree search (phase 1) and memory
// strategies (phase 3) plug in here as they land (issue 6).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/dual_queue.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/validate.hpp"
#include "dip/sim/simulator.hpp"

namespace dip {

struct dip_planner_options {
  std::optional<bytes> memory_cap;   // per GPU, weights included; nullopt: unlimited
  std::vector<bytes> weight_memory;  // per rank static memory; empty: zeros
  communication_model comm;          // the link the interleaver estimates arrivals with
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
  const interleave_result order = interleave_stages(*graph, segments, priority.empty() ? std::span(natural) : priority,
                                                    interleave);
  plan result = make_plan(std::move(graph), order.order);
  validate(result, {.memory_cap = options.memory_cap, .weight_memory = options.weight_memory});
  return result;
}

}  // namespace dip
