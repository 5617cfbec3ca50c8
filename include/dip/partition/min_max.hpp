// Min-max contiguous partition: cut a sequence of layer weights into `parts` non-empty runs of
// consecutive layers so that the heaviest run is as light as possible.
//
// This is the linear-partition problem, solved exactly by dynamic programming on prefix sums:
//   best[j][i] = min over s < i of max(best[j-1][s], sum(w[s..i)))
// the heaviest of the best cut of the first s layers into j-1 runs and the run [s, i). The inner
// loop walks s downwards from i-1 and stops once the run alone is no lighter than the best found,
// because runs only grow as s falls; so the cost is O(parts * n * w) with w the longest useful
// run, O(parts * n^2) at worst.
//
// Many cuts share the optimal bottleneck (equal layers make ties the rule, not the exception).
// Among them a second exact DP picks the one whose *lightest* run is heaviest, so that runs are
// as even as possible from both sides: DESIGN.md's 64 ViT + 64 LLM example has bottleneck 73.5 ms
// and, with this tie-break, lightest stage 63 ms; an arbitrary optimal cut may leave a 37.5 ms
// stage.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "dip/core/error.hpp"

namespace dip {

struct contiguous_partition {
  std::vector<std::size_t> starts;  // first index of each run; starts[0] == 0, strictly increasing
  double largest = 0;               // the heaviest run's weight (the optimum)
  double smallest = 0;              // the lightest run's weight (maximised among optimal cuts)

  std::size_t parts() const noexcept { return starts.size(); }
  // One past the last index of run k.
  std::size_t end_of(std::size_t k, std::size_t n) const { return k + 1 < starts.size() ? starts[k + 1] : n; }
};

namespace detail {

// Relative slack for comparing sums of doubles built in different orders.
inline bool at_most(double a, double b) noexcept { return a <= b + 1e-12 * std::max(1.0, std::abs(b)); }

}  // namespace detail

// Throws dip::error if `parts` is 0 or exceeds the number of weights, or if a weight is negative,
// NaN or infinite; `where` names the caller's object in the message.
inline contiguous_partition min_max_partition(std::span<const double> weights, std::size_t parts,
                                              const std::string& where = "min_max_partition") {
  const std::size_t n = weights.size();
  require(parts >= 1, errc::invalid_argument, where, "needs at least one part");
  require(parts <= n, errc::infeasible, where,
          "cannot cut " + std::to_string(n) + " layers into " + std::to_string(parts) + " non-empty parts");
  std::vector<double> prefix(n + 1, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    require(std::isfinite(weights[i]) && weights[i] >= 0, errc::invalid_argument, where,
            "weight " + std::to_string(i) + " must be finite and >= 0, got " + std::to_string(weights[i]));
    prefix[i + 1] = prefix[i] + weights[i];
  }
  const auto run = [&](std::size_t s, std::size_t i) { return prefix[i] - prefix[s]; };
  constexpr double inf = std::numeric_limits<double>::infinity();

  // Pass 1: the optimal bottleneck. best[j][i]: first i weights in j runs (j = 1..parts).
  std::vector<std::vector<double>> best(parts + 1, std::vector<double>(n + 1, inf));
  for (std::size_t i = 1; i <= n; ++i) best[1][i] = run(0, i);
  for (std::size_t j = 2; j <= parts; ++j) {
    for (std::size_t i = j; i <= n - (parts - j); ++i) {
      double value = inf;
      for (std::size_t s = i - 1; s + 1 >= j; --s) {  // last run [s, i), s >= j - 1
        const double last = run(s, i);
        if (last >= value) break;  // earlier s only lengthens the last run
        value = std::min(value, std::max(best[j - 1][s], last));
        if (s == 0) break;
      }
      best[j][i] = value;
    }
  }
  const double bottleneck = best[parts][n];

  // Pass 2: among cuts whose runs all stay within the bottleneck, maximise the lightest run.
  // lightest[j][i] = max over s of min(lightest[j-1][s], run(s, i)) with run(s, i) <= bottleneck.
  std::vector<std::vector<double>> lightest(parts + 1, std::vector<double>(n + 1, -inf));
  std::vector<std::vector<std::size_t>> choice(parts + 1, std::vector<std::size_t>(n + 1, 0));
  for (std::size_t i = 1; i <= n; ++i) {
    if (detail::at_most(run(0, i), bottleneck)) lightest[1][i] = run(0, i);
  }
  for (std::size_t j = 2; j <= parts; ++j) {
    for (std::size_t i = j; i <= n - (parts - j); ++i) {
      for (std::size_t s = i - 1; s + 1 >= j; --s) {
        const double last = run(s, i);
        if (!detail::at_most(last, bottleneck)) break;
        const double value = std::min(lightest[j - 1][s], last);
        if (value > lightest[j][i]) {
          lightest[j][i] = value;
          choice[j][i] = s;
        }
        if (s == 0) break;
      }
    }
  }

  contiguous_partition result;
  result.largest = bottleneck;
  result.smallest = lightest[parts][n];
  result.starts.assign(parts, 0);
  std::size_t end = n;
  for (std::size_t j = parts; j >= 2; --j) {
    end = choice[j][end];
    result.starts[j - 1] = end;
  }
  return result;
}

}  // namespace dip
