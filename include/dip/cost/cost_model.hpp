// The cost-model concept: what one layer costs for one unit of work.
//
// Every planning algorithm in dip is a template over `cost_model_like`, so a trainer can plug
// in the model it trusts (analytic, profiled, a table of measurements, or its own):
//
// @code
//   struct my_costs {
//     dip::layer_cost cost(const dip::module_spec& module, std::size_t layer,
//                          const dip::work_unit& work) const {
//       const double ms_per_token = module.name == "vit" ? 0.002 : 0.004;
//       return {.forward = dip::milliseconds(ms_per_token * work.tokens),
//               .backward_input = dip::milliseconds(ms_per_token * work.tokens),
//               .backward_weight = dip::milliseconds(ms_per_token * work.tokens)};
//     }
//   };
//   static_assert(dip::cost_model_like<my_costs>);
// @endcode
//
// A model may also provide `chunk_cost(module, first, last, work)` when it can cost a run of
// layers faster or better than the sum of its layers; `dip::chunk_cost` uses it when present.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/work.hpp"
#include "dip/model/module.hpp"

namespace dip {

// What a layer (or a chunk of consecutive layers) costs for one unit of work.
struct layer_cost {
  duration forward{};
  duration backward_input{};   // gradient with respect to the layer's input (zero-bubble "I")
  duration backward_weight{};  // gradient with respect to the layer's weights (zero-bubble "W")
  bytes activation{};          // kept from the forward pass until the backward pass
  bytes output{};              // sent to the next layer or stage (and its gradient sent back)

  duration backward() const noexcept { return backward_input + backward_weight; }
  friend bool operator==(const layer_cost&, const layer_cost&) = default;
};

template <class M>
concept cost_model_like = requires(const M& model, const module_spec& module, std::size_t layer,
                                   const work_unit& work) {
  { model.cost(module, layer, work) } -> std::convertible_to<layer_cost>;
};

template <class M>
concept chunk_cost_model_like = cost_model_like<M> &&
    requires(const M& model, const module_spec& module, std::size_t first, std::size_t last, const work_unit& work) {
  { model.chunk_cost(module, first, last, work) } -> std::convertible_to<layer_cost>;
};

// The sum of layers [first, last)'s costs: times and kept activations add up, the output is the
// last layer's. The range is not checked (chunk_cost checks it).
template <cost_model_like M>
layer_cost sum_of_layer_costs(const M& model, const module_spec& module, std::size_t first, std::size_t last,
                              const work_unit& work) {
  layer_cost total;
  for (std::size_t layer = first; layer < last; ++layer) {
    const layer_cost one = model.cost(module, layer, work);
    total.forward += one.forward;
    total.backward_input += one.backward_input;
    total.backward_weight += one.backward_weight;
    total.activation += one.activation;
    total.output = one.output;
  }
  return total;
}

// The cost of layers [first, last) of `module`: the model's chunk_cost when it has one, else the
// sum of the layers' costs. Throws dip::error for an empty or out-of-range layer range.
template <cost_model_like M>
layer_cost chunk_cost(const M& model, const module_spec& module, std::size_t first, std::size_t last,
                      const work_unit& work) {
  if (first >= last || last > module.layers.size()) {
    throw error(errc::invalid_argument, "module '" + module.name + "'",
                "layer range [" + std::to_string(first) + ", " + std::to_string(last) + ") is empty or beyond its " +
                    std::to_string(module.layers.size()) + " layers");
  }
  if constexpr (chunk_cost_model_like<M>) {
    return model.chunk_cost(module, first, last, work);
  } else {
    return sum_of_layer_costs(model, module, first, last, work);
  }
}

// Throws dip::error naming `where` (say "module 'vit' layer 3") if a cost is negative, NaN or
// infinite: a cost model's output is user input too, and a NaN would poison every schedule.
inline void validate(const layer_cost& cost, const std::string& where) {
  const auto check = [&](double value, const char* field) {
    if (!std::isfinite(value) || value < 0.0) {
      throw error(errc::invalid_argument, where,
                  std::string(field) + " = " + std::to_string(value) + "; costs must be finite and >= 0");
    }
  };
  check(cost.forward.base(), "forward");
  check(cost.backward_input.base(), "backward_input");
  check(cost.backward_weight.base(), "backward_weight");
  check(cost.activation.base(), "activation");
  check(cost.output.base(), "output");
}

}  // namespace dip
