// dip::exec::cpu_compute: the exact compute backend: the layers of layers.hpp through
// unit_pass.hpp, in double precision on the CPU (Eigen), bit-exact. The host store is the same
// memory, so offload and restore move nothing; its messages are tensor_packs (bundle.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
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

  explicit cpu_compute(const executable_model& model) : model_(&model) {}

  unit_state start_unit(const microbatch_work& mb, std::size_t j, unit_key key,
                        const std::function<const tensor*(unit_key)>& output_of, const std::string& where) const {
    return dip::exec::start_unit(*model_, mb, j, key, output_of, where);
  }
  void forward_layers(unit_key key, std::size_t first, std::size_t last, unit_state& state,
                      const sequence_lengths& lengths, std::vector<layer_tape>* tapes) const {
    dip::exec::forward_layers(*model_, key, first, last, state, lengths, tapes);
  }
  tensor backward_layers(unit_key key, std::size_t first, std::size_t last, const std::vector<layer_tape>& tapes,
                         const tensor& c, tensor dy, tensor& dc, std::vector<std::vector<weight_job>>& jobs) const {
    return dip::exec::backward_layers(*model_, key, first, last, tapes, c, std::move(dy), dc, jobs);
  }
  basic_unit_loss<tensor> loss(std::size_t j, unit_key key, const tensor& y) const {
    unit_loss l = compute_loss(*model_, j, key, y);
    return {l.value, std::move(l.gradient)};
  }
  tensor output_gradient(const std::map<unit_key, tensor>& contributions, std::int64_t rows, std::int64_t width) const {
    return output_gradient_from_context(contributions, rows, width);
  }
  tensor zero_context_gradient(const tensor& c) const { return dip::exec::zero_context_gradient(c); }
  tensor divide(const tensor& t, double d) const { return t / d; }
  std::vector<tensor> weight_gradients(std::size_t module, std::size_t layer,
                                       const std::vector<weight_job>& jobs) const {
    return dip::exec::backward_weight(model_->at(module, layer), jobs);
  }
  // The host store is the same memory on the CPU: nothing to move.
  void offload(layer_tape&) const {}
  void restore(layer_tape&) const {}
  std::size_t tape_bytes(const layer_tape& t) const { return t.bytes(); }
  tensor_pack pack(const payload& p) const { return dip::exec::pack(p); }
  payload unpack(tensor_pack p, bool forward, const std::string& where) const {
    return dip::exec::unpack(std::move(p), forward, where);
  }
  void finish() const {}

 private:
  const executable_model* model_;
};

static_assert(compute_backend_like<cpu_compute>);

}  // namespace dip::exec
