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
// memory_problem per rank and solves it with solve_memory_problem: exact branch and bound on
// small instances, a Lagrangian lower bound plus a repair heuristic (then node-limited branch
// and bound) on large ones, reporting the proven gap. See docs/memory-strategies.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
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

// --- candidates -------------------------------------------------------------------------------

struct strategy_candidate {
  memory_strategy strategy = memory_strategy::keep;
  duration extra{};  // forward_extra + backward_extra
  bytes kept{};
  friend bool operator==(const strategy_candidate&, const strategy_candidate&) = default;
};

// At most `max_count` candidates of `all`, non-dominated (no other is as fast and as small;
// of equal ones the first stays), sorted by kept bytes ascending (so time descending): the
// fastest, the smallest, and the fastest in each of max_count - 2 equal-width buckets of kept
// bytes between them. Throws dip::error(errc::invalid_argument) for max_count 0.
inline std::vector<strategy_candidate> select_candidates(std::vector<strategy_candidate> all, std::size_t max_count) {
  require(max_count >= 1, errc::invalid_argument, "memory_strategy_model.max_candidates", "must be >= 1");
  std::vector<strategy_candidate> front;
  for (std::size_t i = 0; i < all.size(); ++i) {
    bool dominated = false;
    for (std::size_t j = 0; j < all.size() && !dominated; ++j) {
      if (i == j) continue;
      const bool no_worse = all[j].extra <= all[i].extra && all[j].kept <= all[i].kept;
      const bool better = all[j].extra < all[i].extra || all[j].kept < all[i].kept;
      dominated = no_worse && (better || j < i);
    }
    if (!dominated) front.push_back(all[i]);
  }
  std::sort(front.begin(), front.end(), [](const strategy_candidate& a, const strategy_candidate& b) {
    return a.kept < b.kept;
  });
  if (front.size() <= max_count) return front;
  if (max_count == 1) return {front.back()};
  std::vector<strategy_candidate> chosen{front.front()};
  const std::size_t buckets = max_count - 2;
  const double low = front.front().kept.base(), high = front.back().kept.base();
  for (std::size_t b = 0; b < buckets; ++b) {
    const double from = low + (high - low) * double(b) / double(buckets);
    const double to = low + (high - low) * double(b + 1) / double(buckets);
    // The fastest inside [from, to) among the middle ones = the largest kept in the bucket.
    const strategy_candidate* best = nullptr;
    for (std::size_t i = 1; i + 1 < front.size(); ++i) {
      const double k = front[i].kept.base();
      if (k >= from && (k < to || b + 1 == buckets)) best = &front[i];
    }
    if (best != nullptr && !(*best == chosen.back())) chosen.push_back(*best);
  }
  chosen.push_back(front.back());
  return chosen;
}

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

// --- the abstract problem: one rank ---------------------------------------------------------------
//
// Points 0..n-1 (in a rank's compute order, the moments after each stage ends). Each item (a
// pair) holds its chosen candidate's kept bytes at points [first, last); base[i] is what no
// choice changes (weights, the split backward's whole activations between I and W). Choose one
// candidate per item minimising the sum of extra times with base[i] + kept at i <= cap at every
// point.

struct memory_item {
  std::size_t first = 0, last = 0;  // points [first, last)
  std::vector<strategy_candidate> candidates;
  stage_id forward;  // the pair's F when built from a stage graph (else invalid)
};

struct memory_problem {
  bytes cap{};
  std::vector<bytes> base;  // per point
  std::vector<memory_item> items;
};

struct memory_solver_options {
  std::size_t exact_items = 16;     // components this small: branch and bound without a node limit
  std::size_t node_limit = 20000;   // branch-and-bound nodes for a larger component
  int lagrangian_iterations = 120;  // subgradient steps per component
};

struct memory_solution {
  std::vector<std::uint32_t> choice;  // per item: index into its candidates
  duration extra{};                   // sum of the chosen extra times
  duration lower_bound{};             // no feasible choice has less extra time
  bool optimal = false;               // proven: extra is the minimum
  bytes peak{};                       // max over points of base + kept (0 with no points)
  std::size_t components = 0;         // independent groups of items that meet at a binding point
  std::size_t nodes = 0;              // branch-and-bound nodes visited
  // (extra - lower_bound) / lower_bound; 0 when proven optimal or both are 0.
  double gap() const noexcept {
    if (optimal || extra <= lower_bound) return 0.0;
    return lower_bound.base() > 0 ? (extra - lower_bound) / lower_bound : std::numeric_limits<double>::infinity();
  }
};

