// Classic contiguous placements: one chain over every layer of the model in topological order,
// cut into ranks * chunks_per_rank chunks by the exact min-max partition of per-layer weights
// (parameters for Megatron's split, forward + backward time for the balanced one). Chunk c goes
// on rank c mod ranks (round robin: GPipe, 1F1B, Megatron's interleaving) or, with two chunks
// per rank, on the V: rank c going out and rank 2 ranks - 1 - c coming back (ZB-V, DualPipeV),
// so that rank 0 holds the first and the last chunk (chunk_order.hpp).
// dip/partition/baseline_partitions.hpp adds the weight-memory check.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/model/model.hpp"
#include "dip/partition/chunk_order.hpp"
#include "dip/partition/min_max.hpp"
#include "dip/partition/placement.hpp"

namespace dip {

// Every layer of the model, module by module in topological order: the order in which a classic
// pipeline (one chain over the whole model) runs them.
struct layer_ref {
  module_id module;
  std::size_t layer = 0;
};

inline std::vector<layer_ref> layers_in_order(const multimodal_model& model) {
  std::vector<layer_ref> layers;
  for (module_id m : model.topological_order()) {
    for (std::size_t i = 0; i < model.module(m).layers.size(); ++i) layers.push_back({m, i});
  }
  return layers;
}

// One chain over `layers` (in order), cut into ranks * chunks_per_rank chunks of consecutive
// layers by the exact min-max partition of `weights` (one per layer), chunk c on the rank that
// `order` gives it (chunk_order.hpp): round robin for Megatron's interleaving, or plain
// 1F1B/GPipe with chunks_per_rank = 1; the V of ZB-V and DualPipeV with chunks_per_rank = 2.
// Throws if there are fewer layers than chunks.
inline placement contiguous_placement(const multimodal_model& model, std::span<const layer_ref> layers,
                                      std::span<const double> weights, int ranks, int chunks_per_rank,
                                      chunk_order order = chunk_order::round_robin) {
  require(ranks >= 1, errc::invalid_argument, "pp", "must be >= 1, got " + std::to_string(ranks));
  require(chunks_per_rank >= 1, errc::invalid_argument, "chunks",
          "must be >= 1, got " + std::to_string(chunks_per_rank));
  require(layers.size() == weights.size(), errc::invalid_argument, "contiguous_placement",
          "needs one weight per layer");
  const std::size_t parts = std::size_t(ranks) * std::size_t(chunks_per_rank);
  require(layers.size() >= parts, errc::infeasible, "placement",
          "model '" + model.name() + "' has " + std::to_string(layers.size()) + " layers, fewer than the " +
              std::to_string(parts) + " chunks requested (pp x chunks)");
  const contiguous_partition cut = min_max_partition(weights, parts, "placement of model '" + model.name() + "'");

  placement p;
  p.ranks = ranks;
  p.chains.assign(1, {});
  p.chain_inputs.assign(1, {});
  for (std::size_t k = 0; k < parts; ++k) {
    chunk_spec chunk;
    chunk.rank = rank_id::from_index(chunk_rank_in_order(k, std::size_t(ranks), order));
    chunk.chain = 0;
    chunk.position = k;
    for (std::size_t i = cut.starts[k]; i < cut.end_of(k, layers.size()); ++i) {
      if (chunk.spans.empty() || chunk.spans.back().module != layers[i].module) {
        chunk.spans.push_back({layers[i].module, layers[i].layer, layers[i].layer + 1});
      } else {
        chunk.spans.back().last = layers[i].layer + 1;
      }
    }
    p.chains[0].push_back(chunk_id::from_index(k));
    p.chunks.push_back(std::move(chunk));
  }
  validate(p, model);
  return p;
}

// The classic pipeline placement balanced on time: contiguous_placement with each layer weighing
// its forward + backward time under `costs` for `work_of(module)`. This is the best static
// ("exhaustive") mixed partition of the DIP paper: no contiguous cut has a lighter slowest stage.
template <cost_model_like Costs, class WorkOf>
placement sequential_placement(const multimodal_model& model, const Costs& costs, WorkOf&& work_of, int ranks,
                               int chunks_per_rank, chunk_order order = chunk_order::round_robin) {
  const std::vector<layer_ref> layers = layers_in_order(model);
  std::vector<double> weights;
  weights.reserve(layers.size());
  work_unit work;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const module_spec& spec = model.module(layers[i].module);
    if (i == 0 || layers[i - 1].module != layers[i].module) work = work_of(spec);
    const layer_cost c = costs.cost(spec, layers[i].layer, work);
    weights.push_back(to_seconds(c.forward + c.backward()));
  }
  return contiguous_placement(model, layers, weights, ranks, chunks_per_rank, order);
}

}  // namespace dip
