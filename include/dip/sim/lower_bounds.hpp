// What no schedule of a stage graph can beat: dip's lower bounds on the makespan.
//
// Every bound ignores communication (a send costs nothing, links never contend), so each holds
// for any plan of the graph, whatever its order, and "makespan / bound" says how much any
// schedule could still recover. From loosest to tightest:
// - classic(): max(busiest rank's work, critical path, work / ranks). The simulator fills these
//   three on every call (dip::simulate); they are O(stages).
// - memory_free(): adds the *rank window*: a rank cannot start before the earliest of its stages
//   can (the longest path of stages before it, its *head*), and after its last stage the stages
//   that depend on it still have to run (its *tail*). Per rank, the optimum of the preemptive
//   one-machine problem with heads and tails (Jackson's preemptive schedule: always run the
//   released stage with the longest tail) is such a bound; it is the largest, over every subset
//   S of the rank's stages, of min head(S) + work(S) + min tail(S). On a uniform pipeline it is
//   1F1B's (m + p - 1)(F + B) exactly, where the classic bound says m (F + B).
// - under_cap(): adds a bound that holds when rank r may hold at most `activation_budget[r]`
//   bytes of activations (the memory cap less its weights). A pair (a forward F and the backward
//   stage R that frees its a bytes) keeps them at least from F's end to R's end, which is no
//   shorter than the longest path from F to R (F excluded), D. The rank holds nothing before its
//   earliest head h nor after T less its shortest tail t, so over that window the memory held
//   integrates to at most budget * (T - h - t), and T >= h + sum of a * D / budget + t. A pair
//   may instead recompute or offload (dip/schedule/strategy_cost.hpp prices both): it then
//   holds less for less long but adds compute time on its rank, and T >= h + work + extra + t.
//   Choosing fractions of each pair's strategies to minimise T is a linear programme with two
//   constraints; its optimum (greedy over each pair's lower convex hull of (extra time,
//   memory-time), most memory-time saved per added second first) is the bound.
// All bounds are exact sums of stage times in seconds; nothing is estimated.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <queue>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <boost/graph/topological_sort.hpp>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/strategy_cost.hpp"

namespace dip {

struct lower_bounds {
  duration busiest_rank{};   // the largest per-rank sum of stage times (stage_graph::work_per_rank)
  duration critical_path{};  // the longest dependent chain (equals stage_graph::critical_path)
  duration average_work{};   // all stage time divided evenly over the ranks
  duration rank_window{};    // per rank: earliest start + work + shortest tail, at best (0: not computed)
  duration memory{};         // under the activation budgets (0: not computed; infinite: nothing fits)

