// dip memory solver, the driver: solve_memory_problem checks a problem, decomposes it
// (decompose.hpp), solves each component (solve_component.hpp) and assembles the solution:
// the choice per item, its extra time and peak, and the proven lower bound.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/memory_solver/component.hpp"
#include "dip/schedule/memory_solver/decompose.hpp"
#include "dip/schedule/memory_solver/problem.hpp"
#include "dip/schedule/memory_solver/solve_component.hpp"

namespace dip {

namespace detail {

// Throws dip::error(errc::invalid_argument) for a malformed problem (non-finite cap, items
// outside the points or without candidates, negative or non-finite candidates).
inline void check_memory_problem_shape(const memory_problem& problem) {
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
}

// The chosen candidates' extra time and peak; lower_bound = min(lower, extra), or extra when
// solution.optimal. solution.choice is set for every item.
inline void total_and_peak(const memory_problem& problem, double lower, memory_solution& solution) {
  const std::size_t points = problem.base.size(), items = problem.items.size();
  double total = 0;
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
}

// The solution of components stopped before they start (solve_component: each item of a
// component at its smallest candidate, the bound its fastest), without building the components:
// an item in one is one alive at a binding point, and its component is its group. Adds each
// group's bound to `lower`; sets the binding items' choices, optimal and components.
inline void solve_stopped_groups(const memory_problem& problem, const candidate_fronts& fronts,
                                 const item_events& events, binding_groups& groups, double& lower,
                                 memory_solution& solution) {
  struct group_sum {
    double value = 0, bound = 0;
  };
  std::vector<group_sum> sum(problem.items.size());
  // In the order solve_component sums a component's items: by first point (events.starts).
  for (std::uint32_t p : events.starts) {
    if (!groups.binding_item[p]) continue;
    const std::uint32_t smallest = fronts.front(p).front(), fastest = fronts.fastest(p);
    solution.choice[p] = smallest;
    group_sum& g = sum[groups.find(p)];
    g.value += problem.items[p].candidates[smallest].extra.base();
    g.bound += problem.items[p].candidates[fastest].extra.base();
  }
  solution.optimal = true;
  for (std::size_t p = 0; p < problem.items.size(); ++p) {
    if (!groups.binding_item[p] || groups.find(std::uint32_t(p)) != p) continue;
    component_result r;
    r.value = sum[p].value;
    r.bound = sum[p].bound;
    close_if_proven(r);
    lower += r.bound;
    solution.optimal = solution.optimal && r.optimal;
    ++solution.components;
  }
}

// solve_memory_problem without its checks, for a caller that made them: the problem passes
// check_memory_problem_shape and first_infeasible_point finds nothing (the chooser checks the
// latter itself, to name the stage in its error).
inline memory_solution solve_checked_memory_problem(const memory_problem& problem,
                                                    const memory_solver_options& options) {
  const std::size_t items = problem.items.size();
  const detail::candidate_fronts fronts = detail::nondominated_fronts(problem);
  const detail::item_events events = detail::index_item_events(problem, fronts);
  const double cap = memory_cap_with_tolerance(problem.cap);
  detail::binding_groups groups = detail::group_binding_items(problem, events, cap);

  memory_solution solution;
  solution.choice.assign(items, 0);
  double lower = 0;
  for (std::size_t p = 0; p < items; ++p) {
    if (groups.binding_item[p]) continue;
    solution.choice[p] = fronts.fastest(p);
    lower += problem.items[p].candidates[fronts.fastest(p)].extra.base();
  }
  if (options.stop.stop_requested()) {
    // Stopped before the first component (a planner's deadline): what solving each would give
    // at once, in a fraction of the time building them takes.
    detail::solve_stopped_groups(problem, fronts, events, groups, lower, solution);
    detail::total_and_peak(problem, lower, solution);
    return solution;
  }
  const std::vector<detail::memory_component> components =
      detail::build_components(problem, fronts, events, groups, cap);

  solution.optimal = true;
  for (const detail::memory_component& c : components) {
    const detail::component_result r = detail::solve_component(c, options);
    for (std::size_t i = 0; i < c.size(); ++i) solution.choice[c.item[i]] = c.origin[c.cand_begin[i] + r.x[i]];
    lower += r.bound;
    solution.optimal = solution.optimal && r.optimal;
    solution.nodes += r.nodes;
  }
  solution.components = components.size();
  detail::total_and_peak(problem, lower, solution);
  return solution;
}

}  // namespace detail

// Chooses one candidate per item (see memory_problem). Items that meet no binding point (one
// where even the largest candidates might exceed the cap) take their fastest candidate; the
// others are grouped into components that share binding points, each solved by
// detail::solve_component. Throws dip::error(errc::infeasible) naming the first point where the
// smallest candidates exceed the cap, and errc::invalid_argument for a malformed problem.
inline memory_solution solve_memory_problem(const memory_problem& problem, const memory_solver_options& options = {}) {
  detail::check_memory_problem_shape(problem);
  if (const std::optional<infeasible_point> bad = first_infeasible_point(problem)) {
    throw error(errc::infeasible, "memory_problem point " + std::to_string(bad->point),
                "needs " + to_string(bad->needed) + " with every item at its smallest candidate, the cap is " +
                    to_string(problem.cap));
  }
  return detail::solve_checked_memory_problem(problem, options);
}

}  // namespace dip