// Loads are compared with the cap plus a tolerance of 1e-9 of it (about 100 bytes at 100 GB):
// sums in different orders differ in their last bits, and a cap set to a peak no choice changes
// must not read as infeasible. choose_memory_strategies re-checks with the simulator's exact
// running sums.
inline double memory_cap_with_tolerance(bytes cap) noexcept { return cap.base() + 1e-9 * std::fabs(cap.base()); }

// The first point that no choice fits (every item at its smallest candidate exceeds the cap):
// (point, bytes needed there), or nothing.
struct infeasible_point {
  std::size_t point = 0;
  bytes needed{};
};

namespace detail {

// One group of items that share binding points, in compressed form: segments are runs of
// binding points covered by the same items; slack is what the cap leaves above every item's
// smallest candidate. An item's candidates are non-dominated, kept ascending, time descending.
struct memory_component {
  std::vector<double> slack;        // per segment
  std::vector<std::uint32_t> item;  // problem item per local item, by first segment
  std::vector<std::uint32_t> sa, sb;            // segment range [sa, sb) per local item
  std::vector<std::uint32_t> cand_begin;        // into time/extra/origin; local item i's are [begin[i], begin[i+1])
  std::vector<double> time, dk;                 // per candidate: extra seconds, kept - smallest kept
  std::vector<std::uint32_t> origin;            // per candidate: index in the problem item's list

  std::size_t size() const noexcept { return item.size(); }
  std::uint32_t count(std::size_t i) const noexcept { return cand_begin[i + 1] - cand_begin[i]; }
  double t(std::size_t i, std::uint32_t c) const noexcept { return time[cand_begin[i] + c]; }
  double k(std::size_t i, std::uint32_t c) const noexcept { return dk[cand_begin[i] + c]; }
};

struct component_result {
  std::vector<std::uint32_t> x;  // local candidate per local item
  double value = 0, bound = 0;
  bool optimal = false;
  std::size_t nodes = 0;
};

// Repairs `x` to feasibility (left to right: at a segment over its slack, move the alive item
// whose step down to a smaller candidate costs least time per byte needed) and then upgrades
// items to faster candidates where they still fit. Returns the total time.
inline double repair_and_improve(const memory_component& c, std::vector<std::uint32_t>& x, std::vector<double>& load,
                                 std::vector<std::uint32_t>& alive) {
  const std::size_t n = c.size(), m = c.slack.size();
  load.assign(m + 1, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const double k = c.k(i, x[i]);
    load[c.sa[i]] += k;
    load[c.sb[i]] -= k;
  }
  for (std::size_t s = 1; s < m; ++s) load[s] += load[s - 1];
  alive.clear();
  std::size_t next = 0;
  for (std::size_t s = 0; s < m; ++s) {
    while (next < n && c.sa[next] <= s) {
      if (c.sb[next] > s) alive.push_back(std::uint32_t(next));
      ++next;
    }
    for (std::size_t a = 0; a < alive.size();) {
      if (c.sb[alive[a]] <= s) {
        alive[a] = alive.back();
        alive.pop_back();
      } else {
        ++a;
      }
    }
    double excess = load[s] - c.slack[s];
    while (excess > 0) {
      double best_ratio = std::numeric_limits<double>::infinity();
      std::uint32_t best_item = 0, best_cand = 0;
      for (std::uint32_t i : alive) {
        for (std::uint32_t to = 0; to < x[i]; ++to) {
          const double saved = c.k(i, x[i]) - c.k(i, to);
          if (saved <= 0) continue;
          const double ratio = (c.t(i, to) - c.t(i, x[i])) / std::min(saved, excess);
          // Of equal costs, the item that reaches furthest right also helps the later segments.
          const bool tie = best_ratio < std::numeric_limits<double>::infinity() &&
                           std::fabs(ratio - best_ratio) <= 1e-9 * best_ratio;
          if (tie ? c.sb[i] > c.sb[best_item] : ratio < best_ratio) {
            best_ratio = ratio;
            best_item = i;
            best_cand = to;
          }
        }
      }
      if (best_ratio == std::numeric_limits<double>::infinity()) break;  // cannot happen: slack >= 0
      const double saved = c.k(best_item, x[best_item]) - c.k(best_item, best_cand);
      for (std::size_t q = c.sa[best_item]; q < c.sb[best_item]; ++q) load[q] -= saved;
      x[best_item] = best_cand;
      excess = load[s] - c.slack[s];
    }
  }
  // Upgrades, biggest possible saving first.
  std::vector<std::uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return c.t(a, x[a]) - c.t(a, c.count(a) - 1) > c.t(b, x[b]) - c.t(b, c.count(b) - 1);
  });
  for (std::uint32_t i : order) {
    for (std::uint32_t to = c.count(i) - 1; to > x[i]; --to) {
      const double more = c.k(i, to) - c.k(i, x[i]);
      bool fits = true;
      for (std::size_t q = c.sa[i]; q < c.sb[i] && fits; ++q) fits = load[q] + more <= c.slack[q];
      if (!fits) continue;
      for (std::size_t q = c.sa[i]; q < c.sb[i]; ++q) load[q] += more;
      x[i] = to;
      break;
    }
  }
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) total += c.t(i, x[i]);
  return total;
}

