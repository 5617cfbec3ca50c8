// The sub-microbatch bin-packer: split n items into exactly `bins` bins so that the heaviest bin
// is as light as possible (multiway number partitioning / makespan scheduling on identical
// machines), optionally with a cap on each bin's memory.
//
// Generic over the item type: a weight function (and optionally a memory function) maps an item
// to a number, or to a dip quantity (duration, bytes), read through its base().
//
// Algorithms and the guarantees the tests assert (OPT = the optimal largest bin, k = bins;
// bounds hold without a memory cap):
// - lpt: longest processing time first (Graham 1969): each item, heaviest first, into the
//   lightest bin it fits. <= (4/3 - 1/(3k)) OPT.
// - first_fit_decreasing: MULTIFIT (Coffman, Garey, Johnson 1978): binary search for the
//   smallest capacity at which first-fit-decreasing fits all items into k bins.
//   <= 13/11 OPT (Yue 1990) plus the search's relative tolerance of 1e-12.
// - karmarkar_karp: largest differencing for k bins (Karmarkar and Karp 1982; k-way as in Korf
//   2009): repeatedly merge the two partial partitions whose spread is largest, heaviest subset
//   of one with the lightest of the other. <= (4/3 - 1/(3k)) OPT (Michiels et al. 2007).
// - best_of: all three, keeping the smallest largest bin, then the smallest spread (largest -
//   smallest bin). <= min(4/3 - 1/(3k), 13/11) OPT, and always <= sum/k + max item (so within
//   2x the lower bound max(max item, sum/k)).
// With a memory cap, a heuristic only places an item where the bin's memory stays <= cap; one
// that cannot place an item fails. best_of then also tries LPT on memory alone (the most
// memory-balanced split it knows); if nothing fits it throws dip::error(infeasible) giving the
// memory needed and the cap. Every result with n >= k items has no empty bin (an item of a
// bin with several is moved into any empty one, which never raises the largest bin).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "dip/core/error.hpp"

namespace dip {

enum class bin_packing_algorithm { lpt, first_fit_decreasing, karmarkar_karp, best_of };

constexpr std::string_view to_string(bin_packing_algorithm algorithm) noexcept {
  switch (algorithm) {
    case bin_packing_algorithm::lpt: return "lpt";
    case bin_packing_algorithm::first_fit_decreasing: return "ffd";
    case bin_packing_algorithm::karmarkar_karp: return "kk";
    case bin_packing_algorithm::best_of: return "best_of";
  }
  return "?";
}

// The bins of a split: item indices (ascending) per bin, each bin's total weight and memory,
// and the algorithm that produced it (for best_of: the one that won; ties go to lpt, then ffd,
// then kk).
struct bin_assignment {
  std::vector<std::vector<std::size_t>> bins;
  std::vector<double> weights;
  std::vector<double> memory;
  bin_packing_algorithm algorithm = bin_packing_algorithm::lpt;

  double max_weight() const { return weights.empty() ? 0.0 : *std::max_element(weights.begin(), weights.end()); }
  double min_weight() const { return weights.empty() ? 0.0 : *std::min_element(weights.begin(), weights.end()); }
  double spread() const { return max_weight() - min_weight(); }
  double max_memory() const { return memory.empty() ? 0.0 : *std::max_element(memory.begin(), memory.end()); }
};

// The memory function when there is no memory cap.
struct no_memory {
  template <class Item>
  double operator()(const Item&) const noexcept {
    return 0.0;
  }
};

// A function giving an item a non-negative size: a number, or a dip quantity (duration, bytes).
template <class F, class Item>
concept item_measure_like = std::invocable<const F&, const Item&> &&
    (std::is_arithmetic_v<std::remove_cvref_t<std::invoke_result_t<const F&, const Item&>>> ||
     requires(std::invoke_result_t<const F&, const Item&> r) {
       { r.base() } -> std::convertible_to<double>;
     });

namespace detail {

template <class T>
double measure_value(const T& value) {
  if constexpr (std::is_arithmetic_v<T>) return double(value);
  else return double(value.base());
}

// The numbers the algorithms see.
struct bin_problem {
  std::vector<double> weight;
  std::vector<double> memory;
  std::size_t bins = 1;
  double cap = std::numeric_limits<double>::infinity();

