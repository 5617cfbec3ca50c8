// GPU presets: what the analytic cost model and the simulator need to know about a device.
//
// Figures are the vendor's dense (no sparsity) BF16 tensor-core peak, HBM bandwidth and
// capacity, NVLink bandwidth per direction per GPU, and the scale-out network bandwidth per GPU
// per direction of the usual 8-GPU node built around it.
#pragma once

#include <array>
#include <string>
#include <string_view>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"

namespace dip {

struct gpu_spec {
  std::string name;
  flop_rate peak_bf16{};  // dense BF16 tensor-core peak
  bandwidth hbm{};        // device memory bandwidth
  bytes memory{};         // device memory capacity
  bandwidth nvlink{};     // per GPU, per direction, inside a node
  bandwidth network{};    // per GPU, per direction, across nodes
  int gpus_per_node = 8;
};

// NVIDIA H800 SXM5 (datasheet: 989.5 TFLOPS BF16 dense, 3.35 TB/s HBM3, 80 GB, NVLink 400 GB/s
// bidirectional). Network as in DIP's testbed (DESIGN.md): 8 x 200 Gb/s RoCE per node, i.e.
// 25 GB/s per GPU.
inline gpu_spec h800() {
  return {"H800",
          teraflops_per_second(989.5),
          gigabytes_per_second(3350),
          gigabytes(80),
          gigabytes_per_second(200),
          gigabytes_per_second(25),
          8};
}

// NVIDIA H100 SXM5 (datasheet: 989.5 TFLOPS BF16 dense, 3.35 TB/s HBM3, 80 GB, NVLink 4
// 900 GB/s bidirectional). Network: 8 x 400 Gb/s NDR InfiniBand per node (DGX H100), 50 GB/s
// per GPU.
inline gpu_spec h100() {
  return {"H100",
          teraflops_per_second(989.5),
          gigabytes_per_second(3350),
          gigabytes(80),
          gigabytes_per_second(450),
          gigabytes_per_second(50),
          8};
}

// NVIDIA H200 SXM (datasheet: 989.5 TFLOPS BF16 dense, 4.8 TB/s HBM3e, 141 GB, NVLink 4
// 900 GB/s bidirectional). Network: 8 x 400 Gb/s per node (HGX H200), 50 GB/s per GPU.
inline gpu_spec h200() {
  return {"H200",
          teraflops_per_second(989.5),
          gigabytes_per_second(4800),
          gigabytes(141),
          gigabytes_per_second(450),
          gigabytes_per_second(50),
          8};
}

// NVIDIA H20 (vendor product brief: 148 TFLOPS BF16 dense, 4.0 TB/s HBM3, 96 GB, NVLink
// 900 GB/s bidirectional). Network: 8 x 400 Gb/s per node, 50 GB/s per GPU.
inline gpu_spec h20() {
  return {"H20",
          teraflops_per_second(148),
          gigabytes_per_second(4000),
          gigabytes(96),
          gigabytes_per_second(450),
          gigabytes_per_second(50),
          8};
}

inline std::array<gpu_spec, 4> gpu_presets() { return {h800(), h100(), h200(), h20()}; }

// Case-insensitive lookup ("h800", "H800"); an unknown name is a dip::error listing the presets.
inline gpu_spec find_gpu(std::string_view name) {
  const auto lower = [](std::string_view text) {
    std::string out(text);
    for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    return out;
  };
  std::string known;
  for (const gpu_spec& gpu : gpu_presets()) {
    if (lower(gpu.name) == lower(name)) return gpu;
    known += (known.empty() ? "" : ", ") + gpu.name;
  }
  throw error(errc::not_found, "gpu", "unknown GPU '" + std::string(name) + "' (known: " + known + ")");
}

// The link between pipeline neighbours, as the simulator and the interleaver price transfers.
struct communication_model {
  duration latency{};  // per message, overlaps with other transfers on the link
  bandwidth link{};    // per directed rank pair; link.base() == 0 means transfers are free (latency only)
};

// The link pipeline neighbours cross on `gpu`'s cluster: NVLink when the whole pipeline (tp * pp
// GPUs) fits in one node, else the network, the slowest link some neighbours must cross.
inline communication_model pipeline_link(const gpu_spec& gpu, int tp, int pp, duration latency = {}) {
  return {latency, tp * pp <= gpu.gpus_per_node ? gpu.nvlink : gpu.network};
}

}  // namespace dip
