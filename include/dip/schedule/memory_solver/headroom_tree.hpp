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

  // headroom[s] += delta for s in [from, to).
  void add(std::size_t from, std::size_t to, double delta) {
    if (from < to) add(1, 0, leaves_, from, to, delta);
  }

  // The least headroom over [from, to) (+infinity for an empty range).
  double least(std::size_t from, std::size_t to) const {
    return from < to ? least(1, 0, leaves_, from, to) : std::numeric_limits<double>::infinity();
  }

  double at(std::size_t s) const { return least(s, s + 1); }

  // The first s in [from, to) with headroom[s] < threshold, or `to` when there is none.
  std::size_t first_below(std::size_t from, std::size_t to, double threshold) const {
    if (from >= to) return to;
    return std::min(first_below(1, 0, leaves_, from, to, threshold, 0.0), to);
  }

 private:
  // Node v covers leaves [lo, hi); least_[v] is its minimum without its ancestors' pending adds.
  void add(std::size_t v, std::size_t lo, std::size_t hi, std::size_t from, std::size_t to, double delta) {
    if (to <= lo || hi <= from) return;
    if (from <= lo && hi <= to) {
      least_[v] += delta;
      pending_[v] += delta;
      return;
    }
    const std::size_t mid = (lo + hi) / 2;
    add(2 * v, lo, mid, from, to, delta);
    add(2 * v + 1, mid, hi, from, to, delta);
    least_[v] = std::min(least_[2 * v], least_[2 * v + 1]) + pending_[v];
  }

  double least(std::size_t v, std::size_t lo, std::size_t hi, std::size_t from, std::size_t to) const {
    if (to <= lo || hi <= from) return std::numeric_limits<double>::infinity();
    if (from <= lo && hi <= to) return least_[v];
    const std::size_t mid = (lo + hi) / 2;
    return std::min(least(2 * v, lo, mid, from, to), least(2 * v + 1, mid, hi, from, to)) + pending_[v];
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
