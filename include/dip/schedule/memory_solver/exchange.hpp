// dip memory solver, local search by exchange (internal): improves a feasible choice of a
// component by moves that make one item faster and pay for its bytes with others (or the
// reverse), kept only when the total time falls. Used on the incumbent before branch and bound.
// Cost per pass: O(n * K * span * (A * K)) at most, with K candidates per item, A items alive at
// a segment, span the segments an item covers; at most `max_passes` passes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "dip/schedule/memory_solver/component.hpp"

namespace dip::detail {

// The state of one exchange search over a feasible choice `x` (changed in place): the load of
// each segment, the items covering it, and the changes of the move being tried, to undo it.
// Holds references to c and x: both must outlive it.
class exchange_search {
 public:
  exchange_search(const memory_component& c, std::vector<std::uint32_t>& x)
      : c_(c), x_(x), load_(c.slack.size(), 0.0), cover_(c.slack.size()) {
    for (std::size_t i = 0; i < c_.size(); ++i) {
      for (std::size_t s = c_.sa[i]; s < c_.sb[i]; ++s) {
        load_[s] += c_.k(i, x_[i]);
        cover_[s].push_back(std::uint32_t(i));
      }
    }
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
      for (std::size_t s = c_.sa[i]; s < c_.sb[i] && ok; ++s) {
        while (ok && !fits(load_[s], s)) {
          const double excess = load_[s] - c_.slack[s];
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
        changed_.clear();
        return true;
      }
      undo_all();
    }
    return false;
  }

  // The reverse move: makes item i smaller (smallest candidate first) and spends the bytes it
  // frees on others, each step the largest time saved per byte that still fits everywhere the
  // other item lives. Keeps the first move that lowers the total time; returns whether one did.
  bool make_smaller(std::uint32_t i) {
    for (std::uint32_t to = 0; to < x_[i]; ++to) {
      const double cost = c_.t(i, to) - c_.t(i, x_[i]);
      changed_.clear();
      set_choice(i, to);
      double gain = 0;
      while (true) {
        double best_ratio = 0;
        std::uint32_t best_item = 0, best_to = 0;
        for (std::size_t s = c_.sa[i]; s < c_.sb[i]; ++s) {
          for (std::uint32_t j : cover_[s]) {
            if (j == i || s != std::max<std::size_t>(c_.sa[i], c_.sa[j])) continue;  // each j once
            for (std::uint32_t up = x_[j] + 1; up < c_.count(j); ++up) {
              const double more = c_.k(j, up) - c_.k(j, x_[j]);
              bool room = true;
              for (std::size_t q = c_.sa[j]; q < c_.sb[j] && room; ++q) room = fits(load_[q] + more, q);
              if (!room) continue;
              const double ratio = (c_.t(j, x_[j]) - c_.t(j, up)) / std::max(more, 1.0);
              if (ratio > best_ratio) {
                best_ratio = ratio;
                best_item = j;
                best_to = up;
              }
            }
          }
        }
        if (best_ratio <= 0) break;
        gain += c_.t(best_item, x_[best_item]) - c_.t(best_item, best_to);
        set_choice(best_item, best_to);
      }
      if (gain > cost + 1e-12 * std::max(cost, 1e-300)) {
        changed_.clear();
        return true;
      }
      undo_all();
    }
    return false;
  }

 private:
  void set_choice(std::uint32_t j, std::uint32_t to) {
    const double delta = c_.k(j, to) - c_.k(j, x_[j]);
    for (std::size_t s = c_.sa[j]; s < c_.sb[j]; ++s) load_[s] += delta;
    changed_.push_back({j, x_[j]});
    x_[j] = to;
  }

  void undo_all() {
    while (!changed_.empty()) {
      const auto [j, before] = changed_.back();
      changed_.pop_back();
      const double delta = c_.k(j, before) - c_.k(j, x_[j]);
      for (std::size_t s = c_.sa[j]; s < c_.sb[j]; ++s) load_[s] += delta;
      x_[j] = before;
    }
  }

  bool fits(double value, std::size_t s) const { return value <= c_.slack[s]; }

  const memory_component& c_;
  std::vector<std::uint32_t>& x_;
  std::vector<double> load_;
  std::vector<std::vector<std::uint32_t>> cover_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> changed_;  // (item, its choice before)
};

// Local search by exchange, for the choices repair and the diagram leave: make item i faster
// and pay for the bytes it adds where it overflows by making other items smaller, each step
// the cheapest in time per byte still missing; keep the move when the total time falls.
// Repair alone never makes an item faster at another's expense, and on pipeline ranks with a
// few large items (an LLM chunk's activations next to many small encoder ones) that exchange is
// where most of the remaining time is. Passes repeat until none improves (at most
// `max_passes`). Returns the total time of `x`, which must be feasible.
inline double improve_by_exchange(const memory_component& c, std::vector<std::uint32_t>& x, int max_passes = 4) {
  const std::size_t n = c.size();
  exchange_search search(c, x);
  for (int pass = 0; pass < max_passes; ++pass) {
    bool improved = false;
    for (std::uint32_t i = 0; i < n; ++i) {
      const bool moved = search.make_faster(i);
      improved = improved || moved;
      if (moved) continue;
      if (search.make_smaller(i)) improved = true;
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
                                          component_result& result) {
  std::vector<std::vector<std::uint32_t>> starts{result.x};
  if (before_diagram != result.x) starts.push_back(std::move(before_diagram));
  for (std::vector<std::uint32_t>& y : starts) {
    const double v = improve_by_exchange(c, y);
    if (v < result.value) {
      result.value = v;
      result.x = std::move(y);
    }
  }
}

}  // namespace dip::detail