// Solves one component: repair heuristic from all-fastest, subgradient on the Lagrangian dual
// (one multiplier per segment; its value is a lower bound, and each step's choice is repaired
// into a primal candidate), then depth-first branch and bound with that bound.
inline component_result solve_component(const memory_component& c, const memory_solver_options& options) {
  const std::size_t n = c.size(), m = c.slack.size();
  component_result result;
  std::vector<double> load;
  std::vector<std::uint32_t> alive;
  std::vector<std::uint32_t> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = c.count(i) - 1;
  double fastest = 0;
  for (std::size_t i = 0; i < n; ++i) fastest += c.t(i, c.count(i) - 1);
  result.x = x;
  result.value = repair_and_improve(c, result.x, load, alive);
  result.bound = fastest;
  const auto tolerance = [](double value) { return 1e-12 * std::max(std::fabs(value), 1e-300); };
  if (result.value - result.bound <= tolerance(result.value)) {
    result.optimal = true;
    result.bound = result.value;
    return result;
  }

  // First relaxation: the knapsack rows sum_i dk_i <= slack_s with multipliers lambda_s,
  // L = sum_i min_c (t_c + dk_c Lambda_i) - sum_s lambda_s slack_s (Lambda_i: lambda summed over
  // i's segments). Subgradient steps with Polyak's rule; every few steps the relaxed choice is
  // repaired into a feasible one.
  std::vector<double> lambda(m, 0.0), best_lambda(m, 0.0), lambda_prefix(m + 1, 0.0), g(m + 1, 0.0);
  double knapsack_bound = result.bound;
  {
    double theta = 2.0;
    int stall = 0;
    for (int it = 0; it < options.lagrangian_iterations; ++it) {
      lambda_prefix[0] = 0;
      for (std::size_t s = 0; s < m; ++s) lambda_prefix[s + 1] = lambda_prefix[s] + lambda[s];
      double value = 0;
      for (std::size_t s = 0; s < m; ++s) value -= lambda[s] * c.slack[s];
      std::fill(g.begin(), g.end(), 0.0);
      for (std::size_t i = 0; i < n; ++i) {
        const double big_lambda = lambda_prefix[c.sb[i]] - lambda_prefix[c.sa[i]];
        std::uint32_t best = 0;
        double best_value = std::numeric_limits<double>::infinity();
        for (std::uint32_t k = 0; k < c.count(i); ++k) {
          const double v = c.t(i, k) + c.k(i, k) * big_lambda;
          if (v <= best_value) {
            best_value = v;
            best = k;
          }
        }
        value += best_value;
        x[i] = best;
        g[c.sa[i]] += c.k(i, best);
        g[c.sb[i]] -= c.k(i, best);
      }
      if (value > knapsack_bound) {
        knapsack_bound = value;
        best_lambda = lambda;
        stall = 0;
      } else if (++stall >= 8) {
        theta *= 0.5;
        stall = 0;
      }
      double norm = 0, run = 0;
      for (std::size_t s = 0; s < m; ++s) {
        run += g[s];
        g[s] = run - c.slack[s];
        if (lambda[s] > 0 || g[s] > 0) norm += g[s] * g[s];
      }
      if (it % 8 == 0 || norm == 0) {
        std::vector<std::uint32_t> y = x;
        const double v = repair_and_improve(c, y, load, alive);
        if (v < result.value) {
          result.value = v;
          result.x = std::move(y);
        }
      }
      if (result.value - knapsack_bound <= tolerance(result.value) || norm == 0 || theta < 1e-6) break;
      const double step = theta * (result.value - value) / norm;
      for (std::size_t s = 0; s < m; ++s) lambda[s] = std::max(0.0, lambda[s] + step * g[s]);
    }
  }
  result.bound = std::max(result.bound, knapsack_bound);
  if (result.value - result.bound <= tolerance(result.value)) {
    result.optimal = true;
    result.bound = result.value;
    return result;
  }

  // Second relaxation. Measured from the all-fastest choice, segment s needs need_s bytes saved.
  // Two families of valid inequalities, each item's saving sav (fastest kept - chosen kept):
  //   truncated knapsack  sum_i min(sav_i, need_s) / need_s >= 1   (multiplier mu_s)
  //   cardinality cover   #{i alive: sav_i > 0} >= q_s             (multiplier nu_s)
  // where q_s is the fewest alive items whose largest savings reach need_s. Their Lagrangian,
  // L = sum_i min_c (t_c - A_ic - [sav_c > 0] N_i) + sum_s (mu_s + nu_s q_s), with A_ic the
  // mu-weighted truncated savings over i's segments and N_i the sum of nu over them, is a lower
  // bound for any mu, nu >= 0 (truncation keeps it stronger than the plain knapsack rows when
  // one item saves more than a segment needs); subgradient steps raise it.
  std::vector<double> need(m + 1, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const double k = c.k(i, c.count(i) - 1);
    need[c.sa[i]] += k;
    need[c.sb[i]] -= k;
  }
  for (std::size_t s = 1; s < m; ++s) need[s] += need[s - 1];
  for (std::size_t s = 0; s < m; ++s) need[s] -= c.slack[s];
  std::vector<double> fewest(m, 0.0);
  {
    std::vector<std::vector<double>> savings(m);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t s = c.sa[i]; s < c.sb[i]; ++s) {
        if (need[s] > 0) savings[s].push_back(c.k(i, c.count(i) - 1));
      }
    }
    for (std::size_t s = 0; s < m; ++s) {
      if (need[s] <= 0) continue;
      std::sort(savings[s].begin(), savings[s].end(), std::greater<double>());
      double sum = 0;
      for (double v : savings[s]) {
        if (sum >= need[s]) break;
        sum += v;
        fewest[s] += 1;
      }
    }
  }
  const std::size_t total_cands = c.time.size();
  std::vector<double> mu(m, 0.0), nu(m, 0.0), best_mu(m, 0.0), best_nu(m, 0.0), prefix(m + 1, 0.0);
  std::vector<double> g_mu(m, 0.0), g_nu(m + 1, 0.0), reduced(total_cands, 0.0);
  const auto price = [&](const std::vector<double>& mu_, const std::vector<double>& nu_) {
    // reduced[cand] for every candidate under (mu_, nu_); returns the constant term.
    prefix[0] = 0;
    for (std::size_t s = 0; s < m; ++s) prefix[s + 1] = prefix[s] + nu_[s];
    double constant = 0;
    for (std::size_t s = 0; s < m; ++s) constant += need[s] > 0 ? mu_[s] + nu_[s] * fewest[s] : 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t last = c.count(i) - 1;
      const double fast = c.k(i, last), big_nu = prefix[c.sb[i]] - prefix[c.sa[i]];
      for (std::uint32_t k = 0; k <= last; ++k) {
        const double saved = fast - c.k(i, k);
        double a = 0;
        if (saved > 0) {
          for (std::size_t s = c.sa[i]; s < c.sb[i]; ++s) {
            if (need[s] > 0 && mu_[s] > 0) a += mu_[s] * std::min(saved, need[s]) / need[s];
          }
          a += big_nu;
        }
        reduced[c.cand_begin[i] + k] = c.t(i, k) - a;
      }
    }
    return constant;
  };
  double theta = 2.0;
  int stall = 0;
  double cover_bound = -std::numeric_limits<double>::infinity();
  for (int it = 0; it < options.lagrangian_iterations; ++it) {
    double value = price(mu, nu);
    std::fill(g_mu.begin(), g_mu.end(), 1.0);
    std::fill(g_nu.begin(), g_nu.end(), 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      std::uint32_t best = 0;
      double best_value = std::numeric_limits<double>::infinity();
      for (std::uint32_t k = 0; k < c.count(i); ++k) {
        const double v = reduced[c.cand_begin[i] + k];
        if (v <= best_value) {  // ties to the faster (later) candidate
          best_value = v;
          best = k;
        }
      }
      value += best_value;
      x[i] = best;
      const double saved = c.k(i, c.count(i) - 1) - c.k(i, best);
      if (saved > 0) {
        for (std::size_t s = c.sa[i]; s < c.sb[i]; ++s) {
          if (need[s] > 0) g_mu[s] -= std::min(saved, need[s]) / need[s];
        }
        g_nu[c.sa[i]] -= 1;
        g_nu[c.sb[i]] += 1;
      }
    }
    if (value > cover_bound) {
      cover_bound = value;
      result.bound = std::max(result.bound, value);
      best_mu = mu;
      best_nu = nu;
      stall = 0;
    } else if (++stall >= 8) {
      theta *= 0.5;
      stall = 0;
    }
    double norm = 0, run = 0;
    for (std::size_t s = 0; s < m; ++s) {
      run += g_nu[s];
      g_nu[s] = fewest[s] + run;
      if (need[s] <= 0) {
        g_mu[s] = g_nu[s] = 0;
        continue;
      }
      if (mu[s] > 0 || g_mu[s] > 0) norm += g_mu[s] * g_mu[s];
      if (nu[s] > 0 || g_nu[s] > 0) norm += g_nu[s] * g_nu[s];
    }
    if (it % 8 == 0 || norm == 0) {
      std::vector<std::uint32_t> y = x;
      const double v = repair_and_improve(c, y, load, alive);
      if (v < result.value) {
        result.value = v;
        result.x = std::move(y);
      }
    }
    if (result.value - result.bound <= tolerance(result.value) || norm == 0 || theta < 1e-6) break;
    const double step = theta * (result.value - value) / norm;
    for (std::size_t s = 0; s < m; ++s) {
      mu[s] = std::max(0.0, mu[s] + step * g_mu[s]);
      nu[s] = std::max(0.0, nu[s] + step * g_nu[s]);
    }
  }
  result.bound = std::min(result.bound, result.value);
  if (result.value - result.bound <= tolerance(result.value)) {
    result.optimal = true;
    result.bound = result.value;
    return result;
  }

  // Branch and bound, items in order of their first segment, candidates by reduced cost under
  // the relaxation that gave the better bound.
  double constant = 0;
  if (cover_bound >= knapsack_bound) {
    constant = price(best_mu, best_nu);
  } else {
    lambda_prefix[0] = 0;
    for (std::size_t s = 0; s < m; ++s) lambda_prefix[s + 1] = lambda_prefix[s] + best_lambda[s];
    for (std::size_t s = 0; s < m; ++s) constant -= best_lambda[s] * c.slack[s];
    for (std::size_t i = 0; i < n; ++i) {
      const double big_lambda = lambda_prefix[c.sb[i]] - lambda_prefix[c.sa[i]];
      for (std::uint32_t k = 0; k < c.count(i); ++k) reduced[c.cand_begin[i] + k] = c.t(i, k) + c.k(i, k) * big_lambda;
    }
  }
  std::vector<double> reduced_min(n), suffix(n + 1, 0.0), fastest_suffix(n + 1, 0.0);
  std::vector<std::uint32_t> order(total_cands);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t b = c.cand_begin[i];
    for (std::uint32_t k = 0; k < c.count(i); ++k) order[b + k] = k;
    std::sort(order.begin() + b, order.begin() + c.cand_begin[i + 1],
              [&](std::uint32_t u, std::uint32_t v) { return reduced[b + u] < reduced[b + v]; });
    reduced_min[i] = reduced[b + order[b]];
  }
  for (std::size_t i = n; i-- > 0;) {
    suffix[i] = suffix[i + 1] + reduced_min[i];
    fastest_suffix[i] = fastest_suffix[i + 1] + c.t(i, c.count(i) - 1);
  }
  const std::size_t limit = n <= options.exact_items ? std::numeric_limits<std::size_t>::max() : options.node_limit;
  load.assign(m, 0.0);
  std::vector<std::uint32_t> next(n + 1, 0);
  std::vector<double> reduced_acc(n + 1, 0.0), time_acc(n + 1, 0.0);
  std::size_t depth = 0, nodes = 0;
  bool complete = true;
  const auto undo = [&](std::size_t i) {
    const double k = c.k(i, x[i]);
    if (k != 0) {
      for (std::size_t q = c.sa[i]; q < c.sb[i]; ++q) load[q] -= k;
    }
  };
  next[0] = 0;
  while (true) {
    if (depth == n) {
      if (time_acc[n] < result.value) {
        result.value = time_acc[n];
        result.x = x;
      }
      --depth;
      undo(depth);
      continue;
    }
    const std::size_t i = depth;
    const double prune_at = result.value - tolerance(result.value);
    bool descended = false;
    while (next[i] < c.count(i)) {
      const std::uint32_t k = order[c.cand_begin[i] + next[i]++];
      const double acc = reduced_acc[i] + reduced[c.cand_begin[i] + k];
      const double time = time_acc[i] + c.t(i, k);
      if (constant + acc + suffix[i + 1] >= prune_at) {
        next[i] = c.count(i);  // later candidates have larger reduced costs
        break;
      }
      if (time + fastest_suffix[i + 1] >= prune_at) continue;
      const double dk = c.k(i, k);
      bool fits = true;
      if (dk != 0) {
        for (std::size_t q = c.sa[i]; q < c.sb[i] && fits; ++q) fits = load[q] + dk <= c.slack[q];
        if (!fits) continue;
        for (std::size_t q = c.sa[i]; q < c.sb[i]; ++q) load[q] += dk;
      }
      x[i] = k;
      reduced_acc[i + 1] = acc;
      time_acc[i + 1] = time;
      next[i + 1] = 0;
      ++depth;
      descended = true;
      break;
    }
    if (descended) {
      if (++nodes >= limit) {
        complete = false;
        break;
      }
      continue;
    }
    if (depth == 0) break;
    --depth;
    undo(depth);
  }
  result.nodes = nodes;
  if (complete) {
    result.optimal = true;
    result.bound = result.value;
  }
  return result;
}

}  // namespace detail

