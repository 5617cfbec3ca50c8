// dip::analytic_cost_model: a roofline model of each layer on a given GPU.
//
// Every operation of a layer (see layer_ops.hpp) takes
//     max(FLOPs / (peak * compute efficiency), bytes / (HBM bandwidth * memory efficiency))
// plus a kernel-launch overhead, so small sub-microbatches are memory- and launch-bound and big
// ones compute-bound: exactly the curve the partitioner reads a sub-microbatch size off.
// Tensor parallelism over `tp` GPUs divides every operation's FLOPs and bytes (Megatron with
// sequence parallelism) and adds its collectives, each moving n x hidden BF16 values as a ring
// (2 (tp-1)/tp of the tensor over NVLink), in the forward and again in the input-gradient pass.
// Activation and output bytes are per GPU (divided by tp, as sequence parallelism and
// Megatron's scatter-gather of pipeline transfers do).
#pragma once

#include <cstddef>
#include <string>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/cost/layer_ops.hpp"
#include "dip/model/hardware.hpp"
#include "dip/model/module.hpp"

namespace dip {

// Fractions of the hardware peaks that real kernels reach. Defaults are typical of Hopper with
// cuBLAS BF16 GEMMs and FlashAttention; calibrate them from measurements (the profiled model).
struct analytic_efficiency {
  double matmul = 0.75;
  double attention = 0.55;
  double memory = 0.80;
  double network = 0.80;
  duration kernel_launch = microseconds(4);
  duration collective_latency = microseconds(10);
};

class analytic_cost_model {
 public:
  explicit analytic_cost_model(gpu_spec gpu, int tensor_parallel = 1, analytic_efficiency efficiency = {})
      : gpu_(std::move(gpu)), tp_(tensor_parallel), eff_(efficiency) {
    require(tp_ >= 1, errc::invalid_argument, "analytic_cost_model",
            "tensor_parallel must be >= 1, got " + std::to_string(tp_));
    const double factors[] = {eff_.matmul, eff_.attention, eff_.memory, eff_.network};
    for (double f : factors) {
      require(f > 0.0 && f <= 1.0, errc::invalid_argument, "analytic_cost_model",
              "efficiency factors must lie in (0, 1], got " + std::to_string(f));
    }
    require(gpu_.peak_bf16.base() > 0 && gpu_.hbm.base() > 0 && gpu_.nvlink.base() > 0, errc::invalid_argument,
            "gpu '" + gpu_.name + "'", "peak FLOP/s, HBM and NVLink bandwidth must be > 0");
  }

  const gpu_spec& gpu() const noexcept { return gpu_; }
  int tensor_parallel() const noexcept { return tp_; }
  const analytic_efficiency& efficiency() const noexcept { return eff_; }

  layer_cost cost(const module_spec& module, std::size_t layer, const work_unit& work) const {
    if (layer >= module.layers.size()) {
      throw error(
          errc::invalid_argument, "module '" + module.name + "'",
          "layer " + std::to_string(layer) + " does not exist (it has " + std::to_string(module.layers.size()) + ")");
    }
    if (work.empty()) return {};
    const layer_spec& spec = module.layers[layer];
    const double tp = double(tp_);

    layer_cost result;
    for (const layer_op& op : forward_operations(spec, work)) {
      const double work_flops = op.flops / tp, traffic = op.traffic / tp;
      switch (op.kind) {
        case op_kind::matmul:
          result.forward += roofline(work_flops, traffic, eff_.matmul);
          result.backward_input += roofline(work_flops, traffic, eff_.matmul);
          result.backward_weight += roofline(work_flops, traffic, eff_.matmul);
          break;
        case op_kind::attention:
          result.forward += roofline(work_flops, traffic, eff_.attention);
          result.backward_input += roofline(2 * work_flops, 2 * traffic, eff_.attention);
          break;
        case op_kind::elementwise:
          result.forward += roofline(0, traffic, 1.0);
          result.backward_input += roofline(0, 2 * traffic, 1.0);
          break;
        case op_kind::gather:
          result.forward += roofline(0, traffic, 1.0);
          result.backward_weight += roofline(0, 2 * traffic, 1.0);
          break;
      }
    }
    const duration collectives = tensor_parallel_time(spec, work);
    result.forward += collectives;
    // An embedding has no input gradient (its input is token ids): its backward collective
    // feeds the weight gradient's scatter-add.
    (std::holds_alternative<embedding>(spec) ? result.backward_weight : result.backward_input) += collectives;
    result.activation = bytes(activation_bytes_of(spec, work) / tp);
    result.output = bytes(bf16_bytes * work.tokens * double(output_features(spec)) / tp);
    return result;
  }

  // Time of the tensor-parallel collectives of one pass (forward, or input-gradient backward).
  duration tensor_parallel_time(const layer_spec& layer, const work_unit& work) const {
    if (tp_ == 1) return {};
    const double tensor = bf16_bytes * work.tokens * collective_width(layer);
    const double moved = 2.0 * double(tp_ - 1) / double(tp_) * tensor;  // ring all-reduce
    const duration one = eff_.collective_latency + bytes(moved) / bandwidth(gpu_.nvlink.base() * eff_.network);
    return one * double(tensor_parallel_collectives(layer));
  }

 private:
  duration roofline(double op_flops, double traffic, double compute_efficiency) const {
    const double compute_s = op_flops / (gpu_.peak_bf16.base() * compute_efficiency);
    const double memory_s = traffic / (gpu_.hbm.base() * eff_.memory);
    return seconds(compute_s > memory_s ? compute_s : memory_s) + eff_.kernel_launch;
  }

  gpu_spec gpu_;
  int tp_;
  analytic_efficiency eff_;
};

static_assert(cost_model_like<analytic_cost_model>);

}  // namespace dip
