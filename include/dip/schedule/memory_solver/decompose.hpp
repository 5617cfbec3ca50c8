// dip memory solver, decomposition (internal): from a valid, feasible memory_problem to the
// components solve_component works on. Items that meet no binding point (one where even every
// item's largest candidate might exceed the cap) need no choice; the others are grouped
// (union-find over a sweep of the points) into components that share binding points, and each
// component is compressed into segments: runs of its binding points between events of its items.
// Cost: O(points + items * alpha + C log C) with C candidates in all.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "dip/schedule/memory_solver/component.hpp"
#include "dip/schedule/memory_solver/problem.hpp"

namespace dip::detail {

inline constexpr std::uint32_t no_index = std::numeric_limits<std::uint32_t>::max();

// Per item: its non-dominated candidates, kept ascending (time descending), as indices.
struct candidate_fronts {
  std::vector<std::uint32_t> index;       // every item's front, item after item
  std::vector<std::uint32_t> begin;       // per item (+1): where its front starts in index
  std::vector<double> smallest, largest;  // per item: kept bytes of front's first and last
  std::span<const std::uint32_t> front(std::size_t p) const noexcept {
    return {index.data() + begin[p], index.data() + begin[p + 1]};
  }
  std::uint32_t fastest(std::size_t p) const noexcept { return index[begin[p + 1] - 1]; }
};

// Every item must have a candidate. Candidates that select_candidates made are a front already
// (kept strictly ascending, time strictly descending) and are taken as they are; others are
// sorted by kept bytes, then time, then index, and each one strictly faster than all before it
// stays.
inline candidate_fronts nondominated_fronts(const memory_problem& problem) {
  const std::size_t items = problem.items.size();
  candidate_fronts fronts;
  fronts.begin.reserve(items + 1);
  fronts.begin.push_back(0);
  fronts.smallest.resize(items);
  fronts.largest.resize(items);
  std::vector<std::uint32_t> sorted;
  for (std::size_t p = 0; p < items; ++p) {
    const auto& cands = problem.items[p].candidates;
    const std::size_t first = fronts.index.size();
    bool is_front = true;
    for (std::size_t i = 1; i < cands.size() && is_front; ++i) {
      is_front = cands[i - 1].kept < cands[i].kept && cands[i].extra < cands[i - 1].extra;
    }
    if (is_front) {
      for (std::size_t i = 0; i < cands.size(); ++i) fronts.index.push_back(std::uint32_t(i));
    } else {
      sorted.resize(cands.size());
      std::iota(sorted.begin(), sorted.end(), 0u);
      std::sort(sorted.begin(), sorted.end(), [&](std::uint32_t a, std::uint32_t b) {
        if (cands[a].kept != cands[b].kept) return cands[a].kept < cands[b].kept;
        if (cands[a].extra != cands[b].extra) return cands[a].extra < cands[b].extra;
        return a < b;
      });
      for (std::uint32_t i : sorted) {  // keep one strictly faster than every smaller one
        if (fronts.index.size() == first || cands[i].extra < cands[fronts.index.back()].extra) {
          fronts.index.push_back(i);
        }
      }
    }
    fronts.begin.push_back(std::uint32_t(fronts.index.size()));
    fronts.smallest[p] = cands[fronts.index[first]].kept.base();
    fronts.largest[p] = cands[fronts.index.back()].kept.base();
  }
  return fronts;
}

// The items that start and end at each point (non-empty items only, p ascending within a
// point), and the loads of all items at their smallest and at their largest candidates as
// difference arrays (add up to get the load at a point).
struct item_events {
  std::vector<double> min_load, max_load;             // per point (+1): differences
  std::vector<std::uint32_t> start_begin, end_begin;  // per point (+2): offsets into starts, ends
  std::vector<std::uint32_t> starts, ends;            // items by the point where they start / end
};

inline item_events index_item_events(const memory_problem& problem, const candidate_fronts& fronts) {
  const std::size_t points = problem.base.size(), items = problem.items.size();
  item_events e;
  e.min_load.assign(points + 1, 0.0);
  e.max_load.assign(points + 1, 0.0);
  e.start_begin.assign(points + 2, 0);
  e.end_begin.assign(points + 2, 0);
  for (std::size_t p = 0; p < items; ++p) {
    const memory_item& item = problem.items[p];
    if (item.first >= item.last) continue;
    e.min_load[item.first] += fronts.smallest[p];
    e.min_load[item.last] -= fronts.smallest[p];
    e.max_load[item.first] += fronts.largest[p];
    e.max_load[item.last] -= fronts.largest[p];
    ++e.start_begin[item.first + 1];
    ++e.end_begin[item.last + 1];
  }
  for (std::size_t i = 0; i <= points; ++i) {
    e.start_begin[i + 1] += e.start_begin[i];
    e.end_begin[i + 1] += e.end_begin[i];
  }
  e.starts.assign(e.start_begin[points + 1], 0);
  e.ends.assign(e.end_begin[points + 1], 0);
  std::vector<std::uint32_t> sf(e.start_begin.begin(), e.start_begin.end() - 1),
      ef(e.end_begin.begin(), e.end_begin.end() - 1);
  for (std::size_t p = 0; p < items; ++p) {
    const memory_item& item = problem.items[p];
    if (item.first >= item.last) continue;
    e.starts[sf[item.first]++] = std::uint32_t(p);
    e.ends[ef[item.last]++] = std::uint32_t(p);
  }
  return e;
}

// Binding points and the groups of items that meet at them.
struct binding_groups {
  std::vector<std::uint32_t> parent;       // union-find over items
  std::vector<std::uint8_t> binding_item;  // per item: alive at some binding point
  std::vector<std::uint32_t> point_rep;    // per point: an item of the group binding there, or no_index
  std::vector<double> point_min;           // per point: base + every alive item at its smallest

