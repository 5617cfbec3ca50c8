// dip::choose_memory_strategies: DIP phase 3's chooser. It picks one memory strategy (keep,
// recompute, offload; priced by dip/schedule/strategy_cost.hpp) per forward/backward pair so that
// the extra time is smallest while every rank's memory stays under a cap.
//
// It takes each rank's compute order, builds a memory_problem per rank and solves it with
// solve_memory_problem (memory_solver.hpp): exact on small instances, within a proven gap on
// large ones. See docs/memory-strategies.md.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/parallel_for.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/memory_solver.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/strategy_cost.hpp"

namespace dip {

// --- candidates (strategy_candidate and select_candidates: memory_solver.hpp) -----------------

// The candidates offered for `pair` (pair_of's) under `model`.
inline candidate_list candidates_for(const stage_graph& graph, const activation_pair& pair,
                                     const memory_strategy_model& model = {}) {
  candidate_list all;
  const auto add = [&](memory_strategy s) {
    const strategy_cost c = strategy_cost_of(graph, pair, s, model);
    all.push_back({s, c.extra(), c.kept});
  };
  add(memory_strategy::keep);
  if (model.allow_recompute) add(memory_strategy::recompute);
  if (model.allow_offload) add(memory_strategy::offload);
  detail::keep_selected_candidates(all, model.max_candidates);
  return all;
}

// The candidates offered for the pair of `forward` under `model`. Throws
// dip::error(errc::invalid_argument) for a stage that is not a forward.
inline candidate_list candidates_for(const stage_graph& graph, stage_id forward,
                                     const memory_strategy_model& model = {}) {
  return candidates_for(graph, pair_of(graph, forward), model);
}

// --- the chooser on a stage graph ---------------------------------------------------------------

struct memory_choice_options {
  bytes memory_cap{};                // per rank
  std::vector<bytes> weight_memory;  // per rank static memory; empty = zeros
  memory_strategy_model model;
  memory_solver_options solver;
  // Ranks solved at once (their problems are independent); the choice does not depend on it.
  unsigned threads = 1;
};

struct rank_memory_choice {
  std::size_t pairs = 0;       // forward stages on the rank
  duration extra_time{};       // added to the rank's compute time by the chosen strategies
  duration lower_bound{};      // proven: no choice under the cap adds less
  bool optimal = false;        // proven optimal (branch and bound finished)
  bytes peak_memory{};         // as dip::simulate and dip::validate compute it for this order
  std::size_t components = 0;  // independent groups solved
  std::size_t nodes = 0;       // branch-and-bound nodes
  double gap() const noexcept {
    if (optimal || extra_time <= lower_bound) return 0.0;
    return lower_bound.base() > 0 ? (extra_time - lower_bound) / lower_bound : std::numeric_limits<double>::infinity();
  }
};

struct memory_choice {
  // Per stage: the strategy of its pair (F, U and R carry their F's); keep where nothing changes.
  std::vector<memory_strategy> strategy;
  std::vector<rank_memory_choice> ranks;
  duration extra_time() const noexcept {
    duration total{};
    for (const rank_memory_choice& r : ranks) total += r.extra_time;
    return total;
  }
  double worst_gap() const noexcept {
    double g = 0;
    for (const rank_memory_choice& r : ranks) g = std::max(g, r.gap());
    return g;
  }
};

// The peak memory of one rank running `order` with the pair strategies in `strategy` (per
// stage, as memory_choice::strategy; empty = all keep): weights plus the running sum of
// strategy_memory_delta in order, the same arithmetic as dip::simulate and dip::validate.
inline bytes predicted_peak(const stage_graph& graph, std::span<const stage_id> order, bytes weights,
                            const std::vector<memory_strategy>& strategy) {
  double memory = weights.base(), peak = memory;
  for (stage_id id : order) {
    memory += detail::memory_delta_under(graph, id, strategy);
    peak = std::max(peak, memory);
  }
  return bytes(peak);
}

namespace detail {

inline constexpr std::uint32_t not_in_order = std::numeric_limits<std::uint32_t>::max();

// Where the chooser's errors about rank `rank`'s order say they are.
inline std::string order_of_rank(std::size_t rank) { return "memory strategies rank " + std::to_string(rank); }

// Records in `position` (indexed by stage; not_in_order elsewhere) where each stage of `order`
// runs on rank `rank`. Throws dip::error(errc::invalid_argument) for a stage that does not
// exist, belongs to another rank or appears twice. Writes only rank `rank`'s stages, so the
// ranks can share one table from different threads.
inline void record_positions(const stage_graph& graph, std::size_t rank, std::span<const stage_id> order,
                             std::vector<std::uint32_t>& position) {
  if (order.size() >= not_in_order) throw error(errc::invalid_argument, order_of_rank(rank), "has too many stages");
  for (std::size_t i = 0; i < order.size(); ++i) {
    const stage_id id = order[i];
    if (id.index() >= graph.size()) {
      throw error(errc::invalid_argument, order_of_rank(rank),
                  "stage " + std::to_string(id.value()) + " does not exist");
    }
    if (graph.at(id).rank.index() != rank) {
      throw error(errc::invalid_argument, order_of_rank(rank),
                  describe(graph, id) + " belongs to rank " + std::to_string(graph.at(id).rank.value()));
    }
    if (position[id.index()] != not_in_order)
      throw error(errc::invalid_argument, order_of_rank(rank), describe(graph, id) + " appears twice");
    position[id.index()] = std::uint32_t(i);
  }
}

// memory_problem_for_rank with the positions recorded (record_positions); `pairs` gets each
// item's pair.
inline memory_problem memory_problem_at(const stage_graph& graph, std::size_t rank, std::span<const stage_id> order,
                                        const std::vector<std::uint32_t>& position, bytes weights, bytes cap,
                                        const memory_strategy_model& model, std::vector<activation_pair>& pairs) {
  memory_problem problem;
  problem.cap = cap;
  const std::size_t n = order.size();
  std::vector<double> fixed(n + 1, 0.0);
  pairs.clear();
  // At most every other stage is a forward (each has a backward).
  problem.items.reserve(n / 2);
  pairs.reserve(n / 2);
  for (std::size_t i = 0; i < n; ++i) {
    const stage_id id = order[i];
    if (graph.at(id).kind != stage_kind::forward) continue;
    const activation_pair pair = pair_of(graph, id);
    const std::size_t u = position[pair.use.index()], r = position[pair.release.index()];
    if (u == not_in_order || u <= i || r == not_in_order || r < u) {
      throw error(errc::invalid_argument, order_of_rank(rank),
                  describe(graph, id) + " must come before " + describe(graph, pair.use) +
                      (pair.release != pair.use ? " and then " + describe(graph, pair.release) : std::string()) +
                      " in the order");
    }
    const double a = graph.at(id).memory_delta.base();
    fixed[u] += a;
    fixed[r] -= a;
    problem.items.push_back({i, u, candidates_for(graph, pair, model), id});
    pairs.push_back(pair);
  }
  problem.base.resize(n);
  double run = weights.base();
  for (std::size_t i = 0; i < n; ++i) {
    run += fixed[i];
    problem.base[i] = bytes(run);
  }
  return problem;
}

}  // namespace detail

// The memory_problem of rank `rank` running `order` (its compute stages, in order). Item p's
// forward is items[p].forward. Throws dip::error(errc::invalid_argument) for an order with a
// stage of another rank, a repeated stage, or a forward whose use or release stage does not
// follow it in the order.
inline memory_problem memory_problem_for_rank(const stage_graph& graph, std::size_t rank,
                                              std::span<const stage_id> order, bytes weights, bytes cap,
                                              const memory_strategy_model& model = {}) {
  std::vector<std::uint32_t> position(graph.size(), detail::not_in_order);
  detail::record_positions(graph, rank, order, position);
  std::vector<activation_pair> pairs;
  return detail::memory_problem_at(graph, rank, order, position, weights, cap, model, pairs);
}

// Chooses a strategy per pair for every rank running `order[rank]` (see the top of this file),
// options.threads ranks at a time. Throws dip::error(errc::infeasible) naming the (lowest) rank, the stage after which
// even the smallest strategies exceed the cap, and the bytes needed against the cap (or the weights alone);
// errc::invalid_argument for bad orders or options.
inline memory_choice choose_memory_strategies(const stage_graph& graph, const std::vector<std::vector<stage_id>>& order,
                                              const memory_choice_options& options) {
  const std::size_t ranks = static_cast<std::size_t>(graph.ranks());
  require(order.size() == ranks, errc::invalid_argument, "choose_memory_strategies",
          "got orders for " + std::to_string(order.size()) + " ranks, the graph has " + std::to_string(ranks));
  require(options.weight_memory.empty() || options.weight_memory.size() == ranks, errc::invalid_argument,
          "memory_choice_options.weight_memory",
          "has " + std::to_string(options.weight_memory.size()) + " entries for " + std::to_string(ranks) + " ranks");
  require(options.memory_cap.is_finite() && options.memory_cap > bytes{}, errc::invalid_argument,
          "memory_choice_options.memory_cap", "must be finite and > 0");
  memory_choice choice;
  choice.strategy.assign(graph.size(), memory_strategy::keep);
  choice.ranks.resize(ranks);
  // Where each stage runs in its rank's order: one table for all ranks, not a graph-sized one
  // filled per rank (at PP 16 x 64, 16 tables of 26208 entries for every fit).
  std::vector<std::uint32_t> position(graph.size(), detail::not_in_order);
  // Each rank writes its own stages' strategies and positions, and its own entry of choice.ranks, only.
  parallel_for(ranks, options.threads, [&](std::size_t r) {
    const bytes weights = options.weight_memory.empty() ? bytes{} : options.weight_memory[r];
    const std::string where = "rank " + std::to_string(r);
    if (weights > options.memory_cap) {
      throw error(
          errc::infeasible, where,
          "its weights need " + to_string(weights) + ", over the memory cap of " + to_string(options.memory_cap));
    }
    detail::record_positions(graph, r, order[r], position);
    std::vector<activation_pair> pairs;
    memory_problem problem =
        detail::memory_problem_at(graph, r, order[r], position, weights, options.memory_cap, options.model, pairs);
    detail::check_memory_problem_shape(problem);
    if (const std::optional<infeasible_point> bad = first_infeasible_point(problem)) {
      throw error(errc::infeasible, where,
                  "after " + describe(graph, order[r][bad->point]) + " it needs " + to_string(bad->needed) +
                      " even with every pair at its smallest strategy; the cap is " + to_string(options.memory_cap));
    }
    rank_memory_choice& out = choice.ranks[r];
    out.pairs = problem.items.size();
    // The solver sums in another order than the simulator and allows a tolerance: should the
    // simulator's running total land over the cap, solve again with the cap lowered by the excess.
    for (int attempt = 0;; ++attempt) {
      // Checked above, and again below whenever the cap is lowered.
      const memory_solution solution = detail::solve_checked_memory_problem(problem, options.solver);
      for (std::size_t p = 0; p < problem.items.size(); ++p) {
        const memory_item& item = problem.items[p];
        const activation_pair& pair = pairs[p];
        const memory_strategy s = item.candidates[solution.choice[p]].strategy;
        choice.strategy[pair.forward.index()] = choice.strategy[pair.use.index()] =
            choice.strategy[pair.release.index()] = s;
      }
      out.peak_memory = predicted_peak(graph, order[r], weights, choice.strategy);
      out.extra_time = solution.extra;
      out.lower_bound = solution.lower_bound;
      out.optimal = solution.optimal;
      out.components = solution.components;
      out.nodes = solution.nodes;
      if (out.peak_memory <= options.memory_cap) break;
      if (attempt == 3) {
        throw error(errc::infeasible, where,
                    "no choice keeps the peak under the cap of " + to_string(options.memory_cap) + " (it reaches " +
                        to_string(out.peak_memory) + ")");
      }
      problem.cap -= (out.peak_memory - options.memory_cap) + bytes(2e-9 * options.memory_cap.base());
      if (first_infeasible_point(problem)) {
        throw error(errc::infeasible, where,
                    "the peak reaches " + to_string(out.peak_memory) +
                        " with every pair at its smallest strategy; the cap is " + to_string(options.memory_cap));
      }
    }
  });
  return choice;
}

// The compute order of every rank of `p`.
inline std::vector<std::vector<stage_id>> compute_orders(const plan& p) {
  std::vector<std::vector<stage_id>> order(p.ranks.size());
  for (std::size_t r = 0; r < p.ranks.size(); ++r) {
    for (const action& a : p.ranks[r]) {
      if (a.kind == action_kind::compute) order[r].push_back(a.stage);
    }
  }
  return order;
}

inline memory_choice choose_memory_strategies(const plan& p, const memory_choice_options& options) {
  require(p.graph != nullptr, errc::invalid_argument, "choose_memory_strategies", "the plan has no stage graph");
  return choose_memory_strategies(*p.graph, compute_orders(p), options);
}

// Sets the strategy of every forward compute action of `p` to `choice`'s (others stay keep).
inline void apply_memory_choice(plan& p, const memory_choice& choice) {
  require(p.graph != nullptr && choice.strategy.size() == p.graph->size(), errc::invalid_argument,
          "apply_memory_choice", "the choice is for another stage graph");
  for (std::vector<action>& list : p.ranks) {
    for (action& a : list) {
      if (a.kind != action_kind::compute || a.stage.index() >= p.graph->size()) continue;
      a.strategy = p.graph->at(a.stage).kind == stage_kind::forward ? choice.strategy[a.stage.index()]
                                                                    : memory_strategy::keep;
    }
  }
}

}  // namespace dip
