// Forward and backward of a range of one module's layers on one unit: the pieces both the
// executor (a chunk at a time) and the sequential reference (a module at a time) are built
// from, so that the two compute the very same floating-point operations.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/tensor.hpp"

namespace dip::exec {

// A unit between layers: its hidden rows and its module's context summary (0x0 without one).
// T is the compute backend's tensor (exec::tensor on the CPU; byte_size(T) is found by ADL).
template <class T>
struct basic_unit_state {
  T x;
  T c;
  std::size_t bytes() const noexcept { return byte_size(x) + byte_size(c); }
};
using unit_state = basic_unit_state<tensor>;

// What a module's first layer needs: its input and context summary. `output_of` finds a
// producer unit's output (nullptr when missing: an error naming `where`).
inline unit_state start_unit(const executable_model& model, const microbatch_work& mb, std::size_t j, unit_key key,
                             const std::function<const tensor*(unit_key)>& output_of, const std::string& where) {
  unit_state state;
  state.x = synthetic_input(model, j, key, unit_rows(mb.modules.at(key.module).at(key.unit)));
  const std::vector<unit_key> sources = context_sources(model, mb, key);
  if (sources.empty()) return state;
  std::vector<const tensor*> outputs;
  for (unit_key s : sources) {
    const tensor* y = output_of(s);
    require(y != nullptr, errc::invalid_argument, where,
            "module '" + model.model().modules()[key.module].name + "' unit " + std::to_string(key.unit) +
                " needs the output of module '" + model.model().modules()[s.module].name + "' unit " +
                std::to_string(s.unit) + ", which has not reached it");
    outputs.push_back(y);
  }
  state.c = context_summary(outputs);
  return state;
}

// Rows of the context a unit reads (the divisor of its context summary).
inline std::int64_t context_rows(const executable_model& model, const microbatch_work& mb, unit_key key) {
  std::int64_t rows = 0;
  for (unit_key s : context_sources(model, mb, key)) rows += unit_rows(mb.modules.at(s.module).at(s.unit));
  return rows;
}

// Layers [first, last) of the unit's module, forward; appends one tape per layer when `tapes`.
inline void forward_layers(const executable_model& model, unit_key key, std::size_t first, std::size_t last,
                           unit_state& state, const sequence_lengths& lengths, std::vector<layer_tape>* tapes) {
  for (std::size_t i = first; i < last; ++i) {
    layer_tape tape;
    state.x = model.at(key.module, i).forward(state.x, state.c, lengths, tape);
    if (tapes) tapes->push_back(std::move(tape));
  }
}

// Layers [first, last) backward from dy (the gradient of layer last-1's output), tapes[i - first]
// being layer i's. Accumulates into dc; jobs[i - first] receives layer i's weight jobs.
inline tensor backward_layers(const executable_model& model, unit_key key, std::size_t first, std::size_t last,
                              const std::vector<layer_tape>& tapes, const tensor& c, tensor dy, tensor& dc,
                              std::vector<std::vector<weight_job>>& jobs) {
  jobs.assign(last - first, {});
  for (std::size_t i = last; i-- > first;) {
    dy = model.at(key.module, i).backward_input(tapes[i - first], c, dy, dc, jobs[i - first]);
  }
  return dy;
}

inline tensor zero_context_gradient(const tensor& c) { return tensor::Zero(c.rows(), c.cols()); }

}  // namespace dip::exec