  std::size_t size() const noexcept { return weight.size(); }
  bool fits(double bin_memory, std::size_t item) const noexcept {
    return bin_memory + memory[item] <= cap * (1 + 1e-12);
  }
  // Indices by weight, heaviest first (ties: lower index first, so results are deterministic).
  std::vector<std::size_t> by_weight_descending(const std::vector<double>& key) const {
    std::vector<std::size_t> order(size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key[a] > key[b]; });
    return order;
  }
};

inline std::string bytes_text(double b) {
  char text[64];
  std::snprintf(text, sizeof text, "%.0f bytes (%.3f GiB)", b, b / (1024.0 * 1024.0 * 1024.0));
  return text;
}

inline bin_assignment make_assignment(const bin_problem& p, std::vector<std::vector<std::size_t>> bins,
                                      bin_packing_algorithm algorithm) {
  bin_assignment a;
  a.algorithm = algorithm;
  a.weights.assign(p.bins, 0.0);
  a.memory.assign(p.bins, 0.0);
  for (std::size_t b = 0; b < bins.size(); ++b) {
    std::sort(bins[b].begin(), bins[b].end());
    for (std::size_t i : bins[b]) {
      a.weights[b] += p.weight[i];
      a.memory[b] += p.memory[i];
    }
  }
  a.bins = std::move(bins);
  return a;
}

// Moves an item from a bin holding several into each empty bin: never raises the largest bin
// (the moved item weighs no more than the bin it left), and a single item always fits the cap.
inline void fill_empty_bins(const bin_problem& p, bin_assignment& a) {
  for (std::size_t empty = 0; empty < a.bins.size(); ++empty) {
    if (!a.bins[empty].empty()) continue;
    std::size_t donor = a.bins.size();
    for (std::size_t b = 0; b < a.bins.size(); ++b) {
      if (a.bins[b].size() >= 2 && (donor == a.bins.size() || a.weights[b] > a.weights[donor])) donor = b;
    }
    if (donor == a.bins.size()) return;  // fewer items than bins
    auto& from = a.bins[donor];
    const auto lightest = std::min_element(from.begin(), from.end(), [&](std::size_t x, std::size_t y) {
      return p.weight[x] < p.weight[y] || (p.weight[x] == p.weight[y] && x > y);
    });
    const std::size_t item = *lightest;
    from.erase(lightest);
    a.bins[empty].push_back(item);
    a.weights[donor] -= p.weight[item];
    a.memory[donor] -= p.memory[item];
    a.weights[empty] = p.weight[item];
    a.memory[empty] = p.memory[item];
  }
}

// LPT by `key` (the weight, or the memory for the memory-balanced fallback).
inline std::optional<bin_assignment> lpt(const bin_problem& p, const std::vector<double>& key,
                                         bin_packing_algorithm label = bin_packing_algorithm::lpt) {
  std::vector<std::vector<std::size_t>> bins(p.bins);
  std::vector<double> load(p.bins, 0.0), memory(p.bins, 0.0);
  for (std::size_t item : p.by_weight_descending(key)) {
    std::size_t best = p.bins;
    for (std::size_t b = 0; b < p.bins; ++b) {
      if (!p.fits(memory[b], item)) continue;
      if (best == p.bins || load[b] < load[best] || (load[b] == load[best] && memory[b] < memory[best])) best = b;
    }
    if (best == p.bins) return std::nullopt;
    bins[best].push_back(item);
    load[best] += key[item];
    memory[best] += p.memory[item];
  }
  return make_assignment(p, std::move(bins), label);
}

// First-fit-decreasing into bins of weight capacity `capacity`; nullopt if k bins do not suffice.
inline std::optional<std::vector<std::vector<std::size_t>>> first_fit(const bin_problem& p,
                                                                      const std::vector<std::size_t>& order,
                                                                      double capacity) {
  std::vector<std::vector<std::size_t>> bins(p.bins);
  std::vector<double> load(p.bins, 0.0), memory(p.bins, 0.0);
  const double limit = capacity * (1 + 1e-12);
  for (std::size_t item : order) {
    std::size_t b = 0;
    while (b < p.bins && (load[b] + p.weight[item] > limit || !p.fits(memory[b], item))) ++b;
    if (b == p.bins) return std::nullopt;
    bins[b].push_back(item);
    load[b] += p.weight[item];
    memory[b] += p.memory[item];
  }
  return bins;
}

inline std::optional<bin_assignment> first_fit_decreasing(const bin_problem& p) {
  const std::vector<std::size_t> order = p.by_weight_descending(p.weight);
  const double sum = std::accumulate(p.weight.begin(), p.weight.end(), 0.0);
  const double largest = *std::max_element(p.weight.begin(), p.weight.end());
  const double lower = std::max(largest, sum / double(p.bins));
  if (auto at_lower = first_fit(p, order, lower)) {
    return make_assignment(p, std::move(*at_lower), bin_packing_algorithm::first_fit_decreasing);
  }
  // sum/k + max always fits without a cap (a bin refusing an item holds > sum/k); with a cap,
  // fall back to a capacity that constrains only memory.
  double hi = sum / double(p.bins) + largest;
  auto best = first_fit(p, order, hi);
  if (!best) {
    hi = sum;
    best = first_fit(p, order, hi);
    if (!best) return std::nullopt;
  }
  double lo = lower;
  for (int step = 0; step < 100 && hi - lo > 1e-12 * hi; ++step) {
    const double mid = lo + (hi - lo) / 2;
    if (auto found = first_fit(p, order, mid)) {
      hi = mid;
      best = std::move(found);
    } else {
      lo = mid;
    }
  }
  return make_assignment(p, std::move(*best), bin_packing_algorithm::first_fit_decreasing);
}

inline std::optional<bin_assignment> karmarkar_karp(const bin_problem& p) {
  // A partial partition: k subsets, kept heaviest first.
  struct subset {
    double weight = 0;
    std::vector<std::size_t> items;
  };
  struct partial {
    std::vector<subset> subsets;
    std::size_t order = 0;  // creation order, to break ties deterministically
    double difference() const { return subsets.front().weight - subsets.back().weight; }
  };
  const auto less_urgent = [](const partial& a, const partial& b) {
    const double da = a.difference(), db = b.difference();
    return da < db || (da == db && a.order > b.order);
  };
  // A max-heap in a vector (not std::priority_queue) so partitions can be moved out of it.
  std::vector<partial> heap;
  const auto pop = [&] {
    std::pop_heap(heap.begin(), heap.end(), less_urgent);
    partial top = std::move(heap.back());
    heap.pop_back();
    return top;
  };
  std::size_t created = 0;
  for (std::size_t item : p.by_weight_descending(p.weight)) {
    partial start{std::vector<subset>(p.bins), created++};
    start.subsets[0] = {p.weight[item], {item}};
    heap.push_back(std::move(start));
    std::push_heap(heap.begin(), heap.end(), less_urgent);
  }
  while (heap.size() > 1) {
    partial a = pop();
    partial b = pop();
    // Heaviest of a with lightest of b: the differences cancel as far as they can.
    for (std::size_t s = 0; s < p.bins; ++s) {
      subset& into = a.subsets[s];
      subset& from_b = b.subsets[p.bins - 1 - s];
      into.weight += from_b.weight;
      into.items.insert(into.items.end(), from_b.items.begin(), from_b.items.end());
    }
    a.order = created++;
    std::stable_sort(a.subsets.begin(), a.subsets.end(),
                     [](const subset& x, const subset& y) { return x.weight > y.weight; });
    heap.push_back(std::move(a));
    std::push_heap(heap.begin(), heap.end(), less_urgent);
  }
  std::vector<std::vector<std::size_t>> bins;
  for (subset& s : heap.front().subsets) bins.push_back(std::move(s.items));
  bin_assignment a = make_assignment(p, std::move(bins), bin_packing_algorithm::karmarkar_karp);
  for (double m : a.memory) {
    if (m > p.cap * (1 + 1e-12)) return std::nullopt;
  }
  return a;
}

[[noreturn]] inline void throw_no_fit(const bin_problem& p, std::string_view algorithm) {
  // What the most memory-balanced split we know needs, against the cap.
  bin_problem unlimited = p;
  unlimited.cap = std::numeric_limits<double>::infinity();
  const double needed = lpt(unlimited, p.memory)->max_memory();
  const double total = std::accumulate(p.memory.begin(), p.memory.end(), 0.0);
  const double largest = *std::max_element(p.memory.begin(), p.memory.end());
  const double lower = std::max(total / double(p.bins), largest);
  throw error(errc::infeasible, "bin packing (" + std::string(algorithm) + ")",
              "no split of " + std::to_string(p.size()) + " items into " + std::to_string(p.bins) +
                  " bins found that keeps each bin's memory <= the cap: the best needs " + bytes_text(needed) +
                  " in a bin (at least " + bytes_text(lower) + "), available " + bytes_text(p.cap));
}

inline bool better(const bin_assignment& a, const bin_assignment& b) {
  const double ma = a.max_weight(), mb = b.max_weight();
  if (ma != mb) return ma < mb;
  return a.spread() < b.spread();
}

inline bin_assignment solve(const bin_problem& p, bin_packing_algorithm algorithm) {
  std::optional<bin_assignment> result;
  switch (algorithm) {
    case bin_packing_algorithm::lpt: result = lpt(p, p.weight); break;
    case bin_packing_algorithm::first_fit_decreasing: result = first_fit_decreasing(p); break;
    case bin_packing_algorithm::karmarkar_karp: result = karmarkar_karp(p); break;
    case bin_packing_algorithm::best_of: {
      for (auto candidate : {lpt(p, p.weight), first_fit_decreasing(p), karmarkar_karp(p)}) {
        if (!candidate) continue;
        fill_empty_bins(p, *candidate);
        if (!result || better(*candidate, *result)) result = std::move(candidate);
      }
      if (!result) {
        result = lpt(p, p.memory);  // the memory-balanced split, when nothing else fits
      }
      break;
    }
  }
  if (!result) throw_no_fit(p, to_string(algorithm));
  fill_empty_bins(p, *result);
  return *std::move(result);
}

}  // namespace detail

