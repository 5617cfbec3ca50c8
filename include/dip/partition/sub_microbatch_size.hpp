// Sub-microbatch size B: the smallest number of items per sub-microbatch that keeps a module
// (or a group of modules run together) at a given share of its peak throughput.
//
// Throughput at b items is b / T(b), with T(b) the forward + backward time of all the group's
// layers for b items under the cost model. Small b wastes the GPU on launch overheads and skinny
// matrix products; large b gains little and makes stages long and coarse for the schedule to
// interleave. DIP (DESIGN.md) takes the smallest b whose throughput is at least 95% of the peak
// over b = 1..max (max: the most items a packed microbatch can hold, 48 images, 8 clips, ...).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dip/batch/module_items.hpp"
#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/model/model.hpp"

namespace dip {

struct sub_microbatch_size_choice {
  std::size_t size = 1;            // B
  double efficiency = 1;           // throughput(B) / peak throughput
  std::vector<double> throughput;  // items per second at b = 1..max (index b - 1)
};

// Forward + backward time of every layer of `modules` when each processes `count` of its items.
template <cost_model_like Costs>
duration group_time(const Costs& costs, const multimodal_model& model, std::span<const module_id> modules,
                    std::span<const module_item_profile> profiles, double count) {
  duration total{};
  for (module_id m : modules) {
    const module_spec& spec = model.module(m);
    const layer_cost c = chunk_cost(costs, spec, 0, spec.layers.size(), repeat(profiles[m.index()].item, count));
    validate(c, "module '" + spec.name + "'");
    total += c.forward + c.backward();
  }
  return total;
}

// The smallest b in 1..max_size with throughput(b) >= threshold * max throughput. `profiles`
// is indexed by module id. Throws dip::error for a threshold outside (0, 1], max_size 0, or a
// group whose time is zero (a cost model that prices nothing gives no throughput to compare).
template <cost_model_like Costs>
sub_microbatch_size_choice choose_sub_microbatch_size(const Costs& costs, const multimodal_model& model,
                                                      std::span<const module_id> modules,
                                                      std::span<const module_item_profile> profiles,
                                                      std::size_t max_size, double threshold = 0.95) {
  const std::string where = "sub-microbatch size of module '" + model.module(modules.front()).name + "'";
  require(threshold > 0 && threshold <= 1, errc::invalid_argument, where,
          "throughput threshold must be in (0, 1], got " + std::to_string(threshold));
  require(max_size >= 1, errc::invalid_argument, where, "needs a maximum size of at least 1");
  sub_microbatch_size_choice choice;
  double peak = 0;
  for (std::size_t b = 1; b <= max_size; ++b) {
    const double seconds = to_seconds(group_time(costs, model, modules, profiles, double(b)));
    require(seconds > 0 && std::isfinite(seconds), errc::invalid_argument, where,
            "the cost model gives " + std::to_string(seconds) + " s for " + std::to_string(b) +
                " items; throughput needs a positive, finite time");
    choice.throughput.push_back(double(b) / seconds);
    peak = std::max(peak, choice.throughput.back());
  }
  for (std::size_t b = 1; b <= max_size; ++b) {
    if (choice.throughput[b - 1] >= threshold * peak) {
      choice.size = b;
      choice.efficiency = choice.throughput[b - 1] / peak;
      break;
    }
  }
  return choice;
}

}  // namespace dip
