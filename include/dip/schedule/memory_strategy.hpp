// dip memory strategies (DIP phase 3): what keeping, recomputing or offloading a forward's
// activations costs, and the chooser that picks one strategy per forward/backward pair so that
// the extra time is smallest while every rank's memory stays under a cap.
//
// A pair is a forward stage F and the stages of its backward: the *use* stage U that needs the
// activations back (B, or I when the backward is split) and the *release* stage R at whose end
// they are freed (B, or W when split). Memory follows the simulator's convention: a stage's
// memory change applies when it ends. Per strategy (the one formula dip::simulate,
// dip::validate and the chooser share; see strategy_cost_of):
// - keep: F holds its activations a = F.memory_delta from F's end to R's end. No extra time.
// - recompute: F keeps only its input, min(a, bytes of F's input edges), from F's end to U's
//   end; U re-runs the forward first, so U takes F's time longer. The first chunk of a chain
//   fed by no other chain keeps nothing (its input is the batch, held anyway).
// - offload: F's activations stream to host layer by layer while F runs and back while U runs,
//   so the device holds nothing of them from F's end to U's end. Each copy is a / host_link;
//   it hides behind the stage it overlaps: F takes max(0, copy - F's time) longer, U
//   max(0, copy - U's time) longer.
// With a split backward, W needs the activations too: after U (I) they are whole again until W
// ends, whatever the strategy; the strategy only changes memory on [F's end, I's end).
// Memory a stage needs while it runs (the recomputed activations inside B, a layer in flight to
// host) is transient and not modelled, as for keep.
//
// The chooser (choose_memory_strategies) takes each rank's compute order, builds a
// memory_problem per rank and solves it with solve_memory_problem (memory_solver.hpp): exact on
// small instances, within a proven gap on large ones. See docs/memory-strategies.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/memory_solver.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

constexpr std::string_view to_string(memory_strategy s) noexcept {
  switch (s) {
    case memory_strategy::keep: return "keep";
    case memory_strategy::recompute: return "recompute";
    case memory_strategy::offload: return "offload";
  }
  return "?";
}

// What the strategies cost: the hardware figure they need and which ones may be offered.
struct memory_strategy_model {
  bandwidth host_link = gigabytes_per_second(50);  // device <-> host, each direction (PCIe Gen5 x16, effective)
  std::size_t max_candidates = 3;                  // S: offered per pair (fastest, smallest, S-2 buckets)
  bool allow_recompute = true;
  bool allow_offload = true;
};

// --- the stages of a pair ---------------------------------------------------------------------

struct activation_pair {
  stage_id forward;  // F
  stage_id use;      // B, or I when split: recompute or reload happens here
  stage_id release;  // B, or W when split: frees the activations at its end
};

namespace detail {
constexpr std::size_t stage_slot(stage_kind kind) noexcept {
  return kind == stage_kind::forward ? 0 : kind == stage_kind::backward_weight ? 2 : 1;
}
inline bool same_work(const stage& a, const stage& b) noexcept {
  return a.chunk == b.chunk && a.microbatch == b.microbatch && a.sub == b.sub;
}
}  // namespace detail

// The forward stage of the pair `id` belongs to. O(1): stages of one (chunk, microbatch, sub)
// are adjacent in a stage graph (F, then B or I, W); checked, with stage_graph::find behind it.
inline stage_id forward_of(const stage_graph& graph, stage_id id) {
  const stage& s = graph.at(id);
  const std::size_t slot = detail::stage_slot(s.kind);
  if (id.index() >= slot) {
    const stage_id f = stage_id::from_index(id.index() - slot);
    const stage& candidate = graph.at(f);
    if (candidate.kind == stage_kind::forward && detail::same_work(candidate, s)) return f;
  }
  return graph.find(stage_kind::forward, s.chunk, s.microbatch.index(), s.sub);
}

// The pair of forward stage `forward`. Throws dip::error(errc::invalid_argument) for a stage
// that is not a forward.
inline activation_pair pair_of(const stage_graph& graph, stage_id forward) {
  const stage& f = graph.at(forward);
  if (f.kind != stage_kind::forward) {
    throw error(errc::invalid_argument, "pair_of", describe(graph, forward) + " is not a forward stage");
  }
  const bool split = graph.split_backward();
  const stage_kind use_kind = split ? stage_kind::backward_input : stage_kind::backward;
  const stage_kind release_kind = split ? stage_kind::backward_weight : stage_kind::backward;
  const auto adjacent = [&](std::size_t offset, stage_kind kind) {
    const std::size_t i = forward.index() + offset;
    if (i < graph.size()) {
      const stage& s = graph.at(stage_id::from_index(i));
      if (s.kind == kind && detail::same_work(s, f)) return stage_id::from_index(i);
    }
    return graph.find(kind, f.chunk, f.microbatch.index(), f.sub);
  };
  return {forward, adjacent(1, use_kind), adjacent(split ? 2 : 1, release_kind)};
}