// Splits `items` into exactly `bins` bins with `algorithm` (best_of unless told otherwise),
// balancing `weight_of(item)`; with `memory_cap`, each bin's sum of `memory_of(item)` stays
// <= the cap. Throws dip::error: invalid_argument for zero bins, no items, a negative, NaN or
// infinite weight or memory, or a bad cap; infeasible (naming the item) for an item whose memory
// alone exceeds the cap, and (giving needed and available bytes) when no split fits the cap.
template <std::ranges::random_access_range Items, class WeightOf, class MemoryOf = no_memory>
requires item_measure_like<WeightOf, std::ranges::range_value_t<Items>> &&
    item_measure_like<MemoryOf, std::ranges::range_value_t<Items>>
        bin_assignment pack_bins(const Items& items, std::size_t bins, WeightOf weight_of,
                                 bin_packing_algorithm algorithm = bin_packing_algorithm::best_of,
                                 MemoryOf memory_of = {}, std::optional<double> memory_cap = std::nullopt) {
  const std::string where = "bin packing";
  require(bins >= 1, errc::invalid_argument, where, "needs at least one bin, got 0");
  const std::size_t n = std::size_t(std::ranges::size(items));
  require(n >= 1, errc::invalid_argument, where, "has no items to split");
  detail::bin_problem p;
  p.bins = bins;
  if (memory_cap) {
    require(std::isfinite(*memory_cap) && *memory_cap >= 0, errc::invalid_argument, where,
            "memory cap must be finite and >= 0, got " + std::to_string(*memory_cap));
    p.cap = *memory_cap;
  }
  p.weight.reserve(n);
  p.memory.reserve(n);
  std::size_t index = 0;
  for (const auto& item : items) {
    const double w = detail::measure_value(std::invoke(weight_of, item));
    const double m = detail::measure_value(std::invoke(memory_of, item));
    // Messages are built only on failure: this loop runs for every item of every split.
    if (!(std::isfinite(w) && w >= 0)) {
      throw error(errc::invalid_argument, where,
                  "item " + std::to_string(index) + ": weight must be finite and >= 0, got " + std::to_string(w));
    }
    if (!(std::isfinite(m) && m >= 0)) {
      throw error(errc::invalid_argument, where,
                  "item " + std::to_string(index) + ": memory must be finite and >= 0, got " + std::to_string(m));
    }
    if (m > p.cap) {
      throw error(errc::infeasible, where,
                  "item " + std::to_string(index) + " alone needs " + detail::bytes_text(m) +
                      ", more than the cap of " + detail::bytes_text(p.cap));
    }
    p.weight.push_back(w);
    p.memory.push_back(m);
    ++index;
  }
  return detail::solve(p, algorithm);
}

