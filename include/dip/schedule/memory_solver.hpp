// dip memory solver (DIP phase 3): the abstract per-rank problem behind the memory-strategy
// chooser, and its solver. Kept apart from the stage-graph rules (memory_strategy.hpp) because
// it knows nothing of stages: points on a line, items over intervals of points, a few
// (kept bytes, extra time) candidates per item, a memory cap.
//
// solve_memory_problem splits a problem into independent components and solves each with a
// repair heuristic, two Lagrangian relaxations (knapsack rows and covers), a decision diagram
// (exact while few items are alive at once; otherwise a restricted run for a solution and a
// relaxed one for a bound) and node-limited branch and bound. See docs/memory-strategies.md for
// the method and the measured gaps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/core/ids.hpp"
#include "dip/schedule/plan.hpp"

namespace dip {

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
  std::size_t dd_width = 64;        // decision-diagram states per layer (0: none)
  bool local_search = true;         // exchange moves on the incumbent before branch and bound
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

// Local search by exchange, for the choices repair and the diagram leave: make item i faster
// and pay for the bytes it adds where it overflows by making other items smaller, each step
// the cheapest in time per byte still missing; keep the move when the total time falls.
// Repair alone never makes an item faster at another's expense, and on pipeline ranks with a
// few large items (an LLM chunk's activations next to many small encoder ones) that exchange is
// where most of the remaining time is. Passes repeat until none improves (at most
// `max_passes`). Returns the total time of `x`, which must be feasible.
inline double improve_by_exchange(const memory_component& c, std::vector<std::uint32_t>& x, int max_passes = 4) {
  const std::size_t n = c.size(), m = c.slack.size();
  std::vector<double> load(m, 0.0);
  std::vector<std::vector<std::uint32_t>> cover(m);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t s = c.sa[i]; s < c.sb[i]; ++s) {
      load[s] += c.k(i, x[i]);
      cover[s].push_back(std::uint32_t(i));
    }
  }
  std::vector<std::pair<std::uint32_t, std::uint32_t>> changed;  // (item, its choice before)
  const auto set_choice = [&](std::uint32_t j, std::uint32_t to) {
    const double delta = c.k(j, to) - c.k(j, x[j]);
    for (std::size_t s = c.sa[j]; s < c.sb[j]; ++s) load[s] += delta;
    changed.push_back({j, x[j]});
    x[j] = to;
  };
  const auto undo_all = [&] {
    while (!changed.empty()) {
      const auto [j, before] = changed.back();
      changed.pop_back();
      const double delta = c.k(j, before) - c.k(j, x[j]);
      for (std::size_t s = c.sa[j]; s < c.sb[j]; ++s) load[s] += delta;
      x[j] = before;
    }
  };
  const auto fits = [&](double value, std::size_t s) { return value <= c.slack[s]; };
  for (int pass = 0; pass < max_passes; ++pass) {
    bool improved = false;
    for (std::uint32_t i = 0; i < n; ++i) {
      bool moved = false;
      for (std::uint32_t to = c.count(i) - 1; to > x[i]; --to) {
        const double gain = c.t(i, x[i]) - c.t(i, to);
        double cost = 0;
        changed.clear();
        set_choice(i, to);
        bool ok = true;
        for (std::size_t s = c.sa[i]; s < c.sb[i] && ok; ++s) {
          while (ok && !fits(load[s], s)) {
            const double excess = load[s] - c.slack[s];
            double best_ratio = std::numeric_limits<double>::infinity();
            std::uint32_t best_item = 0, best_to = 0;
            for (std::uint32_t j : cover[s]) {
              if (j == i) continue;
              for (std::uint32_t down = 0; down < x[j]; ++down) {
                const double saved = c.k(j, x[j]) - c.k(j, down);
                if (saved <= 0) continue;
                const double ratio = (c.t(j, down) - c.t(j, x[j])) / std::min(saved, excess);
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
            cost += c.t(best_item, best_to) - c.t(best_item, x[best_item]);
            ok = cost < gain;
            set_choice(best_item, best_to);
          }
        }
        if (ok && cost < gain - 1e-12 * std::max(gain, 1e-300)) {
          changed.clear();
          moved = true;
          break;
        }
        undo_all();
      }
      improved = improved || moved;
      if (moved) continue;
      // The reverse move: make item i smaller and spend the bytes it frees on others, each step
      // the largest time saved per byte that still fits everywhere the other item lives.
      for (std::uint32_t to = 0; to < x[i]; ++to) {
        const double cost = c.t(i, to) - c.t(i, x[i]);
        changed.clear();
        set_choice(i, to);
        double gain = 0;
        while (true) {
          double best_ratio = 0;
          std::uint32_t best_item = 0, best_to = 0;
          for (std::size_t s = c.sa[i]; s < c.sb[i]; ++s) {
            for (std::uint32_t j : cover[s]) {
              if (j == i || s != std::max<std::size_t>(c.sa[i], c.sa[j])) continue;  // each j once
              for (std::uint32_t up = x[j] + 1; up < c.count(j); ++up) {
                const double more = c.k(j, up) - c.k(j, x[j]);
                bool room = true;
                for (std::size_t q = c.sa[j]; q < c.sb[j] && room; ++q) room = fits(load[q] + more, q);
                if (!room) continue;
                const double ratio = (c.t(j, x[j]) - c.t(j, up)) / std::max(more, 1.0);
                if (ratio > best_ratio) {
                  best_ratio = ratio;
                  best_item = j;
                  best_to = up;
                }
              }
            }
          }
          if (best_ratio <= 0) break;
          gain += c.t(best_item, x[best_item]) - c.t(best_item, best_to);
          set_choice(best_item, best_to);
        }
        if (gain > cost + 1e-12 * std::max(cost, 1e-300)) {
          changed.clear();
          improved = true;
          break;
        }
        undo_all();
      }
    }
    if (!improved) break;
  }
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) total += c.t(i, x[i]);
  return total;
}