// --- the one cost formula ---------------------------------------------------------------------

struct strategy_cost {
  memory_strategy strategy = memory_strategy::keep;
  duration forward_extra{};   // added to F's time
  duration backward_extra{};  // added to U's time
  bytes kept{};               // device bytes held from F's end to U's end (a, or less)
  duration extra() const noexcept { return forward_extra + backward_extra; }
};

// Bytes a recomputing forward keeps: its input (the sizes of its input edges), at most its
// activations.
inline bytes recompute_kept_bytes(const stage_graph& graph, stage_id forward) {
  bytes input{};
  for (std::uint32_t e : graph.in_edges(forward)) input += graph.edges()[e].size;
  return std::min(input, graph.at(forward).memory_delta);
}

// What running the pair of `forward` with `strategy` costs (the rules at the top of this file).
// Throws dip::error(errc::invalid_argument) for a non-forward stage, or for offload with a
// host link that is not finite and > 0.
inline strategy_cost strategy_cost_of(const stage_graph& graph, stage_id forward, memory_strategy strategy,
                                      const memory_strategy_model& model = {}) {
  const activation_pair pair = pair_of(graph, forward);
  const stage& f = graph.at(forward);
  strategy_cost cost{strategy, duration{}, duration{}, f.memory_delta};
  switch (strategy) {
    case memory_strategy::keep: break;
    case memory_strategy::recompute:
      cost.backward_extra = f.time;
      cost.kept = recompute_kept_bytes(graph, forward);
      break;
    case memory_strategy::offload: {
      const double link = model.host_link.base();
      require(std::isfinite(link) && link > 0, errc::invalid_argument, "memory_strategy_model.host_link",
              "must be finite and > 0 to offload");
      const duration copy = f.memory_delta / model.host_link;
      cost.forward_extra = std::max(duration{}, copy - f.time);
      cost.backward_extra = std::max(duration{}, copy - graph.at(pair.use).time);
      cost.kept = bytes{};
      break;
    }
  }
  return cost;
}

// Time of stage `id` when its pair runs `pair_strategy`: its own time plus the strategy's extra
// if it is the pair's F or U. keep returns stage.time exactly.
inline duration strategy_time(const stage_graph& graph, stage_id id, memory_strategy pair_strategy,
                              const memory_strategy_model& model = {}) {
  const stage& s = graph.at(id);
  if (pair_strategy == memory_strategy::keep || s.kind == stage_kind::backward_weight) return s.time;
  const strategy_cost cost = strategy_cost_of(graph, forward_of(graph, id), pair_strategy, model);
  return s.time + (s.kind == stage_kind::forward ? cost.forward_extra : cost.backward_extra);
}

// Memory change at the end of stage `id` when its pair runs `pair_strategy`. keep returns
// stage.memory_delta exactly; otherwise F: +kept; B (not split): -kept; I: +(a - kept) (the
// activations are whole again for W); W: -a.
inline bytes strategy_memory_delta(const stage_graph& graph, stage_id id, memory_strategy pair_strategy) {
  const stage& s = graph.at(id);
  if (pair_strategy == memory_strategy::keep || s.kind == stage_kind::backward_weight) return s.memory_delta;
  const stage_id f = s.kind == stage_kind::forward ? id : forward_of(graph, id);
  const bytes kept = pair_strategy == memory_strategy::recompute ? recompute_kept_bytes(graph, f) : bytes{};
  switch (s.kind) {
    case stage_kind::forward: return kept;
    case stage_kind::backward: return -kept;
    case stage_kind::backward_input: return graph.at(f).memory_delta - kept;
    case stage_kind::backward_weight: break;
  }
  return s.memory_delta;
}

namespace detail {

// The strategy of every stage's pair (indexed by stage; F, U and R of a pair get the F's), read
// from the plan's compute actions of forward stages. Empty when every strategy is keep, so
// keep-only plans pay nothing. Actions on unknown or non-forward stages are skipped here (the
// simulator and the validator report them).
inline std::vector<memory_strategy> pair_strategies(const plan& p) {
  const stage_graph& graph = *p.graph;
  std::vector<memory_strategy> table;
  for (const std::vector<action>& list : p.ranks) {
    for (const action& a : list) {
      if (a.kind != action_kind::compute || a.strategy == memory_strategy::keep) continue;
      if (a.stage.index() >= graph.size() || graph.at(a.stage).kind != stage_kind::forward) continue;
      if (table.empty()) table.assign(graph.size(), memory_strategy::keep);
      const activation_pair pair = pair_of(graph, a.stage);
      table[pair.forward.index()] = table[pair.use.index()] = table[pair.release.index()] = a.strategy;
    }
  }
  return table;
}

}  // namespace detail

// --- candidates (strategy_candidate and select_candidates: memory_solver.hpp) -----------------

