// DIP's phase 2: greedy dual-queue stage interleaving.
//
// Given a priority for every *pass* (one sub-microbatch's pass through one chain: its forward
// and backward stages on every chunk of the chain), build each rank's compute order by list
// scheduling on an estimated clock:
// - every rank keeps the stages whose inputs are done in a forward queue (F) and a backward
//   queue (B, or I and W when the backward is split), ordered by pass priority;
// - repeatedly the rank that can start something soonest decides: if both a forward and a
//   backward are ready at that time it alternates with its previous kind (1F1B's steady state);
//   if one is ready it runs it; otherwise it idles until the earliest-startable stage (W, the
//   deferrable weight gradient, only when no F, B or I is ready: it fills bubbles);
// - a forward is only ready if the rank's memory (static weights plus kept activations) stays
//   within its cap: a full rank closes its forward queue until backwards free memory.
// With the cap at 1F1B's in-flight limit this reproduces 1F1B exactly on a uniform pipeline
// (a test); with the GPU's memory as the cap it interleaves DIP's many short passes from
// several chains on one rank. Deterministic: ties go to the lower pass priority value, then
// the lower stage id.
//
// When every remaining forward is blocked by memory and no backward can run (the cap is too
// small for the pipeline to drain), the earliest such forward runs anyway and the result says
// so (`over_cap`); validate the plan with the cap to reject it.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/model/hardware.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

// Passes of a stage graph, numbered microbatch by microbatch, chain by chain (in placement
// order, so producers before consumers), sub-microbatch by sub-microbatch.
class pass_index {
 public:
  struct pass {
    std::size_t microbatch = 0;
    std::size_t chain = 0;
    std::uint32_t sub = 0;
  };

  explicit pass_index(const stage_graph& graph) {
    const std::size_t chains = graph.placement().chains.size();
    first_.assign(graph.microbatch_count(), std::vector<std::uint32_t>(chains, 0));
    for (std::size_t j = 0; j < graph.microbatch_count(); ++j) {
      for (std::size_t k = 0; k < chains; ++k) {
        first_[j][k] = std::uint32_t(passes_.size());
        for (std::uint32_t s = 0; s < graph.sub_count(j, k); ++s) passes_.push_back({j, k, s});
      }
    }
    of_.reserve(graph.size());
    for (const stage& st : graph.stages()) {
      const std::size_t chain = graph.placement().chunk(st.chunk).chain;
      of_.push_back(first_[st.microbatch.index()][chain] + st.sub);
    }
  }

  std::size_t size() const noexcept { return passes_.size(); }
  const pass& at(std::size_t i) const { return passes_.at(i); }
  std::uint32_t of(stage_id id) const { return of_.at(id.index()); }

 private:
  std::vector<pass> passes_;
  std::vector<std::vector<std::uint32_t>> first_;
  std::vector<std::uint32_t> of_;
};

// The natural priority: pass i gets priority value i (microbatch order, producers first).
inline std::vector<std::uint32_t> default_pass_priority(const pass_index& passes) {
  std::vector<std::uint32_t> priority(passes.size());
  for (std::size_t i = 0; i < priority.size(); ++i) priority[i] = std::uint32_t(i);
  return priority;
}

struct interleave_options {
  std::vector<bytes> memory_cap;     // per rank, weights included; empty: no cap
  std::vector<bytes> weight_memory;  // per rank static memory; empty: zeros
  communication_model comm;          // to estimate when a stage's inputs arrive
};

struct interleave_result {
  std::vector<std::vector<stage_id>> order;  // each rank's compute order
  duration estimated_makespan{};             // on the estimated clock (the simulator has the real one)
  std::vector<bytes> peak_memory;            // per rank, on the estimated clock
  bool over_cap = false;                     // a forward had to exceed its rank's cap
};