  std::uint32_t find(std::uint32_t a) {
    while (parent[a] != a) a = parent[a] = parent[parent[a]];
    return a;
  }
};

// Sweeps the points: at each binding point every item alive there joins the group of the alive
// item that reaches furthest right. cap: memory_cap_with_tolerance of the problem's cap.
inline binding_groups group_binding_items(const memory_problem& problem, const item_events& e, double cap) {
  const std::size_t points = problem.base.size(), items = problem.items.size();
  binding_groups g;
  g.parent.resize(items);
  std::iota(g.parent.begin(), g.parent.end(), 0u);
  g.binding_item.assign(items, 0);
  g.point_rep.assign(points, no_index);
  g.point_min.resize(points);
  std::vector<std::uint32_t> pending;
  std::uint32_t rep = no_index;
  std::size_t rep_end = 0;
  double run_min = 0, run_max = 0;
  for (std::size_t i = 0; i < points; ++i) {
    for (std::uint32_t k = e.start_begin[i]; k < e.start_begin[i + 1]; ++k) pending.push_back(e.starts[k]);
    run_min += e.min_load[i];
    run_max += e.max_load[i];
    g.point_min[i] = problem.base[i].base() + run_min;
    if (problem.base[i].base() + run_max <= cap) continue;
    if (rep != no_index && rep_end <= i) rep = no_index;
    for (std::uint32_t p : pending) {
      if (problem.items[p].last <= i) continue;
      g.binding_item[p] = 1;
      if (rep == no_index) {
        rep = p;
        rep_end = problem.items[p].last;
      } else {
        g.parent[g.find(p)] = g.find(rep);
        if (problem.items[p].last > rep_end) {
          rep = p;
          rep_end = problem.items[p].last;
        }
      }
    }
    pending.clear();
    g.point_rep[i] = rep;  // none: nothing alive, and base fits (checked above)
  }
  return g;
}

// The components of the binding items, numbered by their first item, each with its items in
// order of their first point and their front candidates (time, kept above the smallest, origin).
// component_of and local_of (per problem item; no_index for items that need no choice) are set.
inline std::vector<memory_component> collect_components(const memory_problem& problem, const candidate_fronts& fronts,
                                                        const item_events& e, binding_groups& groups,
                                                        std::vector<std::uint32_t>& component_of,
                                                        std::vector<std::uint32_t>& local_of) {
  const std::size_t points = problem.base.size(), items = problem.items.size();
  component_of.assign(items, no_index);
  local_of.assign(items, no_index);
  std::vector<memory_component> components;
  for (std::size_t p = 0; p < items; ++p) {
    if (!groups.binding_item[p]) continue;
    const std::uint32_t root = groups.find(std::uint32_t(p));
    if (component_of[root] == no_index) {
      component_of[root] = std::uint32_t(components.size());
      components.emplace_back();
    }
    component_of[p] = component_of[root];
  }
  // Items of a component in order of their first point (p ascending within a start point).
  for (std::size_t i = 0; i < points; ++i) {
    for (std::uint32_t k = e.start_begin[i]; k < e.start_begin[i + 1]; ++k) {
      const std::uint32_t p = e.starts[k];
      if (component_of[p] == no_index) continue;
      memory_component& c = components[component_of[p]];
      local_of[p] = std::uint32_t(c.item.size());
      c.item.push_back(p);
    }
  }
  for (memory_component& c : components) {
    c.sa.assign(c.size(), 0);
    c.sb.assign(c.size(), 0);
    c.cand_begin.push_back(0);
    for (std::uint32_t p : c.item) {
      const auto& cands = problem.items[p].candidates;
      for (std::uint32_t i : fronts.front(p)) {
        c.time.push_back(cands[i].extra.base());
        c.dk.push_back(cands[i].kept.base() - fronts.smallest[p]);
        c.origin.push_back(i);
      }
      c.cand_begin.push_back(std::uint32_t(c.time.size()));
    }
  }
  return components;
}

// Segments: runs of a component's binding points between events of its items. Sets each
// component's slack (the least cap - point_min over the run) and its items' [sa, sb).
inline void cut_segments(const memory_problem& problem, const item_events& e, binding_groups& groups, double cap,
                         const std::vector<std::uint32_t>& component_of, const std::vector<std::uint32_t>& local_of,
                         std::vector<memory_component>& components) {
  const std::size_t points = problem.base.size(), items = problem.items.size();
  std::vector<std::uint32_t> events(components.size(), 0), seen(components.size(), no_index);
  for (std::size_t i = 0; i < points; ++i) {
    for (std::uint32_t k = e.end_begin[i]; k < e.end_begin[i + 1]; ++k) {
      const std::uint32_t p = e.ends[k];
      if (component_of[p] == no_index) continue;
      memory_component& c = components[component_of[p]];
      c.sb[local_of[p]] = std::uint32_t(c.slack.size());
      ++events[component_of[p]];
    }
    for (std::uint32_t k = e.start_begin[i]; k < e.start_begin[i + 1]; ++k) {
      const std::uint32_t p = e.starts[k];
      if (component_of[p] == no_index) continue;
      memory_component& c = components[component_of[p]];
      c.sa[local_of[p]] = std::uint32_t(c.slack.size());
      ++events[component_of[p]];
    }
    if (groups.point_rep[i] == no_index) continue;
    const std::uint32_t k = component_of[groups.find(groups.point_rep[i])];
    memory_component& c = components[k];
    const double slack = cap - groups.point_min[i];
    if (seen[k] != events[k] || c.slack.empty()) {
      c.slack.push_back(slack);
      seen[k] = events[k];
    } else {
      c.slack.back() = std::min(c.slack.back(), slack);
    }
  }
  for (std::size_t p = 0; p < items; ++p) {
    if (component_of[p] == no_index || problem.items[p].last != points) continue;
    memory_component& c = components[component_of[p]];
    c.sb[local_of[p]] = std::uint32_t(c.slack.size());
  }
}

// The components of a problem, in order of their first item. The problem must be valid and
// feasible (solve.hpp checks); cap: memory_cap_with_tolerance(problem.cap). groups (from
// group_binding_items) tells which items are in none.
inline std::vector<memory_component> build_components(const memory_problem& problem, const candidate_fronts& fronts,
                                                      const item_events& e, binding_groups& groups, double cap) {
  std::vector<std::uint32_t> component_of, local_of;
  std::vector<memory_component> components = collect_components(problem, fronts, e, groups, component_of, local_of);
  cut_segments(problem, e, groups, cap, component_of, local_of, components);
  return components;
}

}  // namespace dip::detail