// The candidates offered for the pair of `forward` under `model`.
inline std::vector<strategy_candidate> candidates_for(const stage_graph& graph, stage_id forward,
                                                      const memory_strategy_model& model = {}) {
  std::vector<strategy_candidate> all;
  const auto add = [&](memory_strategy s) {
    const strategy_cost c = strategy_cost_of(graph, forward, s, model);
    all.push_back({s, c.extra(), c.kept});
  };
  add(memory_strategy::keep);
  if (model.allow_recompute) add(memory_strategy::recompute);
  if (model.allow_offload) add(memory_strategy::offload);
  return select_candidates(std::move(all), model.max_candidates);
}

// --- the chooser on a stage graph ---------------------------------------------------------------

struct memory_choice_options {
  bytes memory_cap{};                // per rank
  std::vector<bytes> weight_memory;  // per rank static memory; empty = zeros
  memory_strategy_model model;
  memory_solver_options solver;
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
    const memory_strategy s = strategy.empty() ? memory_strategy::keep : strategy[id.index()];
    memory += s == memory_strategy::keep ? graph.at(id).memory_delta.base()
                                         : strategy_memory_delta(graph, id, s).base();
    peak = std::max(peak, memory);
  }
  return bytes(peak);
}

// The memory_problem of rank `rank` running `order` (its compute stages, in order). Item p's
// forward is items[p].forward. Throws dip::error(errc::invalid_argument) for an order with a
// stage of another rank, a repeated stage, or a forward whose use or release stage does not
// follow it in the order.
inline memory_problem memory_problem_for_rank(const stage_graph& graph, std::size_t rank,
                                              std::span<const stage_id> order, bytes weights, bytes cap,
                                              const memory_strategy_model& model = {}) {
  const std::string where = "memory strategies rank " + std::to_string(rank);
  constexpr std::size_t absent = std::numeric_limits<std::size_t>::max();
  std::vector<std::size_t> position(graph.size(), absent);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const stage_id id = order[i];
    if (id.index() >= graph.size()) {
      throw error(errc::invalid_argument, where, "stage " + std::to_string(id.value()) + " does not exist");
    }
    if (graph.at(id).rank.index() != rank) {
      throw error(errc::invalid_argument, where,
                  describe(graph, id) + " belongs to rank " + std::to_string(graph.at(id).rank.value()));
    }
    if (position[id.index()] != absent) throw error(errc::invalid_argument, where, describe(graph, id) + " appears twice");
    position[id.index()] = i;
  }
  memory_problem problem;
  problem.cap = cap;
  const std::size_t n = order.size();
  std::vector<double> fixed(n + 1, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const stage_id id = order[i];
    if (graph.at(id).kind != stage_kind::forward) continue;
    const activation_pair pair = pair_of(graph, id);
    const std::size_t u = position[pair.use.index()], r = position[pair.release.index()];
    if (u == absent || u <= i || r == absent || r < u) {
      throw error(errc::invalid_argument, where,
                  describe(graph, id) + " must come before " + describe(graph, pair.use) +
                      (pair.release != pair.use ? " and then " + describe(graph, pair.release) : std::string()) +
                      " in the order");
    }
    const double a = graph.at(id).memory_delta.base();
    fixed[u] += a;
    fixed[r] -= a;
    problem.items.push_back({i, u, candidates_for(graph, id, model), id});
  }
  problem.base.resize(n);
  double run = weights.base();
  for (std::size_t i = 0; i < n; ++i) {
    run += fixed[i];
    problem.base[i] = bytes(run);
  }
  return problem;
}

// Chooses a strategy per pair for every rank running `order[rank]` (see the top of this file).
// Throws dip::error(errc::infeasible) naming the rank, the stage after which even the smallest
// strategies exceed the cap, and the bytes needed against the cap (or the weights alone);
// errc::invalid_argument for bad orders or options.
inline memory_choice choose_memory_strategies(const stage_graph& graph,
                                              const std::vector<std::vector<stage_id>>& order,
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
  for (std::size_t r = 0; r < ranks; ++r) {
    const bytes weights = options.weight_memory.empty() ? bytes{} : options.weight_memory[r];
    const std::string where = "rank " + std::to_string(r);
    if (weights > options.memory_cap) {
      throw error(errc::infeasible, where,
                  "its weights need " + to_string(weights) + ", over the memory cap of " + to_string(options.memory_cap));
    }
    memory_problem problem = memory_problem_for_rank(graph, r, order[r], weights, options.memory_cap, options.model);
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
      const memory_solution solution = solve_memory_problem(problem, options.solver);
      for (std::size_t p = 0; p < problem.items.size(); ++p) {
        const memory_item& item = problem.items[p];
        const activation_pair pair = pair_of(graph, item.forward);
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
                    "the peak reaches " + to_string(out.peak_memory) + " with every pair at its smallest strategy; the cap is " +
                        to_string(options.memory_cap));
      }
    }
  }
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
