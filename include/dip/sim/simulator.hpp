// dip::simulate: the event-driven simulator of a dip::plan.
//
// Every rank walks its action list in order with its own clock (its compute stream):
// - compute runs a stage from the rank's clock for the stage's time; its inputs must be ready
//   (a same-rank producer computed earlier in this list, a cross-rank one received by an earlier
//   recv on this rank), else the plan is invalid;
// - send is non-blocking (the clock does not move): the transfer starts when both the rank and
//   the directed link (from, to) are free, occupies the link for bytes / bandwidth and delivers
//   after a further `latency`, so transfers on one link serialise while latencies overlap;
// - recv blocks: the clock moves to the data's arrival.
// Memory convention: a rank holds its static `weight_memory`, and each compute applies its
// stage's memory_delta when it *ends* (F allocates its kept activations as it finishes, B or W
// frees them as it finishes); the peak is the largest running total.
// Memory strategies (dip/schedule/strategy_cost.hpp, the one formula the chooser and the
// validator share): a forward's compute action carries the strategy of its pair. recompute and
// offload change that pair's stage times (strategy_time: F and B, or F and I when split) and
// memory deltas (strategy_memory_delta); keep leaves both exactly as the stage graph has them.
// Times follow from dependencies alone, so no global event queue is needed: a dataflow worklist
// advances each rank until it blocks on a recv whose send has not been simulated yet and wakes
// it when that send is. Cost O(actions + edges), no allocation inside the loop.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/model/hardware.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/strategy_cost.hpp"
#include "dip/sim/lower_bounds.hpp"

