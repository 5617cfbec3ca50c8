// Forward and backward of a range of one module's layers on one unit: the pieces both the
// executor (a chunk at a time) and the sequential reference (a module at a time) are built
// from, so that the two compute the very same floating-point operations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/tensor.hpp"

namespace dip::exec {

// A unit between layers: its hidden rows and its context rows (the producer rows it
// cross-attends to; 0x0 without). `inject` holds, until the module's first layer has run, the
// producer's image rows that replace the embedding's output (exec/data.hpp).
// T is the compute backend's tensor (exec::tensor on the CPU; byte_size(T) is found by ADL).
template <class T>
struct basic_unit_state {
  T x;
  T c;
  T inject;
  std::size_t bytes() const noexcept { return byte_size(x) + byte_size(c) + byte_size(inject); }
};
using unit_state = basic_unit_state<tensor>;

// A producer's output rows for some of its items (increasing), in item order.
template <class T>
struct basic_item_rows {
  std::vector<std::size_t> items;
  T rows;
};
using item_rows_of = basic_item_rows<tensor>;

// Where the injected rows go in the packed sequence: one range per injected image.
inline std::vector<row_range> inject_ranges(const exported_microbatch& mb, const unit_info& info) {
  std::vector<row_range> out;
  for (std::size_t k = 0; k < info.inject_items.size(); ++k) {
    out.push_back({info.inject_at[k], mb.images.at(info.inject_items[k]).tokens});
  }
  return out;
}

// Whether one of layers [first, last) of the unit's module reads its context (a dit block).
inline bool reads_context(const executable_model& model, unit_key key, std::size_t first, std::size_t last) {
  for (std::size_t i = first; i < last; ++i) {
    if (model.at(key.module, i).context_width() > 0) return true;
  }
  return false;
}

// Layers [first, last) of the unit's module, forward; appends one tape per layer when `tapes`.
inline void forward_layers(const executable_model& model, const exported_microbatch& mb, unit_key key,
                           std::size_t first, std::size_t last, unit_state& state, const unit_info& info,
                           std::vector<layer_tape>* tapes) {
  const tensor c = reads_context(model, key, first, last) ? expand_context(state.c, info, state.x.rows()) : tensor();
  for (std::size_t i = first; i < last; ++i) {
    layer_tape tape;
    state.x = model.at(key.module, i).forward(state.x, c, info.segments, tape);
    if (i == 0 && model.start(key.module) == module_start::injection) {
      state.x = place_rows(std::move(state.x), inject_ranges(mb, info), state.inject);
      state.inject = tensor();
    }
    if (tapes) tapes->push_back(std::move(tape));
  }
}

// Layers [first, last) backward from dy (the gradient of layer last-1's output), tapes[i - first]
// being layer i's. Adds to dc (the gradient of the context rows `c`) layer by layer, sets
// d_inject when it passes an injecting first layer; jobs[i - first] receives layer i's weight jobs.
inline tensor backward_layers(const executable_model& model, const exported_microbatch& mb, unit_key key,
                              std::size_t first, std::size_t last, const std::vector<layer_tape>& tapes,
                              const tensor& c, tensor dy, tensor& dc, tensor& d_inject, const unit_info& info,
                              std::vector<std::vector<weight_job>>& jobs) {
  jobs.assign(last - first, {});
  const std::int64_t width = model.context_width(key.module);
  const tensor rows_c = reads_context(model, key, first, last) ? expand_context(c, info, dy.rows()) : tensor();
  for (std::size_t i = last; i-- > first;) {
    const bool context = model.at(key.module, i).context_width() > 0;
    if (i == 0 && model.start(key.module) == module_start::injection) {
      const std::vector<row_range> ranges = inject_ranges(mb, info);
      d_inject = gather_rows(dy, ranges);
      dy = place_rows(std::move(dy), ranges, tensor::Zero(d_inject.rows(), d_inject.cols()));
    }
    tensor d_rows = context ? tensor::Zero(dy.rows(), width).eval() : tensor();
    dy = model.at(key.module, i)
             .backward_input(tapes[i - first], context ? rows_c : tensor(), dy, d_rows, jobs[i - first]);
    if (context) dc += reduce_context(d_rows, info, c.rows());
  }
  return dy;
}

}  // namespace dip::exec
