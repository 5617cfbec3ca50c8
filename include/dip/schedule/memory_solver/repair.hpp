// dip memory solver, the repair heuristic (internal): turns any choice of a component, feasible
// or not (all-fastest, a Lagrangian relaxation's choice), into a feasible one and spends the room
// left on faster candidates. Every primal solution of solve_component starts here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "dip/schedule/memory_solver/component.hpp"
#include "dip/schedule/memory_solver/headroom_tree.hpp"

namespace dip::detail {

// Repairs `x` to feasibility (left to right: at a segment over its slack, move the alive item
// whose step down to a smaller candidate costs least time per byte needed) and then upgrades
// items to faster candidates where they still fit. Returns the total time.
// x: one valid local candidate per item; the component's slack is >= 0 (all-smallest fits), so
// the result is feasible. load and alive are scratch, overwritten. Cost: O(n log n + S log S +
// M * A * K + n * K * log S), with S segments, A items alive at a segment, K candidates per item,
// M the moves made (headroom_tree answers the range questions).
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
  for (std::size_t s = 0; s < m; ++s) load[s] = c.slack[s] - load[s];
  load.resize(m);
  headroom_tree headroom(load);
  // Items enter `alive` at their first segment and leave after their last (swap with the back).
  std::vector<std::vector<std::uint32_t>> ending(m + 1);
  for (std::size_t i = 0; i < n; ++i) ending[c.sb[i]].push_back(std::uint32_t(i));
  std::vector<std::uint32_t> slot(n, 0);
  alive.clear();
  std::size_t next = 0;
  for (std::size_t s = 0; s < m; ++s) {
    for (std::uint32_t i : ending[s]) {
      if (c.sa[i] >= s) continue;  // never entered
      const std::uint32_t moved = alive.back();
      alive[slot[i]] = moved;
      slot[moved] = slot[i];
      alive.pop_back();
    }
    while (next < n && c.sa[next] <= s) {
      if (c.sb[next] > s) {
        slot[next] = std::uint32_t(alive.size());
        alive.push_back(std::uint32_t(next));
      }
      ++next;
    }
    double excess = -headroom.at(s);
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
      headroom.add(c.sa[best_item], c.sb[best_item], c.k(best_item, x[best_item]) - c.k(best_item, best_cand));
      x[best_item] = best_cand;
      excess = -headroom.at(s);
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
      if (headroom.least(c.sa[i], c.sb[i]) < more) continue;
      headroom.add(c.sa[i], c.sb[i], -more);
      x[i] = to;
      break;
    }
  }
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) total += c.t(i, x[i]);
  return total;
}

// Repairs a copy of `x` (repair_and_improve) and makes it the incumbent of `result` when it is
// faster. The step every Lagrangian ascent takes on its relaxed choices.
inline void repair_and_offer(const memory_component& c, const std::vector<std::uint32_t>& x, component_result& result,
                             std::vector<double>& load, std::vector<std::uint32_t>& alive) {
  std::vector<std::uint32_t> y = x;
  const double v = repair_and_improve(c, y, load, alive);
  if (v < result.value) {
    result.value = v;
    result.x = std::move(y);
  }
}

}  // namespace dip::detail