// A decision diagram over the items in order of their first segment: a state is the kept bytes
// of the decided items still alive (all the future needs of the past), so states that differ
// only in items already released collapse into one, and a narrow instance is solved exactly.
// Past `width` states a layer keeps the most promising ones (by cost plus the Lagrangian price
// of the bytes they still hold) and either drops the rest (restricted: every survivor is a
// feasible choice, so the best is a solution) or merges them into one state holding, per item,
// the least bytes and the least cost of any of them (relaxed: every choice is still represented,
// so the least final cost is a lower bound).
struct dd_result {
  double value = std::numeric_limits<double>::infinity();  // restricted: best found; relaxed: bound
  std::vector<std::uint32_t> x;                            // restricted: the choice of value
  bool exact = true;                                       // no state dropped or merged
};

class decision_diagram {
 public:
  // price_prefix: prefix sums over segments of a per-byte price (Lagrangian multipliers), to
  // rank a state by its cost plus the price of the bytes it still holds.
  decision_diagram(const memory_component& c, const std::vector<double>& price_prefix, std::size_t width)
      : c_(c), price_prefix_(price_prefix), width_(std::max<std::size_t>(width, 2)) {}

  dd_result run(bool relaxed) {
    const std::size_t n = c_.size(), m = c_.slack.size();
    dd_result result;
    alive_.clear();
    states_.assign(1, state{0, 0, 0, 0, none, 0});
    kept_.clear();
    trace_.assign(n, {});
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t next = j + 1 < n ? c_.sa[j + 1] : m;
      expand(j, next);
      if (children_.empty()) {  // cannot happen for a restricted run that starts feasible
        result.exact = false;
        return result;
      }
      merge_duplicates();
      if (children_.size() > width_) {
        result.exact = false;
        shrink(relaxed);
      }
      commit(j);
    }
    std::size_t best = 0;
    for (std::size_t k = 1; k < states_.size(); ++k) {
      if (states_[k].cost < states_[best].cost) best = k;
    }
    result.value = states_[best].cost;
    if (!relaxed || result.exact) {
      result.x.assign(n, 0);
      std::uint32_t at = std::uint32_t(best);
      for (std::size_t j = n; j-- > 0;) {
        result.x[j] = trace_[j][at].second;
        at = trace_[j][at].first;
      }
    }
    return result;
  }

 private:
  static constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();
  struct state {
    double cost, total, priority;
    std::size_t kept;       // offset of its alive items' bytes in kept_ (or next_kept_)
    std::uint32_t parent;   // in the previous layer
    std::uint32_t choice;   // of the layer's item
  };

  // Children of every state: item j takes each candidate; segments [sa_j, next) are checked
  // (every item alive there is decided), and the alive list drops items released by next.
  void expand(std::size_t j, std::size_t next) {
    const std::size_t width_in = alive_.size();
    next_alive_.clear();
    keep_pos_.clear();
    for (std::size_t a = 0; a < width_in; ++a) {
      if (c_.sb[alive_[a]] > next) {
        next_alive_.push_back(alive_[a]);
        keep_pos_.push_back(std::uint32_t(a));
      }
    }
    const bool j_alive = c_.sb[j] > next;
    if (j_alive) next_alive_.push_back(std::uint32_t(j));
    // Items released inside (sa_j, next), by segment, to walk the loads through the range.
    release_.clear();
    for (std::size_t a = 0; a < width_in; ++a) {
      if (c_.sb[alive_[a]] <= next) release_.push_back({c_.sb[alive_[a]], std::uint32_t(a)});
    }
    if (!j_alive) release_.push_back({c_.sb[j], std::uint32_t(width_in)});
    std::sort(release_.begin(), release_.end());
    children_.clear();
    next_kept_.clear();
    for (std::uint32_t p = 0; p < states_.size(); ++p) {
      const state& parent = states_[p];
      const double* pk = kept_.data() + parent.kept;
      for (std::uint32_t k = 0; k < c_.count(j); ++k) {
        const double dk = c_.k(j, k);
        double load = parent.total + dk;
        bool fits = true;
        std::size_t r = 0;
        for (std::size_t s = c_.sa[j]; s < next && fits; ++s) {
          for (; r < release_.size() && release_[r].first <= s; ++r) {
            load -= release_[r].second == width_in ? dk : pk[release_[r].second];
          }
          fits = load <= c_.slack[s];
        }
        if (!fits) continue;
        const std::size_t offset = next_kept_.size();
        double total = 0;
        for (std::uint32_t a : keep_pos_) {
          next_kept_.push_back(pk[a]);
          total += pk[a];
        }
        if (j_alive) {
          next_kept_.push_back(dk);
          total += dk;
        }
        const double cost = parent.cost + c_.t(j, k);
        double price = 0;
        for (std::size_t a = 0; a < next_alive_.size(); ++a) {
          price += next_kept_[offset + a] * (price_prefix_[c_.sb[next_alive_[a]]] - price_prefix_[next]);
        }
        children_.push_back({cost, total, cost + price, offset, p, k});
      }
    }
  }

  // States with the same bytes alive: only the cheapest matters.
  void merge_duplicates() {
    const std::size_t out = next_alive_.size();
    hash_.resize(children_.size());
    order_.resize(children_.size());
    for (std::size_t k = 0; k < children_.size(); ++k) {
      std::uint64_t h = 1469598103934665603ull;
      const double* v = next_kept_.data() + children_[k].kept;
      for (std::size_t a = 0; a < out; ++a) {
        std::uint64_t bits;
        std::memcpy(&bits, &v[a], sizeof bits);
        h = (h ^ bits) * 1099511628211ull;
        h ^= h >> 29;
      }
      hash_[k] = h;
      order_[k] = std::uint32_t(k);
    }
    std::sort(order_.begin(), order_.end(), [&](std::uint32_t a, std::uint32_t b) {
      if (hash_[a] != hash_[b]) return hash_[a] < hash_[b];
      if (children_[a].cost != children_[b].cost) return children_[a].cost < children_[b].cost;
      return a < b;
    });
    unique_.clear();
    for (std::size_t q = 0; q < order_.size(); ++q) {
      const std::uint32_t k = order_[q];
      bool duplicate = false;
      for (std::size_t back = unique_.size(); back-- > 0 && hash_[unique_[back]] == hash_[k] && !duplicate;) {
        duplicate = std::equal(next_kept_.begin() + std::ptrdiff_t(children_[k].kept),
                               next_kept_.begin() + std::ptrdiff_t(children_[k].kept + out),
                               next_kept_.begin() + std::ptrdiff_t(children_[unique_[back]].kept));
      }
      if (!duplicate) unique_.push_back(k);
    }
    std::sort(unique_.begin(), unique_.end());  // back to creation order: deterministic and cache-friendly
    std::vector<state> kept_children;
    kept_children.reserve(unique_.size());
    for (std::uint32_t k : unique_) kept_children.push_back(children_[k]);
    children_.swap(kept_children);
  }

  void shrink(bool relaxed) {
    std::stable_sort(children_.begin(), children_.end(),
                     [](const state& a, const state& b) { return a.priority < b.priority; });
    if (!relaxed) {
      children_.resize(width_);
      return;
    }
    const std::size_t out = next_alive_.size();
    state& merged = children_[width_ - 1];
    double* v = next_kept_.data() + merged.kept;
    for (std::size_t k = width_; k < children_.size(); ++k) {
      const state& s = children_[k];
      const double* w = next_kept_.data() + s.kept;
      for (std::size_t a = 0; a < out; ++a) v[a] = std::min(v[a], w[a]);
      merged.cost = std::min(merged.cost, s.cost);
    }
    merged.total = 0;
    for (std::size_t a = 0; a < out; ++a) merged.total += v[a];
    children_.resize(width_);
  }

  void commit(std::size_t j) {
    const std::size_t out = next_alive_.size();
    kept_.clear();
    states_.clear();
    trace_[j].clear();
    for (const state& s : children_) {
      state t = s;
      t.kept = kept_.size();
      kept_.insert(kept_.end(), next_kept_.begin() + std::ptrdiff_t(s.kept),
                   next_kept_.begin() + std::ptrdiff_t(s.kept + out));
      states_.push_back(t);
      trace_[j].push_back({s.parent, s.choice});
    }
    alive_.swap(next_alive_);
  }

  const memory_component& c_;
  const std::vector<double>& price_prefix_;
  std::size_t width_;
  std::vector<std::uint32_t> alive_, next_alive_, keep_pos_, order_, unique_;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> release_;
  std::vector<state> states_, children_;
  std::vector<double> kept_, next_kept_;
  std::vector<std::uint64_t> hash_;
  std::vector<std::vector<std::pair<std::uint32_t, std::uint32_t>>> trace_;
};

