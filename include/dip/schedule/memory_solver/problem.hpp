// dip memory solver, the problem (DIP phase 3): points on a line, items over intervals of
// points, a few (kept bytes, extra time) candidates per item, a memory cap; the options and the
// solution of solve_memory_problem (solve.hpp), and the two checks every method shares: the
// cap's tolerance and the first point no choice fits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stop_token>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/plan.hpp"

namespace dip {

// --- candidates -------------------------------------------------------------------------------

struct strategy_candidate {
  memory_strategy strategy = memory_strategy::keep;
  duration extra{};  // forward_extra + backward_extra
  bytes kept{};
  friend bool operator==(const strategy_candidate&, const strategy_candidate&) = default;
};

// One item's candidates. Phase 3 offers a pair at most memory_strategy_model::max_candidates
// (3 by default), so they are held inline: a rank's problem has one list per forward (13104 at
// PP 16 x 64), and a heap block each was a quarter of building it.
using candidate_list = boost::container::small_vector<strategy_candidate, 3>;

namespace detail {

// select_candidates in place: `all` becomes the selection (see there).
template <class List>
void keep_selected_candidates(List& all, std::size_t max_count) {
  require(max_count >= 1, errc::invalid_argument, "memory_strategy_model.max_candidates", "must be >= 1");
  const auto before = [](const strategy_candidate& a, const strategy_candidate& b) {
    return a.kept < b.kept || (a.kept == b.kept && a.extra < b.extra);
  };
  if (all.size() <= 16) {  // a handful: insertion sort, stable and without a buffer
    for (std::size_t i = 1; i < all.size(); ++i) {
      for (std::size_t j = i; j > 0 && before(all[j], all[j - 1]); --j) std::swap(all[j], all[j - 1]);
    }
  } else {
    std::stable_sort(all.begin(), all.end(), before);
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (kept == 0 || all[i].extra < all[kept - 1].extra) all[kept++] = all[i];
  }
  all.resize(kept);
  if (all.size() <= max_count) return;
  const List& front = all;
  if (max_count == 1) {
    all = List{front.back()};
    return;
  }
  List chosen{front.front()};
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
  all = std::move(chosen);
}

}  // namespace detail

// At most `max_count` candidates of `all`, non-dominated (no other is as fast and as small;
// of equal ones the first stays), sorted by kept bytes ascending (so time descending): the
// fastest, the smallest, and the fastest in each of max_count - 2 equal-width buckets of kept
// bytes between them. Throws dip::error(errc::invalid_argument) for max_count 0. `List` is a
// std::vector (the default, also for a braced list) or a candidate_list.
// Ordered by kept bytes, then time, stably, a candidate is non-dominated exactly when it is
// faster than every one before it.
template <class List = std::vector<strategy_candidate>>
List select_candidates(List all, std::size_t max_count) {
  detail::keep_selected_candidates(all, max_count);
  return all;
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
  candidate_list candidates;
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
  std::size_t dd_width = 64;        // decision-diagram states per layer (0: none)
  bool local_search = true;         // exchange moves on the incumbent before branch and bound
  // Stops the methods early (a planner whose deadline passed): each component keeps the feasible
  // choice it has, and its bound as proven so far.
  std::stop_token stop{};
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

// The first point no choice fits, or nothing. Items must lie inside the points (last <= points);
// empty items and items without candidates are skipped. O(points + candidates).
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

}  // namespace dip
