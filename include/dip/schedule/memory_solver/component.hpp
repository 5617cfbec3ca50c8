// dip memory solver, one component (internal): the compressed form in which every method
// (repair.hpp, lagrangian.hpp, decision_diagram.hpp, exchange.hpp, branch_and_bound.hpp) sees a
// group of items that share binding points, the result they improve together, and the tolerance
// within which a bound proves a value optimal. decompose.hpp builds components from a problem.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dip::detail {

// One group of items that share binding points, in compressed form: segments are runs of
// binding points covered by the same items; slack is what the cap leaves above every item's
// smallest candidate. An item's candidates are non-dominated, kept ascending, time descending.
struct memory_component {
  std::vector<double> slack;              // per segment
  std::vector<std::uint32_t> item;        // problem item per local item, by first segment
  std::vector<std::uint32_t> sa, sb;      // segment range [sa, sb) per local item
  std::vector<std::uint32_t> cand_begin;  // into time/extra/origin; local item i's are [begin[i], begin[i+1])
  std::vector<double> time, dk;           // per candidate: extra seconds, kept - smallest kept
  std::vector<std::uint32_t> origin;      // per candidate: index in the problem item's list

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

// A value within this of its bound is proven optimal (relative, 1e-12).
inline double proof_tolerance(double value) noexcept { return 1e-12 * std::max(std::fabs(value), 1e-300); }

// When the bound proves the value optimal: marks it so (bound = value) and returns true.
inline bool close_if_proven(component_result& result) noexcept {
  if (result.value - result.bound <= proof_tolerance(result.value)) {
    result.optimal = true;
    result.bound = result.value;
    return true;
  }
  return false;
}

// prefix[0] = 0, prefix[s + 1] = prefix[s] + values[s]; prefix has values.size() + 1 entries.
inline void prefix_sums_into(const std::vector<double>& values, std::vector<double>& prefix) {
  prefix[0] = 0;
  for (std::size_t s = 0; s < values.size(); ++s) prefix[s + 1] = prefix[s] + values[s];
}

}  // namespace dip::detail