// Polyak's step length for the subgradient ascents below: theta * (target - value) / |g|^2,
// theta starting at 2 and halving after 8 steps without a better dual value.
struct polyak_step {
  double theta = 2.0;
  int stall = 0;

  // Records a step's dual value; true when it beats `best` (updated), so the caller keeps the
  // multipliers that gave it.
  bool record(double value, double& best) {
    if (value > best) {
      best = value;
      stall = 0;
      return true;
    }
    if (++stall >= 8) {
      theta *= 0.5;
      stall = 0;
    }
    return false;
  }
  bool exhausted() const noexcept { return theta < 1e-6; }
  double length(double target, double value, double norm) const noexcept { return theta * (target - value) / norm; }
};

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
    polyak_step step_size;
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
      if (step_size.record(value, knapsack_bound)) best_lambda = lambda;
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
      if (result.value - knapsack_bound <= tolerance(result.value) || norm == 0 || step_size.exhausted()) break;
      const double step = step_size.length(result.value, value, norm);
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
  polyak_step step_size;
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
    if (step_size.record(value, cover_bound)) {
      result.bound = std::max(result.bound, value);
      best_mu = mu;
      best_nu = nu;
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
    if (result.value - result.bound <= tolerance(result.value) || norm == 0 || step_size.exhausted()) break;
    const double step = step_size.length(result.value, value, norm);
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

  // Reduced costs under the relaxation that gave the better bound.
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
  // Decision diagrams, states ranked by cost plus the knapsack relaxation's price of the bytes
  // they hold.
  // The incumbent before the diagram: exchange moves start from it too, since a better start
  // does not always reach the better local optimum.
  std::vector<std::uint32_t> before_diagram = result.x;
  if (options.dd_width > 0) {
    lambda_prefix[0] = 0;
    for (std::size_t s = 0; s < m; ++s) lambda_prefix[s + 1] = lambda_prefix[s] + best_lambda[s];
    decision_diagram dd(c, lambda_prefix, options.dd_width);
    dd_result restricted = dd.run(false);
    if (restricted.value < result.value) {
      result.value = restricted.value;
      result.x = std::move(restricted.x);
    }
    if (restricted.exact) {
      result.optimal = true;
      result.bound = result.value;
      return result;
    }
    const dd_result relaxed = dd.run(true);  // never empty: all-smallest is feasible
    if (std::isfinite(relaxed.value)) result.bound = std::min(result.value, std::max(result.bound, relaxed.value));
    if (result.value - result.bound <= tolerance(result.value)) {
      result.optimal = true;
      result.bound = result.value;
      return result;
    }
  }

  if (options.local_search) {
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

  // Branch and bound, items in order of their first segment, candidates by reduced cost.
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

}  // namespace dip
