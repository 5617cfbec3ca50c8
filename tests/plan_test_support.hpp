// Test support shared by the simulator and validator tests: models of opaque layers and random
// valid compute orders for a stage graph.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

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
