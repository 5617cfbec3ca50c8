// Test support shared by the simulator and validator tests: models of opaque layers and random
// valid compute orders for a stage graph.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <memory>

#include <dip/cost/fixed_table.hpp>
#include <dip/model/model.hpp>
#include <dip/model/module.hpp>
#include <dip/schedule/stage_graph.hpp>

namespace dip_test {

// A module of `layers` opaque layers, to be priced by a fixed cost table.
inline dip::module_spec opaque_module(const std::string& name, std::size_t layers) {
  dip::module_spec m;
  m.name = name;
  for (std::size_t i = 0; i < layers; ++i) m.layers.push_back(dip::opaque_layer{std::string(1, 'l').append(std::to_string(i)), 0, 0});
  return m;
}

// A one-module chain whose chunk k is layer k on rank rank_of_chunk[k], every layer costing
// `cost`, with `microbatches` identical one-token microbatches.
inline std::shared_ptr<const dip::stage_graph> chain_graph(const std::vector<int>& rank_of_chunk, int ranks,
                                                           std::size_t microbatches, dip::layer_cost cost,
                                                           bool split = false) {
  const std::size_t layers = rank_of_chunk.size();
  const dip::multimodal_model model = dip::model_builder("toy").add(opaque_module("lm", layers)).build();
  dip::fixed_cost_table costs;
  costs.set_uniform("lm", layers, {cost, 0});
  dip::placement p;
  p.ranks = ranks;
  p.chains.emplace_back();
  p.chain_inputs.emplace_back();
  for (std::size_t k = 0; k < layers; ++k) {
    p.chunks.push_back({{{model.at("lm"), k, k + 1}}, dip::rank_id::from_index(std::size_t(rank_of_chunk[k])), 0, k});
    p.chains[0].push_back(dip::chunk_id::from_index(k));
  }
  const dip::batch_work batch =
      dip::uniform_batch(model, microbatches, [](const dip::module_spec&) { return dip::work_unit::sequence(1); });
  return std::make_shared<const dip::stage_graph>(dip::build_stage_graph(model, p, batch, costs, {.split_backward = split}));
}

// A random linear extension of the stage graph (Kahn's algorithm picking a random ready stage),
// dealt out to each stage's rank in that order: always a deadlock-free plan.
inline std::vector<std::vector<dip::stage_id>> random_order(const dip::stage_graph& g, std::mt19937_64& rng) {
  std::vector<std::size_t> indegree(g.size());
  std::vector<dip::stage_id> ready;
  for (std::size_t s = 0; s < g.size(); ++s) {
    indegree[s] = g.in_edges(dip::stage_id::from_index(s)).size();
    if (indegree[s] == 0) ready.push_back(dip::stage_id::from_index(s));
  }
  std::vector<std::vector<dip::stage_id>> order(static_cast<std::size_t>(g.ranks()));
  while (!ready.empty()) {
    std::swap(ready[rng() % ready.size()], ready.back());
    const dip::stage_id s = ready.back();
    ready.pop_back();
    order[g.at(s).rank.index()].push_back(s);
    for (std::uint32_t e : g.out_edges(s)) {
      const dip::stage_id to = g.edges()[e].to;
      if (--indegree[to.index()] == 0) ready.push_back(to);
    }
  }
  return order;
}

}  // namespace dip_test