namespace dip {

struct simulation_options {
  communication_model comm;
  std::vector<bytes> weight_memory;           // per rank static memory (weights, grads, optimizer); empty = zeros
  bool record_timeline = false;               // fill simulation_result::timeline and rank_stats::memory_timeline
  memory_strategy_model memory_strategies{};  // prices recompute and offload (host link)
};

// One simulated action. compute: [start, end) of the stage; send: the transfer, from its start
// on the link to the data's arrival at the peer; recv: from the moment the rank starts waiting
// to the moment it has the data (start == end when the data was already there).
struct timed_action {
  rank_id rank;
  std::size_t index = 0;  // into plan.ranks[rank]
  duration start{};
  duration end{};
};

struct rank_stats {
  duration busy{};           // time spent computing
  duration idle{};           // makespan - busy
  bytes peak_memory{};       // weights + the largest running sum of memory deltas
  duration strategy_time{};  // compute time added by recompute and offload (included in busy)
  // (time, bytes in use) after each change, starting with (0, weights); record_timeline only.
  std::vector<std::pair<duration, bytes>> memory_timeline;
};

struct simulation_result {
  duration makespan{};      // the latest rank's final clock
  double bubble_ratio = 0;  // 1 - sum(busy) / (ranks * makespan); 0 for an empty makespan
  std::vector<rank_stats> ranks;
  lower_bounds bounds;  // the classic ones (rank_window and memory: see dip/sim/lower_bounds.hpp)
  // record_timeline only: one entry per action, ordered by rank and then by action index.
  std::vector<timed_action> timeline;
  std::size_t simulated_actions = 0;
};

namespace detail {

[[noreturn]] inline void throw_at_action(std::size_t rank, std::size_t index, std::string what) {
  throw error(errc::invalid_plan, "rank " + std::to_string(rank) + " action " + std::to_string(index), std::move(what));
}

// Where a send of `edge` sits in the plan, if anywhere (slow; used only to word errors).
inline std::pair<std::size_t, std::size_t> find_send(const plan& p, std::uint32_t edge) {
  for (std::size_t r = 0; r < p.ranks.size(); ++r) {
    for (std::size_t i = 0; i < p.ranks[r].size(); ++i) {
      const action& a = p.ranks[r][i];
      if (a.kind == action_kind::send && a.edge == edge) return {r, i};
    }
  }
  return {p.ranks.size(), 0};
}

}  // namespace detail

// Simulates `p` (see the top of this file for the semantics). Throws dip::error with
// - errc::invalid_plan naming the rank and action index for a plan that breaks a rule the
//   simulation depends on: a stage run before its input is ready, on the wrong rank or twice,
//   a stage never run, a send/recv with a bad edge, stage, rank or peer, an edge sent or
//   received twice, a send nobody receives, a recv with no send anywhere in the plan, a memory
//   strategy other than keep on a stage that is not a forward;
// - errc::deadlock when every unfinished rank waits on a recv whose send can never be reached,
//   naming each blocked rank, the action index and what it waits for;
// - errc::invalid_argument for a plan without a graph or bad options.
// It never hangs: each action is visited once.
inline simulation_result simulate(const plan& p, const simulation_options& options = {}) {
  require(p.graph != nullptr, errc::invalid_argument, "simulate", "the plan has no stage graph");
  const stage_graph& graph = *p.graph;
  const std::size_t rank_count = static_cast<std::size_t>(graph.ranks());
  require(p.ranks.size() == rank_count, errc::invalid_plan, "plan",
          "has action lists for " + std::to_string(p.ranks.size()) + " ranks, the stage graph has " +
              std::to_string(rank_count));
  require(
      options.weight_memory.empty() || options.weight_memory.size() == rank_count, errc::invalid_argument,
      "simulation_options.weight_memory",
      "has " + std::to_string(options.weight_memory.size()) + " entries for " + std::to_string(rank_count) + " ranks");
  const double latency = to_seconds(options.comm.latency);
  const double link = options.comm.link.base();
  require(std::isfinite(latency) && latency >= 0, errc::invalid_argument, "communication_model.latency",
          "must be finite and >= 0");
  require(std::isfinite(link) && link >= 0, errc::invalid_argument, "communication_model.link",
          "must be finite and >= 0 (0 = free transfers)");

  const auto stages = graph.stages();
  const auto edges = graph.edges();
  const std::size_t stage_count = stages.size();
  const std::size_t edge_count = edges.size();
  const bool record = options.record_timeline;
  constexpr std::uint32_t nobody = std::numeric_limits<std::uint32_t>::max();

  simulation_result result;
  result.ranks.resize(rank_count);

  // Lower bounds that need no simulation; summed in stage order exactly as work_per_rank() does.
  {
    std::vector<duration> work(rank_count);
    for (const stage& s : stages) work[s.rank.index()] += s.time;
    duration total{};
    for (duration w : work) {
      result.bounds.busiest_rank = std::max(result.bounds.busiest_rank, w);
      total += w;
    }
    result.bounds.average_work = rank_count == 0 ? duration{} : total / double(rank_count);
  }

  // Memory strategies: the time and memory delta of every stage, when any strategy is not keep.
  for (std::size_t r = 0; r < rank_count; ++r) {
    for (std::size_t i = 0; i < p.ranks[r].size(); ++i) {
      const action& a = p.ranks[r][i];
      if (a.kind == action_kind::compute && a.strategy != memory_strategy::keep && a.stage.index() < stage_count &&
          stages[a.stage.index()].kind != stage_kind::forward) {
        detail::throw_at_action(r, i,
                                describe(graph, a.stage) + " has memory strategy " +
                                    std::string(to_string(a.strategy)) + "; only forward stages take one");
      }
    }
  }
  const std::vector<memory_strategy> pair_strategy = detail::pair_strategies(p);
  std::vector<double> strategy_time_of, strategy_delta_of;  // empty: every stage as in the graph
  if (!pair_strategy.empty()) {
    strategy_time_of.resize(stage_count);
    strategy_delta_of.resize(stage_count);
    for (std::size_t s = 0; s < stage_count; ++s) {
      const stage_id id = stage_id::from_index(s);
      strategy_time_of[s] = strategy_time(graph, id, pair_strategy[s], options.memory_strategies).base();
      strategy_delta_of[s] = strategy_memory_delta(graph, id, pair_strategy[s]).base();
    }
  }

  // Flat per-stage and per-edge state, so the loop below only indexes vectors.
  std::vector<std::uint32_t> stage_rank(stage_count);
  for (std::size_t s = 0; s < stage_count; ++s) stage_rank[s] = stages[s].rank.value();
  // Longest dependent chain ending with each computed stage: every input is computed before its
  // consumer, so this is the critical path's dynamic programme, in an order the plan proves valid.
  std::vector<double> chain_end(stage_count, 0.0);
  std::vector<std::uint8_t> computed(stage_count, 0);
  enum : std::uint8_t { sent = 1, received = 2 };
  std::vector<std::uint8_t> edge_flags(edge_count, 0);
  std::vector<double> arrival(edge_count, 0.0);
  std::vector<double> transfer(edge_count, 0.0);
  if (link > 0) {
    for (std::size_t e = 0; e < edge_count; ++e) transfer[e] = edges[e].size.base() / link;
  }
  std::vector<std::uint32_t> waiter(edge_count, nobody);  // the rank blocked on this edge's recv
  std::vector<double> link_free(rank_count * rank_count, 0.0);

  struct rank_state {
    std::size_t next = 0;  // index of the next action to run
    double clock = 0;
    double busy = 0;
    double extra = 0;  // of it, time added by memory strategies
    double memory = 0;
    double peak = 0;
    std::size_t offset = 0;  // of this rank's first action in the timeline
  };
  std::vector<rank_state> state(rank_count);
  std::size_t total_actions = 0;
  for (std::size_t r = 0; r < rank_count; ++r) {
    const double weights = options.weight_memory.empty() ? 0.0 : options.weight_memory[r].base();
    state[r].memory = state[r].peak = weights;
    state[r].offset = total_actions;
    total_actions += p.ranks[r].size();
    if (record) result.ranks[r].memory_timeline.emplace_back(duration{}, bytes(weights));
  }
  if (record) result.timeline.resize(total_actions);

  std::vector<std::uint32_t> ready;  // ranks that can advance
  ready.reserve(rank_count);
  for (std::size_t r = rank_count; r-- > 0;) ready.push_back(std::uint32_t(r));
  std::size_t computed_count = 0, sends = 0, receives = 0;

  const auto check_edge = [&](std::size_t r, std::size_t i, const action& a) {
    if (a.edge >= edge_count) {
      detail::throw_at_action(r, i, "names edge " + std::to_string(a.edge) + ", which does not exist");
    }
    const stage_edge& e = edges[a.edge];
    if (a.stage != e.from) {
      detail::throw_at_action(r, i,
                              "names stage " + std::to_string(a.stage.value()) + " but edge " + std::to_string(a.edge) +
                                  " leaves " + describe(graph, e.from));
    }
    const std::uint32_t from = stage_rank[e.from.index()], to = stage_rank[e.to.index()];
    if (from == to) {
      detail::throw_at_action(
          r, i,
          describe(graph, a) + ": both stages are on rank " + std::to_string(from) + ", so the edge needs no message");
    }
    const bool is_send = a.kind == action_kind::send;
    const std::uint32_t here = is_send ? from : to, there = is_send ? to : from;
    if (r != here || a.peer.value() != there) {
      detail::throw_at_action(
          r, i,
          describe(graph, a) + ": the edge goes from rank " + std::to_string(from) + " to rank " + std::to_string(to));
    }
  };

  while (!ready.empty()) {
    const std::size_t r = ready.back();
    ready.pop_back();
    const std::vector<action>& list = p.ranks[r];
    rank_state& rs = state[r];
    rank_stats& stats = result.ranks[r];
    for (; rs.next < list.size(); ++rs.next) {
      const std::size_t i = rs.next;
      const action& a = list[i];
      const double begin = rs.clock;
      double end = begin;
      if (a.kind == action_kind::compute) {
        const std::size_t id = a.stage.index();
        if (id >= stage_count) {
          detail::throw_at_action(r, i, "computes stage " + std::to_string(a.stage.value()) + ", which does not exist");
        }
        if (stage_rank[id] != r) {
          detail::throw_at_action(r, i,
                                  describe(graph, a.stage) + " belongs to rank " + std::to_string(stage_rank[id]));
        }
        if (computed[id]) detail::throw_at_action(r, i, describe(graph, a.stage) + " is computed twice");
        double inputs_end = 0;
        for (const std::uint32_t e : graph.in_edges(a.stage)) {
          const std::size_t from = edges[e].from.index();
          const bool ready_input = stage_rank[from] == r ? computed[from] != 0 : (edge_flags[e] & received) != 0;
          if (!ready_input) {
            detail::throw_at_action(r, i,
                                    "stage " + describe(graph, a.stage) + " runs before its input " +
                                        describe(graph, edges[e].from) +
                                        (stage_rank[from] == r ? " is computed on this rank"
                                                               : " from rank " + std::to_string(stage_rank[from]) +
                                                                     " is received by an earlier recv on this rank"));
          }
          inputs_end = std::max(inputs_end, chain_end[from]);
        }
        const stage& s = stages[id];
        chain_end[id] = inputs_end + s.time.base();
        computed[id] = 1;
        ++computed_count;
        const double time = strategy_time_of.empty() ? s.time.base() : strategy_time_of[id];
        end = begin + time;
        rs.clock = end;
        rs.busy += time;
        if (!strategy_time_of.empty()) rs.extra += time - s.time.base();
        const double delta = strategy_delta_of.empty() ? s.memory_delta.base() : strategy_delta_of[id];
        rs.memory += delta;
        rs.peak = std::max(rs.peak, rs.memory);
        if (record && delta != 0) stats.memory_timeline.emplace_back(duration(end), bytes(rs.memory));
      } else if (a.kind == action_kind::send) {
        check_edge(r, i, a);
        const std::uint32_t e = a.edge;
        if (!computed[a.stage.index()]) {
          detail::throw_at_action(r, i, describe(graph, a) + " before " + describe(graph, a.stage) + " is computed");
        }
        if (edge_flags[e] & sent) detail::throw_at_action(r, i, describe(graph, a) + ": the edge is sent twice");
        double& free_at = link_free[r * rank_count + a.peer.index()];
        const double start = std::max(begin, free_at);
        free_at = start + transfer[e];
        arrival[e] = start + latency + transfer[e];
        edge_flags[e] |= sent;
        ++sends;
        if (waiter[e] != nobody) {
          ready.push_back(waiter[e]);
          waiter[e] = nobody;
        }
        if (record) result.timeline[rs.offset + i] = {rank_id::from_index(r), i, duration(start), duration(arrival[e])};
        continue;
      } else {
        check_edge(r, i, a);
        const std::uint32_t e = a.edge;
        if (edge_flags[e] & received)
          detail::throw_at_action(r, i, describe(graph, a) + ": the edge is received twice");
        if (!(edge_flags[e] & sent)) {
          waiter[e] = std::uint32_t(r);  // woken by the send
          break;
        }
        edge_flags[e] |= received;
        ++receives;
        end = std::max(begin, arrival[e]);
        rs.clock = end;
      }
      if (record) result.timeline[rs.offset + i] = {rank_id::from_index(r), i, duration(begin), duration(end)};
    }
  }

  // Every rank that stopped early waits on a recv whose send was never simulated.
  std::string blocked;
  for (std::size_t r = 0; r < rank_count; ++r) {
    if (state[r].next == p.ranks[r].size()) continue;
    const std::size_t i = state[r].next;
    const action& a = p.ranks[r][i];
    if (detail::find_send(p, a.edge).first == p.ranks.size()) {
      detail::throw_at_action(r, i, describe(graph, a) + " has no matching send anywhere in the plan");
    }
    blocked += (blocked.empty() ? "deadlock: rank " : "; rank ") + std::to_string(r) + " waits at action " +
               std::to_string(i) + " (" + describe(graph, a) + ")";
  }
  if (!blocked.empty()) throw error(errc::deadlock, "plan", blocked);
  if (sends != receives) {
    for (std::size_t e = 0; e < edge_count; ++e) {
      if (edge_flags[e] == sent) {
        const auto [r, i] = detail::find_send(p, std::uint32_t(e));
        detail::throw_at_action(r, i, describe(graph, p.ranks[r][i]) + " is never received");
      }
    }
  }
  if (computed_count != stage_count) {
    for (std::size_t s = 0; s < stage_count; ++s) {
      if (!computed[s]) {
        throw error(errc::invalid_plan, "plan",
                    "stage " + describe(graph, stage_id::from_index(s)) + " is never computed (it belongs to rank " +
                        std::to_string(stage_rank[s]) + ")");
      }
    }
  }

  double makespan = 0, busy = 0, critical = 0;
  for (const rank_state& rs : state) makespan = std::max(makespan, rs.clock);
  for (std::size_t r = 0; r < rank_count; ++r) {
    rank_stats& stats = result.ranks[r];
    stats.busy = duration(state[r].busy);
    stats.idle = duration(makespan - state[r].busy);
    stats.peak_memory = bytes(state[r].peak);
    stats.strategy_time = duration(state[r].extra);
    busy += state[r].busy;
  }
  for (double c : chain_end) critical = std::max(critical, c);
  result.makespan = duration(makespan);
  result.bubble_ratio = makespan > 0 ? 1.0 - busy / (double(rank_count) * makespan) : 0.0;
  result.bounds.critical_path = duration(critical);
  result.simulated_actions = total_actions;
  return result;
}

}  // namespace dip
