// Test support shared by the simulator, validator, memory-strategy, lower-bound and export tests:
// models of opaque layers, random multimodal cases (module graphs, placements, batches), random
// small stage graphs and random valid compute orders for a stage graph.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <memory>

#include <dip/cost/fixed_table.hpp>
#include <dip/model/model.hpp>
#include <dip/model/module.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/stage_graph.hpp>

namespace dip_test {

// A module of `layers` opaque layers, to be priced by a fixed cost table.
inline dip::module_spec opaque_module(const std::string& name, std::size_t layers) {
  dip::module_spec m;
  m.name = name;
  for (std::size_t i = 0; i < layers; ++i)
    m.layers.push_back(dip::opaque_layer{std::string(1, 'l').append(std::to_string(i)), 0, 0});
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
  return std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(model, p, batch, costs, {.split_backward = split}));
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

// --- random multimodal cases -------------------------------------------------------------------

inline int random_int(std::mt19937_64& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

// Module graphs the planner meets: an LM alone, encoders feeding it, or it feeding a decoder.
// Names are in first-mention order, "lm" first.
struct random_module_graph {
  std::vector<std::string> names;
  std::vector<std::pair<const char*, const char*>> edges;
};

inline random_module_graph random_module_graph_of(std::mt19937_64& rng) {
  static const std::vector<std::vector<std::pair<const char*, const char*>>> shapes = {
      {}, {{"vit", "lm"}}, {{"vit", "lm"}, {"aud", "lm"}}, {{"lm", "dit"}}, {{"vit", "lm"}, {"lm", "dit"}}};
  random_module_graph out{{"lm"}, shapes[std::size_t(random_int(rng, 0, int(shapes.size()) - 1))]};
  for (const auto& [from, to] : out.edges) {
    for (const char* n : {from, to}) {
      if (std::find(out.names.begin(), out.names.end(), n) == out.names.end()) out.names.push_back(n);
    }
  }
  return out;
}

// One chain over `modules` (all their layers, in order), cut at random into 1..max_chunks chunks
// placed on random ranks.
inline void add_random_chain(dip::placement& p, const std::vector<std::pair<dip::module_id, std::size_t>>& modules,
                             int max_chunks, std::mt19937_64& rng) {
  std::vector<std::pair<dip::module_id, std::size_t>> layers;
  for (const auto& [m, count] : modules) {
    for (std::size_t i = 0; i < count; ++i) layers.emplace_back(m, i);
  }
  const int chunks = random_int(rng, 1, std::min(max_chunks, int(layers.size())));
  std::vector<std::size_t> cuts(layers.size() - 1);
  for (std::size_t i = 0; i < cuts.size(); ++i) cuts[i] = i + 1;
  std::shuffle(cuts.begin(), cuts.end(), rng);
  cuts.resize(std::size_t(chunks - 1));
  cuts.push_back(0);
  cuts.push_back(layers.size());
  std::sort(cuts.begin(), cuts.end());
  const std::size_t chain = p.chains.size();
  p.chains.emplace_back();
  p.chain_inputs.emplace_back();
  for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
    dip::chunk_spec chunk;
    chunk.rank = dip::rank_id::from_index(std::size_t(random_int(rng, 0, p.ranks - 1)));
    chunk.chain = chain;
    chunk.position = k;
    for (std::size_t i = cuts[k]; i < cuts[k + 1]; ++i) {
      if (chunk.spans.empty() || chunk.spans.back().module != layers[i].first) {
        chunk.spans.push_back({layers[i].first, layers[i].second, layers[i].second + 1});
      } else {
        chunk.spans.back().last = layers[i].second + 1;
      }
    }
    p.chains[chain].push_back(dip::chunk_id::from_index(p.chunks.size()));
    p.chunks.push_back(std::move(chunk));
  }
}

// 1-4 ranks; half the time (with several modules) modality-aware, one chain per module fed by
// the chains of its input modules, else one chain through every module in topological order.
inline dip::placement random_placement(const dip::multimodal_model& model, int max_chunks, std::mt19937_64& rng) {
  dip::placement placement;
  placement.ranks = random_int(rng, 1, 4);
  if (model.module_count() > 1 && random_int(rng, 0, 1) == 1) {
    for (const dip::module_spec& m : model.modules()) {
      add_random_chain(placement, {{m.id, m.layers.size()}}, max_chunks, rng);
      for (dip::module_id input : model.inputs_of(m.id)) placement.chain_inputs.back().push_back(input.index());
    }
  } else {
    std::vector<std::pair<dip::module_id, std::size_t>> all;
    for (dip::module_id m : model.topological_order()) all.emplace_back(m, model.module(m).layers.size());
    add_random_chain(placement, all, max_chunks, rng);
  }
  return placement;
}

// 1-4 microbatches, each module split into 1-3 sub-microbatches of `tokens(rng)` tokens.
inline dip::batch_work random_batch(const dip::multimodal_model& model, std::mt19937_64& rng,
                                    const std::function<double(std::mt19937_64&)>& tokens) {
  dip::batch_work batch;
  const int microbatches = random_int(rng, 1, 4);
  for (int j = 0; j < microbatches; ++j) {
    dip::microbatch_work mb;
    for (std::size_t m = 0; m < model.module_count(); ++m) {
      mb.modules.emplace_back();
      const int subs = random_int(rng, 1, 3);
      for (int s = 0; s < subs; ++s) mb.modules.back().push_back(dip::work_unit::sequence(tokens(rng)));
    }
    batch.microbatches.push_back(std::move(mb));
  }
  return batch;
}

// Draws from one seeded engine, as the random-case generators of the tests make them.
class random_draws {
 public:
  explicit random_draws(std::uint64_t seed) : rng_(seed) {}
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool coin(double p = 0.5) { return uniform(0, 1) < p; }
  std::mt19937_64& rng() { return rng_; }

