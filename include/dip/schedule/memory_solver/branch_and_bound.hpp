// dip memory solver, branch and bound (internal): depth-first over a component's items in order
// of their first segment, candidates by reduced cost, pruned by the Lagrangian bound (constant +
// reduced costs), by the all-fastest time of the items left and by memory. Proves the incumbent
// optimal when it runs to the end; otherwise stops after `node_limit` nodes.
// Cost: O(C log K) to order candidates, then O(log S) per node (headroom_tree), at most
// node_limit nodes (with C candidates, K per item, S segments); exponential without a limit.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stop_token>
#include <vector>

#include "dip/schedule/memory_solver/component.hpp"
#include "dip/schedule/memory_solver/headroom_tree.hpp"

namespace dip::detail {

// Searches for a choice faster than result.value (result.x must be feasible, its incumbent)
// and makes the best found the incumbent; sets result.nodes, and result.optimal with
// result.bound = result.value when the search was complete. reduced: one reduced cost per
// candidate and `constant`, such that constant + the sum of the chosen reduced costs is a lower
// bound on the total time of any feasible choice that completes a partial one.
// Stops early, incomplete, once `stop` is requested (checked every 256 nodes).
inline void branch_and_bound(const memory_component& c, const std::vector<double>& reduced, double constant,
                             std::size_t node_limit, component_result& result, const std::stop_token& stop = {}) {
  const std::size_t n = c.size(), total_cands = c.time.size();
  std::vector<std::uint32_t> x(n);
  headroom_tree headroom(c.slack);  // slack minus the load of the items placed so far
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
  std::vector<std::uint32_t> next(n + 1, 0);
  std::vector<double> reduced_acc(n + 1, 0.0), time_acc(n + 1, 0.0);
  std::size_t depth = 0, nodes = 0;
  bool complete = true;
  const auto undo = [&](std::size_t i) {
    const double k = c.k(i, x[i]);
    if (k != 0) headroom.add(c.sa[i], c.sb[i], k);
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
    const double prune_at = result.value - proof_tolerance(result.value);
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
      if (dk != 0) {
        if (headroom.least(c.sa[i], c.sb[i]) < dk) continue;
        headroom.add(c.sa[i], c.sb[i], -dk);
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
      if (++nodes >= node_limit || (nodes % 256 == 0 && stop.stop_requested())) {
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
}

}  // namespace dip::detail