// Orders every stage of `graph`; `priority[pass]` (lower first) for each pass of
// `passes`. Throws dip::error for priorities or caps of the wrong size.
inline interleave_result interleave_stages(const stage_graph& graph, const pass_index& passes,
                                           std::span<const std::uint32_t> priority,
                                           const interleave_options& options = {}) {
  const std::size_t ranks = std::size_t(graph.ranks()), n = graph.size();
  require(
      priority.size() == passes.size(), errc::invalid_argument, "interleave_stages",
      "needs one priority per pass (" + std::to_string(passes.size()) + "), got " + std::to_string(priority.size()));
  require(options.memory_cap.empty() || options.memory_cap.size() == ranks, errc::invalid_argument, "interleave_stages",
          "memory_cap needs one entry per rank");
  require(options.weight_memory.empty() || options.weight_memory.size() == ranks, errc::invalid_argument,
          "interleave_stages", "weight_memory needs one entry per rank");
  const double latency = to_seconds(options.comm.latency);
  const double link = options.comm.link.base();
  const auto arrival = [&](const stage_edge& e, double finish) {
    if (graph.rank_of(e.from) == graph.rank_of(e.to)) return finish;
    return finish + latency + (link > 0 ? e.size.base() / link : 0.0);
  };

  // Higher priority: lower pass priority value, then lower stage id; as one integer per stage.
  std::vector<std::uint64_t> key(n);
  for (std::size_t v = 0; v < n; ++v) {
    key[v] = (std::uint64_t(priority[passes.of(stage_id::from_index(v))]) << 32) | std::uint64_t(v);
  }
  const auto before = [&](std::uint32_t a, std::uint32_t b) { return key[a] < key[b]; };

  std::vector<std::uint32_t> waiting(n);  // unfinished predecessors
  std::vector<double> ready(n, 0.0);      // when all inputs have arrived (final once waiting == 0)
  for (std::size_t v = 0; v < n; ++v) waiting[v] = std::uint32_t(graph.in_edges(stage_id::from_index(v)).size());
  // Available stages per rank and queue (0 forward, 1 backward: B or I, 2 weight gradient: W),
  // each sorted by priority, so the best ready one is the first that is ready.
  std::vector<std::array<std::vector<std::uint32_t>, 3>> available(ranks);
  // Each stage's queue, in a table of its own: read for every stage made available and run, and
  // the stages themselves (48 bytes each) do not fit a core's cache at scale.
  std::vector<std::uint8_t> queue_table(n);
  for (std::size_t v = 0; v < n; ++v) {
    switch (graph.stages()[v].kind) {
      case stage_kind::forward: queue_table[v] = 0; break;
      case stage_kind::backward:
      case stage_kind::backward_input: queue_table[v] = 1; break;
      case stage_kind::backward_weight: queue_table[v] = 2; break;
    }
  }
  const auto queue_of = [&](std::size_t v) { return int(queue_table[v]); };

  interleave_result result;
  result.order.assign(ranks, {});
  std::vector<double> free_at(ranks, 0.0), memory(ranks, 0.0), cap(ranks, std::numeric_limits<double>::infinity());
  for (std::size_t r = 0; r < ranks; ++r) {
    if (!options.weight_memory.empty()) memory[r] = options.weight_memory[r].base();
    if (!options.memory_cap.empty()) cap[r] = options.memory_cap[r].base();
  }
  std::vector<double> peak = memory;
  std::vector<int> last_queue(ranks, 1);  // as if each rank had just run a backward: forward first

  const auto within_cap = [&](std::size_t r, double delta) { return memory[r] + delta <= cap[r] * (1 + 1e-12); };
  const auto fits = [&](std::size_t r, std::uint32_t v) {
    return within_cap(r, graph.stages()[v].memory_delta.base());
  };
  // The least memory delta among each rank's available forwards, and how many have it: when it
  // does not fit, no forward fits, and the forward queue is not scanned.
  constexpr double never = std::numeric_limits<double>::infinity();
  std::vector<double> least_delta(ranks, never);
  std::vector<std::size_t> at_least_delta(ranks, 0);
  const auto any_forward_fits = [&](std::size_t r) { return within_cap(r, least_delta[r]); };
  const auto count_delta = [&](std::size_t r, std::uint32_t forward) {
    const double delta = graph.stages()[forward].memory_delta.base();
    if (delta < least_delta[r]) {
      least_delta[r] = delta;
      at_least_delta[r] = 0;
    }
    if (delta == least_delta[r]) ++at_least_delta[r];
  };
  // The best stage of queue q on rank r that is ready by `time` (and fits, for forwards).
  constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();
  const auto best_ready = [&](std::size_t r, int q, double time) {
    if (q == 0 && !any_forward_fits(r)) return none;
    for (std::uint32_t v : available[r][std::size_t(q)]) {
      if (ready[v] <= time && (q != 0 || fits(r, v))) return v;
    }
    return none;
  };
  // The least ready time in queue q of rank r among the stages the rank may start (forwards:
  // those that fit, unless allow_over_cap); or any time up to free_at[r] if one is ready by then,
  // which is all the rank's earliest start needs.
  const auto least_ready = [&](std::size_t r, int q, bool allow_over_cap) {
    double t = never;
    if (q == 0 && !allow_over_cap && !any_forward_fits(r)) return t;
    for (std::uint32_t v : available[r][std::size_t(q)]) {
      if (q == 0 && !allow_over_cap && !fits(r, v)) continue;
      t = std::min(t, ready[v]);
      if (t <= free_at[r]) break;
    }
    return t;
  };
  // least_ready(r, q, false) for every rank and queue, and each rank's earliest start (infinity:
  // nothing it may start), kept up to date: a new stage can only lower them, so only a rank's
  // own step (its clock and memory change, a stage leaves a queue) recomputes them, for the
  // forward queue and the queue the stage left.
  std::vector<std::array<double, 3>> least(ranks, {never, never, never});
  std::vector<double> earliest(ranks, never);
  const auto refresh_earliest = [&](std::size_t r) {
    earliest[r] = std::max(std::min({least[r][0], least[r][1], least[r][2]}), free_at[r]);
  };
  const auto make_available = [&](std::uint32_t v) {
    const std::size_t r = graph.rank_of(stage_id::from_index(v)).index();
    const int q = queue_of(v);
    auto& queue = available[r][std::size_t(q)];
    queue.insert(std::upper_bound(queue.begin(), queue.end(), v, before), v);
    if (q == 0) count_delta(r, v);
    if (q != 0 || fits(r, v)) least[r][std::size_t(q)] = std::min(least[r][std::size_t(q)], ready[v]);
    refresh_earliest(r);
  };
  const auto remove_available = [&](std::size_t r, std::uint32_t v) {
    const int q = queue_of(v);
    auto& queue = available[r][std::size_t(q)];
    queue.erase(std::lower_bound(queue.begin(), queue.end(), v, before));
    if (q == 0 && graph.stages()[v].memory_delta.base() == least_delta[r] && --at_least_delta[r] == 0) {
      least_delta[r] = never;
      for (std::uint32_t u : queue) count_delta(r, u);
    }
  };
  for (std::size_t v = 0; v < n; ++v) {
    if (waiting[v] == 0) make_available(std::uint32_t(v));
  }

  for (std::size_t done = 0; done < n; ++done) {
    // The rank that can start soonest; if none can (memory), the one that can by exceeding it.
    std::size_t rank = ranks;
    double time = never;
    bool forced = false;
    for (std::size_t r = 0; r < ranks; ++r) {
      // Without a branch: the soonest rank changes from step to step, and mispredicted, this
      // scan was a quarter of the interleaving's time at PP 16.
      const bool sooner = earliest[r] < time;
      time = sooner ? earliest[r] : time;
      rank = sooner ? r : rank;
    }
    if (rank == ranks) {
      for (std::size_t r = 0; r < ranks; ++r) {
        double t = never;
        for (int q = 0; q < 3; ++q) t = std::min(t, least_ready(r, q, true));
        t = std::max(t, free_at[r]);
        if (t < time) {
          time = t;
          rank = r;
        }
      }
      require(rank < ranks, errc::deadlock, "interleave_stages",
              "no stage can run though " + std::to_string(n - done) + " remain (the stage graph has a cycle)");
      forced = true;
    }
    std::uint32_t chosen = none;
    if (forced) {
      for (std::uint32_t v : available[rank][0]) {
        if (ready[v] <= time) {
          chosen = v;
          break;
        }
      }
      result.over_cap = true;
    } else {
      const std::uint32_t f = best_ready(rank, 0, time), b = best_ready(rank, 1, time);
      if (f != none && b != none) {
        chosen = last_queue[rank] == 0 ? b : f;  // alternate, 1F1B-like
      } else if (f != none || b != none) {
        chosen = f != none ? f : b;
      } else {
        chosen = best_ready(rank, 2, time);
      }
    }
    // `time` is the earliest start of some allowed stage on this rank, so one is ready.
    require(chosen != none, errc::deadlock, "interleave_stages", "internal: no stage ready at the decision time");

    const stage& st = graph.stages()[chosen];
    const int q = queue_of(chosen);
    remove_available(rank, chosen);
    const double start = std::max(time, ready[chosen]);
    const double finish = start + to_seconds(st.time);
    free_at[rank] = finish;
    if (q != 2) last_queue[rank] = q;
    memory[rank] += st.memory_delta.base();
    peak[rank] = std::max(peak[rank], memory[rank]);
    least[rank][0] = least_ready(rank, 0, false);
    if (q != 0) least[rank][std::size_t(q)] = least_ready(rank, q, false);
    refresh_earliest(rank);
    result.order[rank].push_back(stage_id::from_index(chosen));
    result.estimated_makespan = std::max(result.estimated_makespan, seconds(finish));
    for (std::uint32_t e : graph.out_edges(stage_id::from_index(chosen))) {
      const stage_edge& edge = graph.edges()[e];
      const std::size_t to = edge.to.index();
      ready[to] = std::max(ready[to], arrival(edge, finish));
      if (--waiting[to] == 0) make_available(std::uint32_t(to));
    }
  }
  for (double p : peak) result.peak_memory.push_back(bytes(p));
  return result;
}

}  // namespace dip