// The first point no choice fits, or nothing.
inline std::optional<infeasible_point> first_infeasible_point(const memory_problem& problem) {
  const std::size_t points = problem.base.size();
  std::vector<double> smallest(points + 1, 0.0);
  for (const memory_item& item : problem.items) {
    if (item.first >= item.last || item.candidates.empty()) continue;
    double k = std::numeric_limits<double>::infinity();
    for (const strategy_candidate& c : item.candidates) k = std::min(k, c.kept.base());
    smallest[item.first] += k;
    smallest[item.last] -= k;
  }
  double run = 0;
  for (std::size_t i = 0; i < points; ++i) {
    run += smallest[i];
    const double need = problem.base[i].base() + run;
    if (need > memory_cap_with_tolerance(problem.cap)) return infeasible_point{i, bytes(need)};
  }
  return std::nullopt;
}

// Chooses one candidate per item (see memory_problem). Items that meet no binding point (one
// where even the largest candidates might exceed the cap) take their fastest candidate; the
// others are grouped into components that share binding points, each solved by
// detail::solve_component. Throws dip::error(errc::infeasible) naming the first point where the
// smallest candidates exceed the cap, and errc::invalid_argument for a malformed problem.
inline memory_solution solve_memory_problem(const memory_problem& problem, const memory_solver_options& options = {}) {
  const std::size_t points = problem.base.size(), items = problem.items.size();
  require(problem.cap.is_finite(), errc::invalid_argument, "memory_problem.cap", "must be finite");
  for (std::size_t p = 0; p < items; ++p) {
    const memory_item& item = problem.items[p];
    const auto fail = [&](const std::string& what) {
      throw error(errc::invalid_argument, "memory_problem.items[" + std::to_string(p) + "]", what);
    };
    if (item.first > item.last || item.last > points) {
      fail("points [" + std::to_string(item.first) + ", " + std::to_string(item.last) + ") outside 0.." +
           std::to_string(points));
    }
    if (item.candidates.empty()) fail("has no candidates");
    for (const strategy_candidate& c : item.candidates) {
      if (!(c.extra.is_finite() && c.extra >= duration{} && c.kept.is_finite() && c.kept >= bytes{})) {
        fail("has a candidate with negative or non-finite time or bytes");
      }
    }
  }
  if (const std::optional<infeasible_point> bad = first_infeasible_point(problem)) {
    throw error(errc::infeasible, "memory_problem point " + std::to_string(bad->point),
                "needs " + to_string(bad->needed) + " with every item at its smallest candidate, the cap is " +
                    to_string(problem.cap));
  }

  // Per item: its non-dominated candidates, kept ascending (time descending), as indices.
  std::vector<std::vector<std::uint32_t>> front(items);
  std::vector<double> smallest(items), largest(items);
  for (std::size_t p = 0; p < items; ++p) {
    const auto& cands = problem.items[p].candidates;
    std::vector<std::uint32_t> idx(cands.size());
    std::iota(idx.begin(), idx.end(), 0u);
    std::sort(idx.begin(), idx.end(), [&](std::uint32_t a, std::uint32_t b) {
      if (cands[a].kept != cands[b].kept) return cands[a].kept < cands[b].kept;
      if (cands[a].extra != cands[b].extra) return cands[a].extra < cands[b].extra;
      return a < b;
    });
    for (std::uint32_t i : idx) {  // keep one strictly faster than every smaller one
      if (front[p].empty() || cands[i].extra < cands[front[p].back()].extra) front[p].push_back(i);
    }
    smallest[p] = cands[front[p].front()].kept.base();
    largest[p] = cands[front[p].back()].kept.base();
  }

  // Binding points and the components that meet at them (union-find over a sweep).
  std::vector<double> min_load(points + 1, 0.0), max_load(points + 1, 0.0);
  std::vector<std::uint32_t> start_begin(points + 2, 0), end_begin(points + 2, 0);
  for (std::size_t p = 0; p < items; ++p) {
    const memory_item& item = problem.items[p];
    if (item.first >= item.last) continue;
    min_load[item.first] += smallest[p];
    min_load[item.last] -= smallest[p];
    max_load[item.first] += largest[p];
    max_load[item.last] -= largest[p];
    ++start_begin[item.first + 1];
    ++end_begin[item.last + 1];
  }
  for (std::size_t i = 0; i <= points; ++i) {
    start_begin[i + 1] += start_begin[i];
    end_begin[i + 1] += end_begin[i];
  }
  std::vector<std::uint32_t> starts(start_begin[points + 1]), ends(end_begin[points + 1]);
  {
    std::vector<std::uint32_t> sf(start_begin.begin(), start_begin.end() - 1), ef(end_begin.begin(), end_begin.end() - 1);
    for (std::size_t p = 0; p < items; ++p) {
      const memory_item& item = problem.items[p];
      if (item.first >= item.last) continue;
      starts[sf[item.first]++] = std::uint32_t(p);
      ends[ef[item.last]++] = std::uint32_t(p);
    }
  }
  const double cap = memory_cap_with_tolerance(problem.cap);
  std::vector<std::uint32_t> parent(items);
  std::iota(parent.begin(), parent.end(), 0u);
  const auto find = [&](std::uint32_t a) {
    while (parent[a] != a) a = parent[a] = parent[parent[a]];
    return a;
  };
  constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();
  std::vector<std::uint8_t> binding_item(items, 0);
  std::vector<std::uint32_t> point_rep(points, none), pending;
  std::vector<double> point_min(points);
  std::uint32_t rep = none;
  std::size_t rep_end = 0;
  double run_min = 0, run_max = 0;
  for (std::size_t i = 0; i < points; ++i) {
    for (std::uint32_t k = start_begin[i]; k < start_begin[i + 1]; ++k) pending.push_back(starts[k]);
    run_min += min_load[i];
    run_max += max_load[i];
    point_min[i] = problem.base[i].base() + run_min;
    if (problem.base[i].base() + run_max <= cap) continue;
    if (rep != none && rep_end <= i) rep = none;
    for (std::uint32_t p : pending) {
      if (problem.items[p].last <= i) continue;
      binding_item[p] = 1;
      if (rep == none) {
        rep = p;
        rep_end = problem.items[p].last;
      } else {
        parent[find(p)] = find(rep);
        if (problem.items[p].last > rep_end) {
          rep = p;
          rep_end = problem.items[p].last;
        }
      }
    }
    pending.clear();
    point_rep[i] = rep;  // none: nothing alive, and base fits (checked above)
  }

  memory_solution solution;
  solution.choice.assign(items, 0);
  double lower = 0, total = 0;
  std::vector<std::uint32_t> component_of(items, none), local_of(items, none);
  std::vector<detail::memory_component> components;
  for (std::size_t p = 0; p < items; ++p) {
    if (!binding_item[p]) {
      solution.choice[p] = front[p].back();  // the fastest
      lower += problem.items[p].candidates[front[p].back()].extra.base();
      continue;
    }
    const std::uint32_t root = find(std::uint32_t(p));
    if (component_of[root] == none) {
      component_of[root] = std::uint32_t(components.size());
      components.emplace_back();
    }
    component_of[p] = component_of[root];
  }
  // Items of a component in order of their first point (p ascending within a start point).
  for (std::size_t i = 0; i < points; ++i) {
    for (std::uint32_t k = start_begin[i]; k < start_begin[i + 1]; ++k) {
      const std::uint32_t p = starts[k];
      if (component_of[p] == none) continue;
      detail::memory_component& c = components[component_of[p]];
      local_of[p] = std::uint32_t(c.item.size());
      c.item.push_back(p);
    }
  }
  for (detail::memory_component& c : components) {
    c.sa.assign(c.size(), 0);
    c.sb.assign(c.size(), 0);
    c.cand_begin.push_back(0);
    for (std::uint32_t p : c.item) {
      const auto& cands = problem.items[p].candidates;
      for (std::uint32_t i : front[p]) {
        c.time.push_back(cands[i].extra.base());
        c.dk.push_back(cands[i].kept.base() - smallest[p]);
        c.origin.push_back(i);
      }
      c.cand_begin.push_back(std::uint32_t(c.time.size()));
    }
  }
  // Segments: runs of a component's binding points between events of its items.
  {
    std::vector<std::uint32_t> events(components.size(), 0), seen(components.size(), none);
    for (std::size_t i = 0; i < points; ++i) {
      for (std::uint32_t k = end_begin[i]; k < end_begin[i + 1]; ++k) {
        const std::uint32_t p = ends[k];
        if (component_of[p] == none) continue;
        detail::memory_component& c = components[component_of[p]];
        c.sb[local_of[p]] = std::uint32_t(c.slack.size());
        ++events[component_of[p]];
      }
      for (std::uint32_t k = start_begin[i]; k < start_begin[i + 1]; ++k) {
        const std::uint32_t p = starts[k];
        if (component_of[p] == none) continue;
        detail::memory_component& c = components[component_of[p]];
        c.sa[local_of[p]] = std::uint32_t(c.slack.size());
        ++events[component_of[p]];
      }
      if (point_rep[i] == none) continue;
      const std::uint32_t k = component_of[find(point_rep[i])];
      detail::memory_component& c = components[k];
      const double slack = cap - point_min[i];
      if (seen[k] != events[k] || c.slack.empty()) {
        c.slack.push_back(slack);
        seen[k] = events[k];
      } else {
        c.slack.back() = std::min(c.slack.back(), slack);
      }
    }
    for (std::size_t p = 0; p < items; ++p) {
      if (component_of[p] == none || problem.items[p].last != points) continue;
      detail::memory_component& c = components[component_of[p]];
      c.sb[local_of[p]] = std::uint32_t(c.slack.size());
    }
  }

  solution.optimal = true;
  for (const detail::memory_component& c : components) {
    const detail::component_result r = detail::solve_component(c, options);
    for (std::size_t i = 0; i < c.size(); ++i) solution.choice[c.item[i]] = c.origin[c.cand_begin[i] + r.x[i]];
    lower += r.bound;
    solution.optimal = solution.optimal && r.optimal;
    solution.nodes += r.nodes;
  }
  solution.components = components.size();

  std::vector<double> kept(points + 1, 0.0);
  for (std::size_t p = 0; p < items; ++p) {
    const memory_item& item = problem.items[p];
    const strategy_candidate& chosen = item.candidates[solution.choice[p]];
    total += chosen.extra.base();
    if (item.first >= item.last) continue;
    kept[item.first] += chosen.kept.base();
    kept[item.last] -= chosen.kept.base();
  }
  double run = 0, peak = 0;
  for (std::size_t i = 0; i < points; ++i) {
    run += kept[i];
    peak = std::max(peak, problem.base[i].base() + run);
  }
  solution.extra = duration(total);
  solution.lower_bound = duration(std::min(lower, total));
  if (solution.optimal) solution.lower_bound = solution.extra;
  solution.peak = bytes(peak);
  return solution;
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