// The algorithms by name, for callers that fix one.
template <std::ranges::random_access_range Items, class WeightOf, class MemoryOf = no_memory>
bin_assignment lpt_bins(const Items& items, std::size_t bins, WeightOf weight_of, MemoryOf memory_of = {},
                        std::optional<double> memory_cap = std::nullopt) {
  return pack_bins(items, bins, weight_of, bin_packing_algorithm::lpt, memory_of, memory_cap);
}
template <std::ranges::random_access_range Items, class WeightOf, class MemoryOf = no_memory>
bin_assignment ffd_bins(const Items& items, std::size_t bins, WeightOf weight_of, MemoryOf memory_of = {},
                        std::optional<double> memory_cap = std::nullopt) {
  return pack_bins(items, bins, weight_of, bin_packing_algorithm::first_fit_decreasing, memory_of, memory_cap);
}
template <std::ranges::random_access_range Items, class WeightOf, class MemoryOf = no_memory>
bin_assignment karmarkar_karp_bins(const Items& items, std::size_t bins, WeightOf weight_of, MemoryOf memory_of = {},
                                   std::optional<double> memory_cap = std::nullopt) {
  return pack_bins(items, bins, weight_of, bin_packing_algorithm::karmarkar_karp, memory_of, memory_cap);
}
template <std::ranges::random_access_range Items, class WeightOf, class MemoryOf = no_memory>
bin_assignment best_of_bins(const Items& items, std::size_t bins, WeightOf weight_of, MemoryOf memory_of = {},
                            std::optional<double> memory_cap = std::nullopt) {
  return pack_bins(items, bins, weight_of, bin_packing_algorithm::best_of, memory_of, memory_cap);
}

// The bounds above, for tests and callers that want to state them.
inline double lpt_bound(std::size_t bins) noexcept { return 4.0 / 3.0 - 1.0 / (3.0 * double(bins)); }
inline double ffd_bound() noexcept { return 13.0 / 11.0; }
inline double karmarkar_karp_bound(std::size_t bins) noexcept { return lpt_bound(bins); }
inline double best_of_bound(std::size_t bins) noexcept { return std::min(lpt_bound(bins), ffd_bound()); }

}  // namespace dip