 protected:
  std::mt19937_64 rng_;
};

// --- random small stage graphs (several chains, sub-microbatches, split or not) --------------
// An LM chain, fed half the time by an encoder chain, one layer per chunk on 1-3 random ranks,
// 1-3 microbatches of 1-2 sub-microbatches per module, the backward split half the time.
class graph_generator : public random_draws {
 public:
  using random_draws::random_draws;

  std::shared_ptr<const dip::stage_graph> make_graph() {
    const bool encoder = coin();
    dip::model_builder builder("random");
    dip::fixed_cost_table costs;
    std::vector<std::string> names = encoder ? std::vector<std::string>{"vit", "lm"} : std::vector<std::string>{"lm"};
    for (const std::string& n : names) {
      const std::size_t layers = std::size_t(integer(1, 4));
      builder.add(opaque_module(n, layers));
      std::vector<dip::fixed_layer_cost> per_layer;
      for (std::size_t i = 0; i < layers; ++i) {
        dip::fixed_layer_cost c;
        c.cost = {dip::milliseconds(uniform(0.1, 5)), dip::milliseconds(uniform(0.1, 5)),
                  dip::milliseconds(uniform(0.1, 5)), coin(0.1) ? dip::bytes{} : dip::mib(uniform(10, 2000)),
                  coin(0.2) ? dip::bytes{} : dip::mib(uniform(1, 300))};
        per_layer.push_back(c);
      }
      costs.set(n, per_layer);
    }
    if (encoder) builder.connect("vit", "lm");
    const dip::multimodal_model model = builder.build();
    dip::placement placement;
    placement.ranks = integer(1, 3);
    for (const dip::module_spec& m : model.modules()) {
      const std::size_t chain = placement.chains.size();
      placement.chains.emplace_back();
      placement.chain_inputs.emplace_back();
      for (dip::module_id input : model.inputs_of(m.id)) placement.chain_inputs.back().push_back(input.index());
      for (std::size_t k = 0; k < m.layers.size(); ++k) {
        placement.chunks.push_back(
            {{{m.id, k, k + 1}}, dip::rank_id::from_index(std::size_t(integer(0, placement.ranks - 1))), chain, k});
        placement.chains[chain].push_back(dip::chunk_id::from_index(placement.chunks.size() - 1));
      }
    }
    dip::batch_work batch;
    const int microbatches = integer(1, 3);
    for (int j = 0; j < microbatches; ++j) {
      dip::microbatch_work mb;
      for (std::size_t m = 0; m < model.module_count(); ++m) {
        mb.modules.emplace_back();
        const int subs = integer(1, 2);
        for (int s = 0; s < subs; ++s) mb.modules.back().push_back(dip::work_unit::sequence(1));
      }
      batch.microbatches.push_back(std::move(mb));
    }
    return std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(model, placement, batch, costs, {.split_backward = coin()}));
  }
};

}  // namespace dip_test
