// The static partitions DIP is compared against. Both put all layers of all modules, in model
// (topological) order, into ranks * chunks_per_rank contiguous chunks, chunk c on rank c mod
// ranks, and run every microbatch whole:
// - megatron_partition: chunks balanced by parameter count, as Megatron-LM balances pipeline
//   stages when told nothing about time (it ignores that an encoder layer and an LLM layer of
//   equal size do unequal work);
// - balanced_partition: chunks balanced by forward + backward time under the cost model, the
//   exact min-max cut: the DIP paper's "best exhaustive partition", the best any contiguous
//   static split can do.
// With chunk_order::v_shape (two chunks per rank) chunk c is on rank c going out and on rank
// 2 ranks - 1 - c coming back, the placement of ZB-V and DualPipeV. Both check the weight
// memory per rank like the modality-aware partitioner does.
#pragma once

#include <string>
#include <vector>

#include "dip/cost/cost_model.hpp"
#include "dip/model/model.hpp"
#include "dip/partition/contiguous_placement.hpp"
#include "dip/partition/weight_memory.hpp"

namespace dip {

inline placement megatron_partition(const multimodal_model& model, int ranks, int chunks_per_rank = 1,
                                    const weight_memory_rule& memory = {},
                                    chunk_order order = chunk_order::round_robin) {
  const std::vector<layer_ref> layers = layers_in_order(model);
  std::vector<double> weights;
  weights.reserve(layers.size());
  for (const layer_ref& l : layers) weights.push_back(double(parameter_count(model.module(l.module).layers[l.layer])));
  placement p = contiguous_placement(model, layers, weights, ranks, chunks_per_rank, order);
  check_weight_memory(model, p, memory, "megatron partition of model '" + model.name() + "'");
  return p;
}

template <cost_model_like Costs, class WorkOf>
placement balanced_partition(const multimodal_model& model, const Costs& costs, WorkOf&& work_of, int ranks,
                             int chunks_per_rank = 1, const weight_memory_rule& memory = {},
                             chunk_order order = chunk_order::round_robin) {
  placement p = sequential_placement(model, costs, work_of, ranks, chunks_per_rank, order);
  check_weight_memory(model, p, memory, "balanced partition of model '" + model.name() + "'");
  return p;
}

}  // namespace dip
