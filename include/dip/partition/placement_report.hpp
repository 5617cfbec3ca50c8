// What a placement costs: each chunk's forward + backward time for one unit of work, and each
// rank's total, for printing (dip-plan --show-placement) and for comparing partitions.
#pragma once

#include <algorithm>
#include <vector>

#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/model/model.hpp"
#include "dip/partition/placement.hpp"

namespace dip {

// Forward + backward time of every chunk when each module does `work_of(module)`.
template <cost_model_like Costs, class WorkOf>
std::vector<duration> chunk_times(const multimodal_model& model, const placement& p, const Costs& costs,
                                  WorkOf&& work_of) {
  std::vector<duration> times;
  for (const chunk_spec& chunk : p.chunks) {
    duration t{};
    for (const layer_span& s : chunk.spans) {
      const module_spec& m = model.module(s.module);
      const layer_cost c = chunk_cost(costs, m, s.first, s.last, work_of(m));
      t += c.forward + c.backward();
    }
    times.push_back(t);
  }
  return times;
}

// Sum of `chunk_time` (one entry per chunk, as chunk_times returns) over each rank's chunks,
// each chunk weighted by `repeats(chunk)` (how often it runs per microbatch).
template <class Repeats>
std::vector<duration> rank_totals(const placement& p, const std::vector<duration>& chunk_time, Repeats&& repeats) {
  std::vector<duration> totals(std::size_t(p.ranks));
  for (std::size_t c = 0; c < p.chunks.size(); ++c) {
    totals[p.chunks[c].rank.index()] += chunk_time.at(c) * repeats(p.chunks[c]);
  }
  return totals;
}

// Largest over mean: 1 is perfect balance.
inline double max_over_mean(const std::vector<duration>& values) {
  double sum = 0, most = 0;
  for (duration v : values) {
    sum += to_seconds(v);
    most = std::max(most, to_seconds(v));
  }
  return sum > 0 ? most * double(values.size()) / sum : 1.0;
}

}  // namespace dip
