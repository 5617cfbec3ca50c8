// dip memory solver, local search by exchange (internal): improves a feasible choice of a
// component by moves that make one item faster and pay for its bytes with others (or the
// reverse), kept only when the total time falls. Used on the incumbent before branch and bound.
// Cost per pass: O(n * K * (A * K) * log S) at most, with K candidates per item, A items alive at
// a segment, S segments (headroom_tree answers the range questions); at most `max_passes` passes.
// After the first pass only the items near a kept move are tried again (the others would fail as
// before): on the paper's largest ranks this cut the whole planning time by 4-40%.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <stop_token>
#include <utility>
#include <vector>

#include "dip/schedule/memory_solver/component.hpp"
#include "dip/schedule/memory_solver/headroom_tree.hpp"

namespace dip::detail {

// The state of one exchange search over a feasible choice `x` (changed in place): the load of
// each segment, the items covering it, and the changes of the move being tried, to undo it.
// Holds references to c and x: both must outlive it.
class exchange_search {
 public:
  exchange_search(const memory_component& c, std::vector<std::uint32_t>& x)
      : c_(c), x_(x), headroom_(initial_headroom(c, x)), cover_(c.slack.size()), by_start_(c.size()) {
    for (std::size_t i = 0; i < c_.size(); ++i) {
      for (std::size_t s = c_.sa[i]; s < c_.sb[i]; ++s) cover_[s].push_back(std::uint32_t(i));
    }
    std::iota(by_start_.begin(), by_start_.end(), 0u);
    std::stable_sort(by_start_.begin(), by_start_.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return c_.sa[a] < c_.sa[b]; });
  }

  // Makes item i faster (fastest candidate first) and pays for the bytes it adds where it
  // overflows by making other items smaller, each step the cheapest in time per byte still
  // missing. Keeps the first move that lowers the total time; returns whether one did.
  bool make_faster(std::uint32_t i) {
    for (std::uint32_t to = c_.count(i) - 1; to > x_[i]; --to) {
      const double gain = c_.t(i, x_[i]) - c_.t(i, to);
      double cost = 0;
      changed_.clear();
      set_choice(i, to);
      bool ok = true;
      // Segments left to right, each while it overflows; making others smaller never makes an
      // earlier segment overflow again.
      for (std::size_t s = headroom_.first_below(c_.sa[i], c_.sb[i], 0.0); s < c_.sb[i] && ok;
           s = headroom_.first_below(s + 1, c_.sb[i], 0.0)) {
        while (ok && headroom_.at(s) < 0) {
          const double excess = -headroom_.at(s);
          double best_ratio = std::numeric_limits<double>::infinity();
          std::uint32_t best_item = 0, best_to = 0;
          for (std::uint32_t j : cover_[s]) {
            if (j == i) continue;
            for (std::uint32_t down = 0; down < x_[j]; ++down) {
              const double saved = c_.k(j, x_[j]) - c_.k(j, down);
              if (saved <= 0) continue;
              const double ratio = (c_.t(j, down) - c_.t(j, x_[j])) / std::min(saved, excess);
              if (ratio < best_ratio) {
                best_ratio = ratio;
                best_item = j;
                best_to = down;
              }
            }
          }
          if (!std::isfinite(best_ratio)) {
            ok = false;
            break;
          }
          cost += c_.t(best_item, best_to) - c_.t(best_item, x_[best_item]);
          ok = cost < gain;
          set_choice(best_item, best_to);
        }
      }
      if (ok && cost < gain - 1e-12 * std::max(gain, 1e-300)) {
        commit();
        return true;
      }
      undo_all();
    }
    return false;
  }

  // The segments [from, to) of each item a kept move changed, in the order kept.
  const std::vector<std::pair<std::uint32_t, std::uint32_t>>& committed() const noexcept { return committed_; }

  // The segments make_faster(i) and make_smaller(i) read: those of every item that shares a
  // segment with i (their choices, and the headroom over their segments). While no kept move
  // changes an item over these segments, trying i again gives the same answer.
  std::pair<std::uint32_t, std::uint32_t> reach(std::uint32_t i) const {
    std::uint32_t from = c_.sa[i], to = c_.sb[i];
    for_each_sharing(i, [&](std::uint32_t j) {
      from = std::min<std::uint32_t>(from, c_.sa[j]);
      to = std::max<std::uint32_t>(to, c_.sb[j]);
    });
    return {from, to};
  }

