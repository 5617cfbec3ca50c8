// dip::exec::cpu_compute: the exact compute backend: the layers of layers.hpp through
// unit_pass.hpp, in double precision on the CPU (Eigen), bit-exact. The host store is the same
// memory, so offload and restore move nothing; its messages are tensor_packs (bundle.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dip/exec/bundle.hpp"
#include "dip/exec/compute_backend.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/exec/unit_pass.hpp"

namespace dip::exec {

// The exact CPU backend: the layers of layers.hpp through unit_pass.hpp, in double precision.
class cpu_compute {
 public:
  using tensor_type = tensor;
  using tape_type = layer_tape;
  using job_type = weight_job;
  using pack_type = tensor_pack;

  // `model` and `batch` outlive the backend.
  cpu_compute(const executable_model& model, const exported_batch& batch) : model_(&model), batch_(&batch) {}

  tensor synthetic(std::size_t j, unit_key key) const { return synthetic_input(*model_, *batch_, j, key); }
  tensor zeros(std::int64_t rows, std::int64_t cols) const { return tensor::Zero(rows, cols); }
  tensor gather(const tensor& t, const std::vector<row_range>& ranges) const { return gather_rows(t, ranges); }
  tensor place(tensor target, const std::vector<row_range>& ranges, const tensor& part) const {
    return place_rows(std::move(target), ranges, part);
  }
  tensor scatter_add(tensor target, const std::vector<row_range>& ranges, const tensor& part) const {
    return scatter_add_rows(std::move(target), ranges, part);
  }
  tensor reshape(const tensor& t, std::int64_t cols) const { return reshape_rows(t, cols); }
  tensor_shape shape(const tensor& t) const { return shape_of(t); }

  void forward_layers(std::size_t j, unit_key key, std::size_t first, std::size_t last, unit_state& state,
                      const unit_info& info, std::vector<layer_tape>* tapes) const {
    dip::exec::forward_layers(*model_, batch_->microbatches.at(j), key, first, last, state, info, tapes);
  }
  tensor backward_layers(std::size_t j, unit_key key, std::size_t first, std::size_t last,
                         const std::vector<layer_tape>& tapes, const tensor& c, tensor dy, tensor& dc, tensor& d_inject,
                         const unit_info& info, std::vector<std::vector<weight_job>>& jobs) const {
    return dip::exec::backward_layers(*model_, batch_->microbatches.at(j), key, first, last, tapes, c, std::move(dy),
                                      dc, d_inject, info, jobs);
  }
  basic_unit_loss<tensor> loss(std::size_t j, unit_key key, const tensor& y) const {
    unit_loss l = compute_loss(*model_, *batch_, j, key, y);
    return {l.value, std::move(l.gradient)};
  }
  std::vector<tensor> weight_gradients(std::size_t module, std::size_t layer,
                                       const std::vector<weight_job>& jobs) const {
    return dip::exec::backward_weight(model_->at(module, layer), jobs);
  }
  // The host store is the same memory on the CPU: nothing to move.
  void offload(layer_tape&) const {}
  void restore(layer_tape&) const {}
  std::size_t tape_bytes(const layer_tape& t) const { return t.bytes(); }
  tensor_pack pack(const payload& p) const { return dip::exec::pack(p); }
  payload unpack(tensor_pack p, const std::string&) const { return dip::exec::unpack(std::move(p)); }
  void finish() const {}

 private:
  const executable_model* model_;
  const exported_batch* batch_;
};

static_assert(compute_backend_like<cpu_compute>);

}  // namespace dip::exec
