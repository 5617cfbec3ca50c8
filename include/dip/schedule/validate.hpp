// dip::validate(plan): checks the rules an executor relies on before it runs a plan.
//
// A valid plan has one action list per rank of its stage graph, and
// - computes every stage exactly once, on the rank that owns its chunk (stage.rank);
// - orders each rank consistently with the dependencies: a same-rank input is computed earlier
//   on that rank, a cross-rank input is received by an earlier recv on this rank;
// - pairs every send with exactly one recv of the same edge: the send on the producer's rank,
//   naming the consumer's rank as its peer, after the producer is computed; the recv on the
//   consumer's rank, naming the producer's rank; no message for an edge within one rank;
// - gives a memory strategy other than keep only to forward stages;
// - when a memory cap is given, keeps every rank's running total (its weights plus the memory
//   deltas of its computes, in action order) within the cap. A pair whose forward recomputes or
//   offloads changes its stages' deltas by strategy_memory_delta (dip/schedule/strategy_cost.hpp,
//   the formula the simulator and the memory chooser share); keep uses the graph's deltas.
// These rules are per rank and per edge; they do not rule out a cross-rank deadlock (rank 0
// waiting on rank 1's recv order while rank 1 waits on rank 0's). dip::simulate finds those.
// Cost: O(actions + edges + stages).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/strategy_cost.hpp"