  // The reverse move: makes item i smaller (smallest candidate first) and spends the bytes it
  // frees on others, each step the largest time saved per byte that still fits everywhere the
  // other item lives. Keeps the first move that lowers the total time; returns whether one did.
  //
  // Whether a step fits asks for the least headroom over the other item's segments. Headroom
  // only falls while the freed bytes are spent (candidates grow in bytes), and a later (larger)
  // candidate of i frees fewer: so one answer stays an upper bound for the rest of the step (and,
  // when asked before the first step is spent, for the later candidates of i too). A step larger
  // than the bound cannot fit; only the others ask the tree, at most once per item between changes
  // within its range. The answers are those a query per step would give, so is the move.
  bool make_smaller(std::uint32_t i) {
    // The others that share a segment with i and have a larger candidate, in scan order. Moves
    // only grow the others, so one at its largest stays there.
    neighbours_.clear();
    for_each_sharing(i, [&](std::uint32_t j) {
      if (j != i && x_[j] + 1 < c_.count(j)) neighbours_.push_back(j);
    });
    const std::size_t a = neighbours_.size();
    first_bound_.assign(a, std::numeric_limits<double>::infinity());
    for (std::uint32_t to = 0; to < x_[i]; ++to) {
      const double cost = c_.t(i, to) - c_.t(i, x_[i]);
      changed_.clear();
      set_choice(i, to);
      double gain = 0;
      bound_ = first_bound_;
      exact_.assign(a, 0);
      bool spent = false;  // whether a step has been taken for this candidate of i
      while (true) {
        double best_ratio = 0;
        std::uint32_t best_position = 0, best_to = 0;
        for (std::uint32_t p = 0; p < a; ++p) {
          const std::uint32_t j = neighbours_[p];
          for (std::uint32_t up = x_[j] + 1; up < c_.count(j); ++up) {
            const double more = c_.k(j, up) - c_.k(j, x_[j]);
            if (more > bound_[p]) break;  // neither this step nor a larger one fits
            const double ratio = (c_.t(j, x_[j]) - c_.t(j, up)) / std::max(more, 1.0);
            if (ratio <= best_ratio) continue;
            if (!exact_[p]) {
              bound_[p] = headroom_.least(c_.sa[j], c_.sb[j]);
              exact_[p] = 1;
              if (!spent) first_bound_[p] = bound_[p];
              if (more > bound_[p]) break;
            }
            best_ratio = ratio;
            best_position = p;
            best_to = up;
          }
        }
        if (best_ratio <= 0) break;
        const std::uint32_t best_item = neighbours_[best_position];
        gain += c_.t(best_item, x_[best_item]) - c_.t(best_item, best_to);
        set_choice(best_item, best_to);
        spent = true;
        for (std::uint32_t p = 0; p < a; ++p) {
          const std::uint32_t j = neighbours_[p];
          if (c_.sa[j] < c_.sb[best_item] && c_.sa[best_item] < c_.sb[j]) exact_[p] = 0;
        }
      }
      if (gain > cost + 1e-12 * std::max(cost, 1e-300)) {
        commit();
        return true;
      }
      undo_all();
    }
    return false;
  }

 private:
  static headroom_tree initial_headroom(const memory_component& c, const std::vector<std::uint32_t>& x) {
    std::vector<double> load(c.slack.size() + 1, 0.0);
    for (std::size_t i = 0; i < c.size(); ++i) {
      load[c.sa[i]] += c.k(i, x[i]);
      load[c.sb[i]] -= c.k(i, x[i]);
    }
    std::vector<double> headroom(c.slack.size());
    double run = 0;
    for (std::size_t s = 0; s < headroom.size(); ++s) {
      run += load[s];
      headroom[s] = c.slack[s] - run;
    }
    return headroom_tree(headroom);
  }

  void set_choice(std::uint32_t j, std::uint32_t to) {
    headroom_.add(c_.sa[j], c_.sb[j], c_.k(j, x_[j]) - c_.k(j, to));
    changed_.push_back({j, x_[j]});
    x_[j] = to;
  }

  // Keeps the move being tried: logs the segments of every item it changed.
  void commit() {
    for (const auto& [j, before] : changed_) committed_.push_back({c_.sa[j], c_.sb[j]});
    changed_.clear();
  }

  void undo_all() {
    while (!changed_.empty()) {
      const auto [j, before] = changed_.back();
      changed_.pop_back();
      headroom_.add(c_.sa[j], c_.sb[j], c_.k(j, x_[j]) - c_.k(j, before));
      x_[j] = before;
    }
  }

