// dip::fixed_cost_table: per-layer costs given directly, as a user who measured supplies them.
//
// Each entry is either a constant (the cost of the layer for one microbatch, whatever its size;
// what toy models and tests use) or scales linearly with tokens from a reference size
// (`reference_tokens` > 0: the cost measured at that many tokens). `overlay_cost_model` puts a
// table in front of another model, so measured layers override analytic estimates.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/cost/cost_model.hpp"

namespace dip {

struct fixed_layer_cost {
  layer_cost cost;
  double reference_tokens = 0;  // 0: constant per microbatch; > 0: scale by tokens / this
  friend bool operator==(const fixed_layer_cost&, const fixed_layer_cost&) = default;
};

class fixed_cost_table {
 public:
  // Costs of every layer of `module`, in order. Replaces what the module had.
  void set(const std::string& module, std::vector<fixed_layer_cost> per_layer) {
    require(!per_layer.empty(), errc::invalid_argument, "module '" + module + "'",
            "a fixed cost table needs at least one layer");
    for (std::size_t i = 0; i < per_layer.size(); ++i) {
      const std::string where = "module '" + module + "' layer " + std::to_string(i);
      validate(per_layer[i].cost, where);
      require(std::isfinite(per_layer[i].reference_tokens) && per_layer[i].reference_tokens >= 0,
              errc::invalid_argument, where, "reference_tokens must be finite and >= 0");
    }
    table_[module] = std::move(per_layer);
  }

  // The same cost for `layers` layers.
  void set_uniform(const std::string& module, std::size_t layers, const fixed_layer_cost& each) {
    set(module, std::vector<fixed_layer_cost>(layers, each));
  }

  bool covers(const module_spec& module, std::size_t layer) const {
    const auto it = table_.find(module.name);
    return it != table_.end() && layer < it->second.size();
  }

  std::size_t layer_count(const std::string& module) const {
    const auto it = table_.find(module);
    return it == table_.end() ? 0 : it->second.size();
  }

  layer_cost cost(const module_spec& module, std::size_t layer, const work_unit& work) const {
    const auto it = table_.find(module.name);
    if (it == table_.end() || layer >= it->second.size()) {
      throw error(errc::not_found, "module '" + module.name + "' layer " + std::to_string(layer),
                  "no entry in the fixed cost table");
    }
    const fixed_layer_cost& entry = it->second[layer];
    if (entry.reference_tokens <= 0) return entry.cost;
    const double scale = work.tokens / entry.reference_tokens;
    return {entry.cost.forward * scale, entry.cost.backward_input * scale, entry.cost.backward_weight * scale,
            entry.cost.activation * scale, entry.cost.output * scale};
  }

 private:
  std::map<std::string, std::vector<fixed_layer_cost>, std::less<>> table_;
};

static_assert(cost_model_like<fixed_cost_table>);

// A model that answers what it covers and asks `Fallback` for the rest.
template <class M>
concept covering_cost_model_like = cost_model_like<M> &&
    requires(const M& model, const module_spec& module, std::size_t layer) {
  { model.covers(module, layer) } -> std::convertible_to<bool>;
};

template <covering_cost_model_like Primary, cost_model_like Fallback>
class overlay_cost_model {
 public:
  overlay_cost_model(Primary primary, Fallback fallback)
      : primary_(std::move(primary)), fallback_(std::move(fallback)) {}

  layer_cost cost(const module_spec& module, std::size_t layer, const work_unit& work) const {
    return primary_.covers(module, layer) ? layer_cost(primary_.cost(module, layer, work))
                                          : layer_cost(fallback_.cost(module, layer, work));
  }

  // Layers [first, last) of `module`: the primary's chunk cost where it covers them all, the
  // fallback's where it covers none (so a model's own chunk_cost, a per-stage overhead say, is
  // kept), else the sum of the layers' costs.
  layer_cost chunk_cost(const module_spec& module, std::size_t first, std::size_t last, const work_unit& work) const {
    std::size_t covered = 0;
    for (std::size_t layer = first; layer < last; ++layer) covered += primary_.covers(module, layer) ? 1 : 0;
    if (covered == last - first) return dip::chunk_cost(primary_, module, first, last, work);
    if (covered == 0) return dip::chunk_cost(fallback_, module, first, last, work);
    return sum_of_layer_costs(*this, module, first, last, work);
  }

  const Primary& primary() const noexcept { return primary_; }
  const Fallback& fallback() const noexcept { return fallback_; }

 private:
  Primary primary_;
  Fallback fallback_;
};

}  // namespace dip