  // Today's bound, as dip has always reported it ("vs bound").
  duration classic() const { return std::max({busiest_rank, critical_path, average_work}); }
  // The tightest bound with memory free.
  duration memory_free() const { return std::max(classic(), rank_window); }
  // The tightest bound under the memory cap (memory_free() when `memory` was not computed).
  duration under_cap() const { return std::max(memory_free(), memory); }
};

// Longest paths through the stage graph, stage times only: head[s] is the longest chain of
// stages that must finish before s starts, tail[s] the longest chain that must run after s ends
// (both exclude s itself). Seconds, indexed by stage.
struct stage_graph_paths {
  std::vector<double> head, tail;
  std::vector<stage_vertex> order;  // a topological order of the stages
  double critical_path = 0;         // max over stages of head + time + tail
};

inline stage_graph_paths longest_paths(const stage_graph& graph) {
  stage_graph_paths out;
  const std::size_t n = graph.size();
  const auto stages = graph.stages();
  const auto edges = graph.edges();
  out.order.reserve(n);
  boost::topological_sort(graph, std::back_inserter(out.order));  // sinks first
  std::reverse(out.order.begin(), out.order.end());
  out.head.assign(n, 0.0);
  out.tail.assign(n, 0.0);
  for (stage_vertex v : out.order) {
    for (std::uint32_t e : graph.in_edges(stage_id::from_index(v))) {
      const std::size_t u = edges[e].from.index();
      out.head[v] = std::max(out.head[v], out.head[u] + to_seconds(stages[u].time));
    }
  }
  for (auto it = out.order.rbegin(); it != out.order.rend(); ++it) {
    const stage_vertex v = *it;
    for (std::uint32_t e : graph.out_edges(stage_id::from_index(v))) {
      const std::size_t w = edges[e].to.index();
      out.tail[v] = std::max(out.tail[v], to_seconds(stages[w].time) + out.tail[w]);
    }
    out.critical_path = std::max(out.critical_path, out.head[v] + to_seconds(stages[v].time) + out.tail[v]);
  }
  return out;
}

namespace detail {

// One job of a one-machine problem with heads and tails.
struct windowed_job {
  double head = 0, time = 0, tail = 0;
};

// The optimum of the preemptive problem 1 | head, pmtn | max(end + tail): Jackson's preemptive
// schedule, O(n log n). `jobs` is reordered.
inline double jackson_preemptive_bound(std::vector<windowed_job>& jobs) {
  std::sort(jobs.begin(), jobs.end(), [](const windowed_job& a, const windowed_job& b) { return a.head < b.head; });
  using running = std::pair<double, double>;  // (tail, remaining time): the longest tail on top
  std::priority_queue<running> released;
  double clock = 0, bound = 0;
  std::size_t next = 0;
  while (next < jobs.size() || !released.empty()) {
    if (released.empty()) clock = std::max(clock, jobs[next].head);
    while (next < jobs.size() && jobs[next].head <= clock) {
      released.emplace(jobs[next].tail, jobs[next].time);
      ++next;
    }
    auto [tail, remaining] = released.top();
    released.pop();
    const double preempted_at = next < jobs.size() ? jobs[next].head : std::numeric_limits<double>::infinity();
    if (clock + remaining <= preempted_at) {
      clock += remaining;
      bound = std::max(bound, clock + tail);
    } else {
      remaining -= preempted_at - clock;
      clock = preempted_at;
      released.emplace(tail, remaining);
    }
  }
  return bound;
}

// Longest path from `from` to `to` (both included, seconds), or 0 when `to` is not reachable.
// Visits the stages of `from`'s microbatch in topological order: every edge of a stage graph
// joins stages of one microbatch (an edge across would only be missed, which shortens the path
// and keeps the bound valid).
inline double longest_path_between(const stage_graph& graph, std::span<const stage_vertex> microbatch_order,
                                   std::vector<double>& reach, stage_id from, stage_id to) {
  const auto stages = graph.stages();
  const auto edges = graph.edges();
  constexpr double unreached = -1;
  for (stage_vertex v : microbatch_order) reach[v] = unreached;
  reach[from.index()] = to_seconds(stages[from.index()].time);
  bool started = false;
  for (stage_vertex v : microbatch_order) {
    if (v == from.index()) started = true;
    if (!started || reach[v] == unreached) continue;
    if (v == to.index()) return reach[v];
    for (std::uint32_t e : graph.out_edges(stage_id::from_index(v))) {
      const std::size_t w = edges[e].to.index();
      if (stages[w].microbatch != stages[v].microbatch) continue;
      reach[w] = std::max(reach[w], reach[v] + to_seconds(stages[w].time));
    }
  }
  return 0;
}

// One way of running a pair: the compute time it adds to its rank and a lower bound on its
// memory-time (byte-seconds held).
struct pair_option {
  double extra = 0, memory_time = 0;
};

// The smallest window T with work + extra(x) <= T and memory_time(x) <= budget * T over
// fractional choices x of every pair's options (see the top of this file); budget >= 0. Each
// pair's options are reduced to their lower convex hull and its segments taken greedily, best
// savings per second first.
inline double memory_capped_rank_bound(const std::vector<std::vector<pair_option>>& pairs, double work, double budget) {
  double work_floor = work;
  struct upgrade {
    double extra, saving;
  };
  std::vector<upgrade> upgrades;
  double memory_time = 0;
  for (std::vector<pair_option> options : pairs) {
    std::sort(options.begin(), options.end(), [](const pair_option& a, const pair_option& b) {
      return a.extra != b.extra ? a.extra < b.extra : a.memory_time < b.memory_time;
    });
    // Lower convex hull from the cheapest option, keeping only options that save memory-time.
    std::vector<pair_option> hull{options.front()};
    for (std::size_t i = 1; i < options.size(); ++i) {
      const pair_option& o = options[i];
      if (o.memory_time >= hull.back().memory_time) continue;  // costs more, saves nothing
      while (hull.size() >= 2) {
        const pair_option& a = hull[hull.size() - 2];
        const pair_option& b = hull.back();
        // b lies on or above the segment a-o: a's savings per second to o are at least b's.
        const double cross = (b.extra - a.extra) * (o.memory_time - a.memory_time) -
                             (b.memory_time - a.memory_time) * (o.extra - a.extra);
        if (cross > 0) break;
        hull.pop_back();
      }
      hull.push_back(o);
    }
    memory_time += hull.front().memory_time;
    work_floor += hull.front().extra;
    for (std::size_t i = 1; i < hull.size(); ++i) {
      upgrades.push_back({hull[i].extra - hull[i - 1].extra, hull[i - 1].memory_time - hull[i].memory_time});
    }
  }
  if (memory_time <= budget * work_floor) return work_floor;
  const double initial = memory_time;
  std::sort(upgrades.begin(), upgrades.end(),
            [](const upgrade& a, const upgrade& b) { return a.saving * b.extra > b.saving * a.extra; });
  double spent = 0;  // extra time bought so far
  for (const upgrade& u : upgrades) {
    // Along this segment memory_time(s) = memory_time - slope (s - spent); it meets
    // budget * (work_floor + s) at s below, if before the segment ends.
    const double slope = u.saving / u.extra;
    const double meet = (memory_time + slope * spent - budget * work_floor) / (budget + slope);
    if (meet <= spent + u.extra) return work_floor + std::max(meet, spent);
    spent += u.extra;
    memory_time -= u.saving;
  }
  // Every saving taken: what is left is rounding when the cheapest options hold nothing.
  if (memory_time <= 1e-12 * initial) memory_time = 0;
  if (budget <= 0) return memory_time > 0 ? std::numeric_limits<double>::infinity() : work_floor + spent;
  return std::max(work_floor + spent, memory_time / budget);
}

// The classic bounds and the rank window, from the graph's longest paths.
inline lower_bounds memory_free_bounds(const stage_graph& graph, const stage_graph_paths& paths) {
  lower_bounds out;
  const std::size_t ranks = static_cast<std::size_t>(graph.ranks());
  std::vector<std::vector<windowed_job>> jobs(ranks);
  for (std::size_t s = 0; s < graph.size(); ++s) {
    const stage& st = graph.stages()[s];
    jobs[st.rank.index()].push_back({paths.head[s], to_seconds(st.time), paths.tail[s]});
  }
  const std::vector<duration> work = graph.work_per_rank();
  double total = 0, busiest = 0, window = 0;
  for (std::size_t r = 0; r < ranks; ++r) {
    total += to_seconds(work[r]);
    busiest = std::max(busiest, to_seconds(work[r]));
    window = std::max(window, jackson_preemptive_bound(jobs[r]));
  }
  out.busiest_rank = seconds(busiest);
  out.average_work = ranks == 0 ? duration{} : seconds(total / double(ranks));
  out.critical_path = seconds(paths.critical_path);
  out.rank_window = seconds(window);
  return out;
}

}  // namespace detail

// The classic bounds and the rank window of `graph` (lower_bounds::memory stays 0).
// O(stages log stages + edges).
inline lower_bounds memory_free_lower_bounds(const stage_graph& graph) {
  return detail::memory_free_bounds(graph, longest_paths(graph));
}

// Every bound, memory included: rank r may hold at most activation_budget[r] bytes of
// activations at once (its memory cap less its weights), and pairs may use the strategies
// `strategies` allows, priced as dip::simulate prices them. `memory` is infinite when some rank
// cannot run within its budget however its pairs recompute or offload. Throws
// dip::error(errc::invalid_argument) when the budgets are not one per rank. O(forwards x the
// stages and edges of one microbatch) beyond memory_free_lower_bounds.
inline lower_bounds capped_lower_bounds(const stage_graph& graph, std::span<const bytes> activation_budget,
                                        const memory_strategy_model& strategies = {}) {
  const std::size_t ranks = static_cast<std::size_t>(graph.ranks());
  require(activation_budget.size() == ranks, errc::invalid_argument, "capped_lower_bounds",
          "needs one activation budget per rank: " + std::to_string(activation_budget.size()) + " for " +
              std::to_string(ranks) + " ranks");
  const stage_graph_paths paths = longest_paths(graph);
  lower_bounds out = detail::memory_free_bounds(graph, paths);
  const auto stages = graph.stages();

  // Each microbatch's stages in topological order, for the paths from a forward to its backward.
  std::vector<std::vector<stage_vertex>> by_microbatch(graph.microbatch_count());
  for (stage_vertex v : paths.order) {
    const std::size_t j = stages[v].microbatch.index();
    if (j >= by_microbatch.size()) by_microbatch.resize(j + 1);
    by_microbatch[j].push_back(v);
  }
  std::vector<double> reach(graph.size(), 0.0);

  // Per rank, the window its activations can be held in: none before the earliest head of its
  // stages, none after the latest end that leaves its shortest tail.
  const std::vector<duration> work = graph.work_per_rank();
  std::vector<double> first_head(ranks, std::numeric_limits<double>::infinity()),
      last_tail(ranks, std::numeric_limits<double>::infinity());
  for (std::size_t s = 0; s < graph.size(); ++s) {
    const std::size_t r = stages[s].rank.index();
    first_head[r] = std::min(first_head[r], paths.head[s]);
    last_tail[r] = std::min(last_tail[r], paths.tail[s]);
  }
  std::vector<std::vector<std::vector<detail::pair_option>>> pairs(ranks);
  const bool split = graph.split_backward();
  for (std::size_t s = 0; s < graph.size(); ++s) {
    const stage& f = stages[s];
    const double a = f.memory_delta.base();
    if (f.kind != stage_kind::forward || a <= 0) continue;
    const stage_id forward = stage_id::from_index(s);
    const activation_pair pair = pair_of(graph, forward);
    const std::span<const stage_vertex> order = by_microbatch[f.microbatch.index()];
    const auto held_until = [&](stage_id end) {  // F's end to `end`'s end, at least
      return std::max(0.0, detail::longest_path_between(graph, order, reach, forward, end) - to_seconds(f.time));
    };
    const double keep_hold = held_until(pair.release);
    const double use_hold = split ? held_until(pair.use) : keep_hold;
    // After I the activations are whole again until W ends, whatever the strategy.
    const double after_use = split ? a * to_seconds(graph.at(pair.release).time) : 0.0;
    std::vector<detail::pair_option> options{{0.0, a * keep_hold}};
    const auto add = [&](memory_strategy strategy) {
      const strategy_cost c = strategy_cost_of(graph, forward, strategy, strategies);
      options.push_back({to_seconds(c.extra()), c.kept.base() * use_hold + after_use});
    };
    if (strategies.allow_recompute) add(memory_strategy::recompute);
    if (strategies.allow_offload) add(memory_strategy::offload);
    pairs[f.rank.index()].push_back(std::move(options));
  }
  double bound = 0;
  for (std::size_t r = 0; r < ranks; ++r) {
    if (pairs[r].empty()) continue;
    const double budget = activation_budget[r].base();
    const double window = budget < 0 ? std::numeric_limits<double>::infinity()
                                     : detail::memory_capped_rank_bound(pairs[r], to_seconds(work[r]), budget);
    bound = std::max(bound, first_head[r] + window + last_tail[r]);
  }
  out.memory = seconds(bound);
  return out;
}

}  // namespace dip