namespace dip {

struct validation_options {
  std::optional<bytes> memory_cap;   // per rank; none = memory is not checked
  std::vector<bytes> weight_memory;  // per rank static memory; empty = zeros
};

namespace detail {

struct plan_violation {
  std::string where;  // "rank 2 action 17", "rank 1" or "plan"
  std::string what;
};

// The first broken rule: ranks in order, each rank's actions in order, then what only the whole
// plan shows (unpaired messages by edge, then stages never computed by stage). Throws
// dip::error(errc::invalid_argument) for a plan without a graph or bad options.
inline std::optional<plan_violation> find_plan_violation(const plan& p, const validation_options& options) {
  require(p.graph != nullptr, errc::invalid_argument, "validate", "the plan has no stage graph");
  const stage_graph& graph = *p.graph;
  const std::size_t rank_count = static_cast<std::size_t>(graph.ranks());
  require(
      options.weight_memory.empty() || options.weight_memory.size() == rank_count, errc::invalid_argument,
      "validation_options.weight_memory",
      "has " + std::to_string(options.weight_memory.size()) + " entries for " + std::to_string(rank_count) + " ranks");
  if (p.ranks.size() != rank_count) {
    return plan_violation{"plan", "has action lists for " + std::to_string(p.ranks.size()) +
                                      " ranks, the stage graph has " + std::to_string(rank_count)};
  }
  const auto edges = graph.edges();
  const std::size_t stage_count = graph.size(), edge_count = edges.size();

  // Where something happened: (rank, action index), or nowhere yet.
  struct location {
    std::uint32_t rank = std::numeric_limits<std::uint32_t>::max();
    std::uint32_t index = 0;
    bool set() const noexcept { return rank != std::numeric_limits<std::uint32_t>::max(); }
  };
  std::vector<location> computed_at(stage_count), sent_at(edge_count), received_at(edge_count);
  const auto at = [](std::size_t r, std::size_t i) {
    return "rank " + std::to_string(r) + " action " + std::to_string(i);
  };
  // Only for stages known to exist: compute actions are checked first, edges' ends are stages.
  const auto rank_of = [&](stage_id id) { return graph.rank_of(id).value(); };
  // The strategy of every stage's pair, from the forwards' actions (empty: all keep).
  const std::vector<memory_strategy> pair_strategy = detail::pair_strategies(p);
  const auto name = [&](stage_id id) { return describe(graph, id); };  // for messages only

  for (std::size_t r = 0; r < rank_count; ++r) {
    double memory = options.weight_memory.empty() ? 0.0 : options.weight_memory[r].base();
    if (options.memory_cap && memory > options.memory_cap->base()) {
      return plan_violation{"rank " + std::to_string(r), "its weights need " + to_string(bytes(memory)) +
                                                             ", over the memory cap of " +
                                                             to_string(*options.memory_cap)};
    }
    const std::vector<action>& list = p.ranks[r];
    for (std::size_t i = 0; i < list.size(); ++i) {
      const action& a = list[i];
      if (a.kind == action_kind::compute) {
        if (a.stage.index() >= stage_count) {
          return plan_violation{at(r, i),
                                "computes stage " + std::to_string(a.stage.value()) + ", which does not exist"};
        }
        if (rank_of(a.stage) != r) {
          return plan_violation{at(r, i), "computes " + name(a.stage) + " on the wrong rank: its chunk c" +
                                              std::to_string(graph.at(a.stage).chunk.value()) + " is on rank " +
                                              std::to_string(rank_of(a.stage))};
        }
        const location first = computed_at[a.stage.index()];
        if (first.set()) {
          return plan_violation{at(r, i), "computes " + name(a.stage) + " a second time (first at " +
                                              at(first.rank, first.index) + "): a duplicate stage"};
        }
        for (const std::uint32_t e : graph.in_edges(a.stage)) {
          const stage_id input = edges[e].from;
          if (rank_of(input) == r) {
            if (!computed_at[input.index()].set()) {
              return plan_violation{at(r, i), "order contradicts a dependency: " + name(a.stage) +
                                                  " runs before its input " + name(input) +
                                                  " is computed on this rank"};
            }
          } else if (!received_at[e].set()) {
            return plan_violation{at(r, i), "order contradicts a dependency: " + name(a.stage) +
                                                " runs before its input " + name(input) + " from rank " +
                                                std::to_string(rank_of(input)) +
                                                " is received by an earlier recv on this rank"};
          }
        }
        if (a.strategy != memory_strategy::keep && graph.at(a.stage).kind != stage_kind::forward) {
          return plan_violation{at(r, i), name(a.stage) + " has memory strategy " + std::string(to_string(a.strategy)) +
                                              "; only forward stages take one"};
        }
        computed_at[a.stage.index()] = {std::uint32_t(r), std::uint32_t(i)};
        memory += detail::memory_delta_under(graph, a.stage, pair_strategy);
        if (options.memory_cap && memory > options.memory_cap->base()) {
          return plan_violation{at(r, i), "memory over the cap after " + name(a.stage) + ": needs " +
                                              to_string(bytes(memory)) + ", the cap is " +
                                              to_string(*options.memory_cap)};
        }
        continue;
      }

      // A message: its edge must exist, cross ranks, and start and end where the action says.
      const bool is_send = a.kind == action_kind::send;
      const char* verb = is_send ? "send" : "recv";
      if (a.edge >= edge_count) {
        return plan_violation{at(r, i),
                              std::string(verb) + " names edge " + std::to_string(a.edge) + ", which does not exist"};
      }
      const stage_edge& edge = edges[a.edge];
      if (a.stage != edge.from) {
        return plan_violation{at(r, i), std::string(verb) + " names stage " + std::to_string(a.stage.value()) +
                                            " but its edge leaves " + name(edge.from)};
      }
      // Names are built only for the violation found: valid plans are the common case, and at
      // scale (26208 stages) naming every action took most of the check's time.
      const auto message = [&] { return describe(graph, a); };
      const std::uint32_t from = rank_of(edge.from), to = rank_of(edge.to);
      if (from == to) {
        return plan_violation{at(r, i), message() + ": both ends of the edge are on rank " + std::to_string(from) +
                                            ", so it needs no message"};
      }
      const std::uint32_t here = is_send ? from : to, peer = is_send ? to : from;
      if (r != here) {
        return plan_violation{at(r, i),
                              message() + " on the wrong rank: " +
                                  (is_send ? "the producer " + name(edge.from) : "the consumer " + name(edge.to)) +
                                  " is on rank " + std::to_string(here)};
      }
      if (a.peer.value() != peer) {
        return plan_violation{at(r, i),
                              message() + " has the wrong peer: " +
                                  (is_send ? "the consumer " + name(edge.to) : "the producer " + name(edge.from)) +
                                  " is on rank " + std::to_string(peer)};
      }
      location& seen = is_send ? sent_at[a.edge] : received_at[a.edge];
      if (seen.set()) {
        return plan_violation{at(r, i), message() + " repeats the " + verb + " at " + at(seen.rank, seen.index)};
      }
      if (is_send && !computed_at[edge.from.index()].set()) {
        return plan_violation{
            at(r, i), message() + " comes before its producer " + name(edge.from) + " is computed on this rank"};
      }
      seen = {std::uint32_t(r), std::uint32_t(i)};
    }
  }

  for (std::size_t e = 0; e < edge_count; ++e) {
    const location s = sent_at[e], v = received_at[e];
    if (s.set() && !v.set()) {
      return plan_violation{at(s.rank, s.index),
                            "unpaired send: " + describe(graph, p.ranks[s.rank][s.index]) + " is never received"};
    }
    if (v.set() && !s.set()) {
      return plan_violation{at(v.rank, v.index),
                            "unpaired recv: " + describe(graph, p.ranks[v.rank][v.index]) + " is never sent"};
    }
  }
  for (std::size_t s = 0; s < stage_count; ++s) {
    if (!computed_at[s].set()) {
      const stage_id id = stage_id::from_index(s);
      return plan_violation{"plan", "missing stage: " + name(id) + " is never computed (rank " +
                                        std::to_string(rank_of(id)) + " owns it)"};
    }
  }
  return std::nullopt;
}

}  // namespace detail

// The message of the first rule `p` breaks ("rank 1 action 4: ..."), or nothing if it is valid.
inline std::optional<std::string> first_violation(const plan& p, const validation_options& options = {}) {
  std::optional<detail::plan_violation> v = detail::find_plan_violation(p, options);
  if (!v) return std::nullopt;
  return v->where + ": " + v->what;
}

// Whether every rank of `p` stays within `cap`: validate's memory rule alone (weights plus the
// running sum of the compute actions' memory deltas under their pairs' strategies, in action
// order; the same arithmetic). For a plan whose other rules hold, memory_fits(p, cap, w) ==
// !first_violation(p, {cap, w}), in O(actions) and without validate's tables. A plan whose
// memory cannot be summed (no graph, other rank count, a stage that does not exist) does not fit.
inline bool memory_fits(const plan& p, bytes cap, const std::vector<bytes>& weight_memory = {}) {
  if (p.graph == nullptr) return false;
  const stage_graph& graph = *p.graph;
  const std::size_t rank_count = static_cast<std::size_t>(graph.ranks());
  if (p.ranks.size() != rank_count || !(weight_memory.empty() || weight_memory.size() == rank_count)) return false;
  const std::vector<memory_strategy> pair_strategy = detail::pair_strategies(p);
  for (std::size_t r = 0; r < rank_count; ++r) {
    double memory = weight_memory.empty() ? 0.0 : weight_memory[r].base();
    if (memory > cap.base()) return false;
    for (const action& a : p.ranks[r]) {
      if (a.kind != action_kind::compute) continue;
      if (a.stage.index() >= graph.size()) return false;
      memory += detail::memory_delta_under(graph, a.stage, pair_strategy);
      if (memory > cap.base()) return false;
    }
  }
  return true;
}

// Throws dip::error(errc::invalid_plan, where, what) for the first rule `p` breaks.
inline void validate(const plan& p, const validation_options& options = {}) {
  if (std::optional<detail::plan_violation> v = detail::find_plan_violation(p, options)) {
    throw error(errc::invalid_plan, std::move(v->where), std::move(v->what));
  }
}

}  // namespace dip
