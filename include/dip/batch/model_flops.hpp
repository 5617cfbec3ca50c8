// Model FLOPs of a batch: the useful work of training on it (forward, input gradient and weight
// gradient of every layer, as layer_ops.hpp counts them), without recompute, tensor-parallel
// collectives or anything else a schedule adds. Model FLOPs utilisation (MFU) is this over
// (iteration time x GPUs x each GPU's peak), the figure trainers report.
//
// @code
//   const dip::batch_work batch = dip::to_batch_work(dip::split_batch(packed, model, policy, costs));
//   const dip::model_flops_count f = dip::batch_model_flops(model, batch);
//   const double mfu = f.flops / (seconds * gpus * gpu.peak_bf16.base());  // peak in FLOP/s
// @endcode
//
// Layers known only by their measured costs (opaque layers of a model file, see
// docs/model-format.md) have no architecture to count: they add nothing and are counted in
// `opaque_layers`, so a caller can say the figure is a lower bound.
#pragma once

#include <cstddef>
#include <variant>

#include "dip/batch/batch_work.hpp"
#include "dip/cost/layer_ops.hpp"
#include "dip/model/model.hpp"

namespace dip {

struct model_flops_count {
  double flops = 0;               // forward + backward FLOPs over the whole batch
  std::size_t opaque_layers = 0;  // (layer, sub-microbatch) pairs left out: no architecture
};

// Sums flops_of over every microbatch, module, sub-microbatch and layer of `batch` (indexed as
// build_stage_graph reads it: microbatches[j].modules[module id][sub]). Splitting a microbatch
// into sub-microbatches does not change the sum: items are independent sequences.
inline model_flops_count batch_model_flops(const multimodal_model& model, const batch_work& batch) {
  model_flops_count count;
  for (const microbatch_work& mb : batch.microbatches) {
    for (std::size_t m = 0; m < mb.modules.size() && m < model.module_count(); ++m) {
      const module_spec& spec = model.module(module_id::from_index(m));
      for (const work_unit& work : mb.modules[m]) {
        if (work.empty()) continue;
        for (const layer_spec& layer : spec.layers) {
          if (std::holds_alternative<opaque_layer>(layer)) {
            ++count.opaque_layers;
            continue;
          }
          count.flops += flops_of(layer, work).total();
        }
      }
    }
  }
  return count;
}

}  // namespace dip
