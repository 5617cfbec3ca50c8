// dip memory solver, the headroom of a component's segments (internal): what the cap leaves at
// each segment (slack minus the load of the chosen candidates), in a segment tree with lazy
// range addition, so that the local searches change an item's bytes over all its segments,
// ask whether more bytes fit over them, and find the first segment that overflows, each in
// O(log S) rather than in the segments the item covers.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

namespace dip::detail {

class headroom_tree {
 public:
  // headroom[s] for each segment s.
  explicit headroom_tree(const std::vector<double>& headroom) : size_(headroom.size()) {
    leaves_ = 1;
    while (leaves_ < std::max<std::size_t>(size_, 1)) leaves_ *= 2;
    least_.assign(2 * leaves_, std::numeric_limits<double>::infinity());
    pending_.assign(2 * leaves_, 0.0);
    for (std::size_t s = 0; s < size_; ++s) least_[leaves_ + s] = headroom[s];
    for (std::size_t v = leaves_ - 1; v >= 1; --v) least_[v] = std::min(least_[2 * v], least_[2 * v + 1]);
  }

  std::size_t size() const noexcept { return size_; }

  // headroom[s] += delta for s in [from, to). Bottom up: the O(log S) nodes that tile the range
  // take delta, then the ancestors of its two ends are recomputed.
  void add(std::size_t from, std::size_t to, double delta) {
    if (from >= to) return;
    const std::size_t first = from + leaves_, last = to - 1 + leaves_;
    for (std::size_t l = first, r = last + 1; l < r; l >>= 1, r >>= 1) {
      if (l & 1) apply(l++, delta);
      if (r & 1) apply(--r, delta);
    }
    recompute_above(first);
    recompute_above(last);
  }

  // The least headroom over [from, to) (+infinity for an empty range). Bottom up: the nodes
  // that tile the range, each plus the pending adds of its ancestors. The left ones merged so
  // far all lie under node l - 1 of the level reached, the right ones under node r, so one
  // pending add per level and side completes them. (The same sums as a top-down query, since
  // adding to both values before taking their minimum, or after, rounds alike.)
  double least(std::size_t from, std::size_t to) const {
    constexpr double none = std::numeric_limits<double>::infinity();
    if (from >= to) return none;
    double left = none, right = none;
    std::size_t l = from + leaves_, r = to + leaves_;
    while (l < r) {
      if (l & 1) left = std::min(left, least_[l++]);
      if (r & 1) right = std::min(right, least_[--r]);
      l >>= 1;
      r >>= 1;
      // (Where nothing is merged yet on a side, l - 1 or r may be no ancestor: +infinity stays.)
      left += pending_[l - 1];
      right += pending_[r];
    }
    for (std::size_t a = l - 1; a > 1;) left += pending_[a >>= 1];
    for (std::size_t b = r; b > 1;) right += pending_[b >>= 1];
    return std::min(left, right);
  }

  double at(std::size_t s) const { return least(s, s + 1); }

  // The first s in [from, to) with headroom[s] < threshold, or `to` when there is none.
  std::size_t first_below(std::size_t from, std::size_t to, double threshold) const {
    if (from >= to) return to;
    return std::min(first_below(1, 0, leaves_, from, to, threshold, 0.0), to);
  }

 private:
  // Node v covers a range of leaves (v's children are 2v and 2v + 1, the leaves leaves_ + s);
  // least_[v] is its minimum with its own pending adds, without its ancestors'.
  void apply(std::size_t v, double delta) {
    least_[v] += delta;
    pending_[v] += delta;
  }

  void recompute_above(std::size_t leaf) {
    for (std::size_t v = leaf >> 1; v >= 1; v >>= 1)
      least_[v] = std::min(least_[2 * v], least_[2 * v + 1]) + pending_[v];
  }

  // `above`: the pending adds of v's ancestors.
  std::size_t first_below(std::size_t v, std::size_t lo, std::size_t hi, std::size_t from, std::size_t to,
                          double threshold, double above) const {
    if (to <= lo || hi <= from || least_[v] + above >= threshold) return std::numeric_limits<std::size_t>::max();
    if (hi - lo == 1) return lo;
    const std::size_t mid = (lo + hi) / 2;
    const double below = above + pending_[v];
    const std::size_t left = first_below(2 * v, lo, mid, from, to, threshold, below);
    return left != std::numeric_limits<std::size_t>::max()
               ? left
               : first_below(2 * v + 1, mid, hi, from, to, threshold, below);
  }

  std::size_t size_ = 0, leaves_ = 1;
  std::vector<double> least_, pending_;
};

}  // namespace dip::detail
