// dip memory solver, one component end to end (internal): the order in which the methods run
// on a component and where each may stop with a proof. Each step only lowers result.value (a
// feasible choice, result.x) or raises result.bound (a proven lower bound).
// Cost: dominated by the Lagrangian ascents (lagrangian_iterations steps each), the decision
// diagram (dd_width) and branch and bound (node_limit, none for at most exact_items items).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "dip/schedule/memory_solver/branch_and_bound.hpp"
#include "dip/schedule/memory_solver/component.hpp"
#include "dip/schedule/memory_solver/decision_diagram.hpp"
#include "dip/schedule/memory_solver/exchange.hpp"
#include "dip/schedule/memory_solver/lagrangian.hpp"
#include "dip/schedule/memory_solver/problem.hpp"
#include "dip/schedule/memory_solver/repair.hpp"

namespace dip::detail {

// The first incumbent, all-fastest repaired, and the first bound, the all-fastest time.
// Returns true when they already meet (the incumbent is optimal).
inline bool start_from_fastest(const memory_component& c, component_result& result, std::vector<double>& load,
                               std::vector<std::uint32_t>& alive) {
  const std::size_t n = c.size();
  result.x.assign(n, 0);
  for (std::size_t i = 0; i < n; ++i) result.x[i] = c.count(i) - 1;
  double fastest = 0;
  for (std::size_t i = 0; i < n; ++i) fastest += c.t(i, c.count(i) - 1);
  result.value = repair_and_improve(c, result.x, load, alive);
  result.bound = fastest;
  return close_if_proven(result);
}

// Solves one component: repair heuristic from all-fastest, subgradient on the Lagrangian dual
// (one multiplier per segment; its value is a lower bound, and each step's choice is repaired
// into a primal candidate), then depth-first branch and bound with that bound.
// c: as decompose.hpp builds it (slack >= 0, at least one item). The steps, each of which may
// prove the incumbent optimal and stop: the knapsack-row relaxation, the cover relaxation, the
// decision diagrams (dd_width > 0), exchange moves (local_search), branch and bound. Once
// options.stop is requested the steps end early and the rest are skipped: the incumbent stays
// feasible (every step keeps it so) and the bound stays proven; a component not yet started
// takes every item's smallest candidate.
inline component_result solve_component(const memory_component& c, const memory_solver_options& options) {
  component_result result;
  if (options.stop.stop_requested()) {
    // Stopped before this component: every item at its smallest candidate, which fits (slack
    // >= 0), in O(n) rather than after a repair; the bound is the all-fastest time.
    result.x.assign(c.size(), 0);
    result.value = result.bound = 0;
    for (std::size_t i = 0; i < c.size(); ++i) {
      result.value += c.t(i, 0);
      result.bound += c.t(i, c.count(i) - 1);
    }
    close_if_proven(result);
    return result;
  }
  std::vector<double> load;
  std::vector<std::uint32_t> alive;
  if (start_from_fastest(c, result, load, alive)) return result;

  const std::stop_token& stop = options.stop;
  const knapsack_dual knapsack = knapsack_ascent(c, options.lagrangian_iterations, result, load, alive, stop);
  result.bound = std::max(result.bound, knapsack.bound);
  if (close_if_proven(result) || stop.stop_requested()) return result;

  cover_relaxation cover(c);
  const cover_dual covers = cover.ascent(options.lagrangian_iterations, result, load, alive, stop);
  result.bound = std::min(result.bound, result.value);
  if (close_if_proven(result) || stop.stop_requested()) return result;

  // Reduced costs under the relaxation that gave the better bound.
  std::vector<double> reduced(c.time.size(), 0.0);
  const double constant = covers.bound >= knapsack.bound ? cover.price(covers.mu, covers.nu, reduced)
                                                         : knapsack_reduced_costs(c, knapsack.lambda, reduced);
  // Decision diagrams, states ranked by cost plus the knapsack relaxation's price of the bytes
  // they hold.
  // The incumbent before the diagram: exchange moves start from it too, since a better start
  // does not always reach the better local optimum.
  std::vector<std::uint32_t> before_diagram = result.x;
  if (options.dd_width > 0 && tighten_by_diagrams(c, knapsack.lambda, options.dd_width, result)) return result;
  if (options.local_search) improve_incumbent_by_exchange(c, std::move(before_diagram), result, stop);
  if (stop.stop_requested()) return result;

  // Branch and bound, items in order of their first segment, candidates by reduced cost.
  const std::size_t limit = c.size() <= options.exact_items ? std::numeric_limits<std::size_t>::max()
                                                            : options.node_limit;
  branch_and_bound(c, reduced, constant, limit, result, stop);
  return result;
}

}  // namespace dip::detail