  // Calls f(j) once for every item j that shares a segment with i, i itself included: those
  // alive at i's first segment (by index), then those that start inside i's range (by start):
  // the order of a scan over i's segments. Nothing for an item without segments.
  template <class F>
  void for_each_sharing(std::uint32_t i, F&& f) const {
    if (c_.sa[i] >= c_.sb[i]) return;
    for (std::uint32_t j : cover_[c_.sa[i]]) f(j);
    for (std::uint32_t j : starting_inside(i)) f(j);
  }

  // The items whose first segment lies in (sa[i], sb[i]), by first segment then index.
  std::span<const std::uint32_t> starting_inside(std::uint32_t i) const {
    const auto first_after = [&](std::uint32_t segment) {
      return std::partition_point(by_start_.begin(), by_start_.end(),
                                  [&](std::uint32_t j) { return c_.sa[j] <= segment; });
    };
    if (c_.sa[i] >= c_.sb[i]) return {};
    const auto from = first_after(c_.sa[i]), to = first_after(c_.sb[i] - 1);
    return {from, to};
  }

  const memory_component& c_;
  std::vector<std::uint32_t>& x_;
  headroom_tree headroom_;                                          // per segment: slack - load of the current choice
  std::vector<std::vector<std::uint32_t>> cover_;                   // per segment: the items alive there, by index
  std::vector<std::uint32_t> by_start_;                             // items by first segment (then index)
  std::vector<std::pair<std::uint32_t, std::uint32_t>> changed_;    // (item, its choice before)
  std::vector<std::pair<std::uint32_t, std::uint32_t>> committed_;  // segments of each kept change
  // make_smaller's scratch, per item it may grow (in scan order): the least headroom over its
  // segments, an upper bound unless exact_; first_bound_ holds those asked before any step.
  std::vector<std::uint32_t> neighbours_;
  std::vector<double> bound_, first_bound_;
  std::vector<char> exact_;
};

// Local search by exchange, for the choices repair and the diagram leave: make item i faster
// and pay for the bytes it adds where it overflows by making other items smaller, each step
// the cheapest in time per byte still missing; keep the move when the total time falls.
// Repair alone never makes an item faster at another's expense, and on pipeline ranks with a
// few large items (an LLM chunk's activations next to many small encoder ones) that exchange is
// where most of the remaining time is. Passes repeat until none improves (at most
// `max_passes`; fewer once `stop` is requested: every move keeps x feasible). Returns the total
// time of `x`, which must be feasible.
inline double improve_by_exchange(const memory_component& c, std::vector<std::uint32_t>& x, int max_passes = 4,
                                  const std::stop_token& stop = {}) {
  const std::size_t n = c.size();
  exchange_search search(c, x);
  // An item tried without a move is tried again only once a kept move has changed an item
  // within its reach: until then it would fail the same way.
  constexpr std::size_t never = std::numeric_limits<std::size_t>::max();
  std::vector<std::size_t> failed_at(n, never);  // committed().size() when i last failed
  std::vector<std::pair<std::uint32_t, std::uint32_t>> reach(n);
  for (std::uint32_t i = 0; i < n; ++i) reach[i] = search.reach(i);
  const auto unchanged_since_failure = [&](std::uint32_t i) {
    if (failed_at[i] == never) return false;
    const auto& log = search.committed();
    for (std::size_t e = failed_at[i]; e < log.size(); ++e) {
      if (log[e].first < reach[i].second && reach[i].first < log[e].second) return false;
    }
    return true;
  };
  for (int pass = 0; pass < max_passes && !stop.stop_requested(); ++pass) {
    bool improved = false;
    for (std::uint32_t i = 0; i < n && !stop.stop_requested(); ++i) {
      if (unchanged_since_failure(i)) continue;
      const std::size_t log_size = search.committed().size();
      const bool moved = search.make_faster(i) || search.make_smaller(i);
      failed_at[i] = moved ? never : log_size;
      improved = improved || moved;
    }
    if (!improved) break;
  }
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) total += c.t(i, x[i]);
  return total;
}

// The exchange step of solve_component: runs improve_by_exchange from the incumbent and, when it
// differs, from `before_diagram` (the incumbent before the decision diagram: a better start
// does not always reach the better local optimum); the fastest result becomes the incumbent.
inline void improve_incumbent_by_exchange(const memory_component& c, std::vector<std::uint32_t> before_diagram,
                                          component_result& result, const std::stop_token& stop = {}) {
  std::vector<std::vector<std::uint32_t>> starts{result.x};
  if (before_diagram != result.x) starts.push_back(std::move(before_diagram));
  for (std::vector<std::uint32_t>& y : starts) {
    const double v = improve_by_exchange(c, y, 4, stop);
    if (v < result.value) {
      result.value = v;
      result.x = std::move(y);
    }
  }
}

}  // namespace dip::detail
