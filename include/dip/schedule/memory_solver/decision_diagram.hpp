// dip memory solver, the decision diagram (internal): over a component's items in order of
// their first segment, states keyed by the kept bytes of the decided items still alive. Exact
// while at most `width` states survive each layer (few items alive at once); past that a
// restricted run gives a feasible solution and a relaxed run a lower bound.
// Cost per run: O(n * width * K * (span + A)) plus sorting each layer's width * K children, with
// K candidates per item, A items alive at once, span the segments an item covers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "dip/schedule/memory_solver/component.hpp"

namespace dip::detail {

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
  // rank a state by its cost plus the price of the bytes it still holds. Holds references to
  // both: they must outlive the diagram.
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
    std::size_t kept;      // offset of its alive items' bytes in kept_ (or next_kept_)
    std::uint32_t parent;  // in the previous layer
    std::uint32_t choice;  // of the layer's item
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

// The diagram step of solve_component: a restricted run (states ranked by cost plus the price
// of their bytes under the knapsack multipliers `lambda`, one per segment) whose best choice
// replaces the incumbent when faster, then, unless that run was exact, a relaxed run whose
// value raises the bound. Returns true when `result` is proven optimal.
inline bool tighten_by_diagrams(const memory_component& c, const std::vector<double>& lambda, std::size_t width,
                                component_result& result) {
  std::vector<double> lambda_prefix(c.slack.size() + 1, 0.0);
  prefix_sums_into(lambda, lambda_prefix);
  decision_diagram dd(c, lambda_prefix, width);
  dd_result restricted = dd.run(false);
  if (restricted.value < result.value) {
    result.value = restricted.value;
    result.x = std::move(restricted.x);
  }
  if (restricted.exact) {
    result.optimal = true;
    result.bound = result.value;
    return true;
  }
  const dd_result relaxed = dd.run(true);  // never empty: all-smallest is feasible
  if (std::isfinite(relaxed.value)) result.bound = std::min(result.value, std::max(result.bound, relaxed.value));
  return close_if_proven(result);
}

}  // namespace dip::detail
