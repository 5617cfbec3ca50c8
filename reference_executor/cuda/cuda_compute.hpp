// dip::exec::cuda::cuda_compute: the CUDA compute backend of the executor's shared walk
// (dip::exec::compute_backend_like, compute_backend.hpp). One object per rank, on that rank's
// device_context; everything it enqueues goes to the rank's compute stream.
//
// The layer math is layers.hpp's, step for step (same tapes, same weight jobs in the same
// order), on fp32 device tensors: every matrix product is a cuBLAS GEMM with bf16 inputs and
// fp32 accumulation (device.hpp), the rest our kernels (kernels.cuh): RMSNorm forward and
// backward, SiLU, row softmax and its backward, column sums, losses. Parameters are the
// executable_model's (double), uploaded once per rank as fp32 master copies; weight gradients
// come back to the host as double tensors, so the CPU backend's gradient_store reduces them.
// Against the exact CPU backend the results agree to bf16 precision (see `gradient_tolerance`).
//
// What synchronises the host: a loss (its value is read back), a weight gradient (read back for
// the store), offload/restore (the tapes go to host memory and back) and finish().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "device.hpp"
#include "dip/exec/bundle.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/executor.hpp"
#include "dip/exec/layers.hpp"

namespace dip::exec::cuda {

// Relative tolerance (|got - want|_F / |want|_F per gradient tensor) of the CUDA backend
// against the CPU backend: bf16 keeps 8 significant bits (relative 2^-9 per input), the GEMMs
// accumulate in fp32, and errors grow through a few layers.
inline constexpr double gradient_tolerance = 2e-2;

// A layer's saved tensors (layers.hpp's slots); `host` holds them while offloaded.
struct gpu_tape {
  std::vector<device_tensor> saved;
  std::vector<std::vector<float>> host;
  std::vector<tensor_shape> shapes;
  std::size_t bytes() const noexcept {
    std::size_t total = 0;
    for (const device_tensor& t : saved) total += byte_size(t);
    for (const auto& h : host) total += h.size() * sizeof(float);
    return total;
  }
};

// layers.hpp's weight_job on the device.
struct gpu_job {
  std::size_t parameter = 0;
  device_tensor lhs, rhs;
  device_tensor value;
  bool ready = false;
  std::size_t bytes() const noexcept { return byte_size(lhs) + byte_size(rhs) + byte_size(value); }
};

// One message: the edge's tensors on the device, in the plan's order (the header is empty; the
// NCCL transport sends the shapes as metadata). A transport may fill a received one only when
// its group ends.
struct device_pack {
  tensor header;
  std::vector<device_tensor> tensors;
};
using device_message = std::shared_ptr<device_pack>;

class cuda_compute {
 public:
  using tensor_type = device_tensor;
  using tape_type = gpu_tape;
  using job_type = gpu_job;
  using pack_type = device_message;
  using state_type = basic_unit_state<device_tensor>;

  // `model` and `batch` outlive the backend.
  cuda_compute(const executable_model& model, const exported_batch& batch, const device_context& ctx)
      : model_(&model), batch_(&batch), ctx_(&ctx) {}

  // Row operations move few rows and run on the host (download, exec/data.hpp, upload).
  device_tensor synthetic(std::size_t j, unit_key key);
  device_tensor zeros(std::int64_t rows, std::int64_t cols);
  device_tensor gather(const device_tensor& t, const std::vector<row_range>& ranges);
  device_tensor place(device_tensor target, const std::vector<row_range>& ranges, const device_tensor& part);
  device_tensor scatter_add(device_tensor target, const std::vector<row_range>& ranges, const device_tensor& part);
  device_tensor reshape(const device_tensor& t, std::int64_t cols);
  tensor_shape shape(const device_tensor& t) const { return t.shape(); }

  void forward_layers(std::size_t j, unit_key key, std::size_t first, std::size_t last, state_type& state,
                      const unit_info& info, std::vector<gpu_tape>* tapes);
  device_tensor backward_layers(std::size_t j, unit_key key, std::size_t first, std::size_t last,
                                const std::vector<gpu_tape>& tapes, const device_tensor& c, device_tensor dy,
                                device_tensor& dc, device_tensor& d_inject, const unit_info& info,
                                std::vector<std::vector<gpu_job>>& jobs);
  basic_unit_loss<device_tensor> loss(std::size_t j, unit_key key, const device_tensor& y);
  std::vector<tensor> weight_gradients(std::size_t module, std::size_t layer, const std::vector<gpu_job>& jobs);
  void offload(gpu_tape& tape);
  void restore(gpu_tape& tape);
  std::size_t tape_bytes(const gpu_tape& t) const { return t.bytes(); }
  device_message pack(const basic_payload<device_tensor>& p);
  basic_payload<device_tensor> unpack(device_message message, const std::string& where);
  void finish();

  // One layer alone (tests compare it with layers.hpp): forward, then backward_input from dy.
  device_tensor layer_forward(std::size_t module, std::size_t index, const device_tensor& x, const device_tensor& c,
                              const sequence_lengths& lengths, gpu_tape& tape);
  device_tensor layer_backward(std::size_t module, std::size_t index, const gpu_tape& tape, const device_tensor& c,
                               const device_tensor& dy, device_tensor& dc, std::vector<gpu_job>& jobs);

  const device_context& context() const noexcept { return *ctx_; }

 private:
  const std::vector<device_tensor>& params(std::size_t module, std::size_t index);

  const executable_model* model_;
  const exported_batch* batch_;
  const device_context* ctx_;
  std::map<std::pair<std::size_t, std::size_t>, std::vector<device_tensor>> params_;
};

static_assert(compute_backend_like<cuda_compute>);

// Small device operations the backend is built from, exposed for tests.
device_tensor matmul(const device_context& ctx, const device_tensor& a, bool ta, const device_tensor& b, bool tb,
                     float alpha = 1.0f);
device_tensor rms_norm(const device_context& ctx, const device_tensor& x, const device_tensor& gain,
                       device_tensor& inverse);
device_tensor silu(const device_context& ctx, const device_tensor& u);

}  // namespace dip::exec::cuda
