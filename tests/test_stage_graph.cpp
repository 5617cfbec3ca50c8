// Placement and stage graph: the min-max cut is optimal (brute force), the graph has exactly the
// dependencies the pipeline needs, and the critical path has its closed form.
#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <random>

#include <dip/cost/fixed_table.hpp>
#include <dip/partition/contiguous_placement.hpp>
#include <dip/partition/placement.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/stage_graph.hpp>

using namespace dip::literals;

namespace {

dip::multimodal_model chain_model(std::size_t layers, const char* name = "lm") {
  dip::module_spec m;
  m.name = name;
  for (std::size_t i = 0; i < layers; ++i) m.layers.push_back(dip::opaque_layer{"l", 0, 0});
  return dip::model_builder("m").add(m).build();
}

const auto one_token = [](const dip::module_spec&) { return dip::work_unit::sequence(1); };

// Smallest possible largest-chunk weight over all cuts of `w` into `parts` non-empty pieces.
double brute_force_bottleneck(const std::vector<double>& w, std::size_t parts) {
  const std::size_t n = w.size();
  double best = std::numeric_limits<double>::infinity();
  // Choose parts-1 cut points among n-1 gaps (bitmask enumeration; n <= 12).
  for (std::uint32_t mask = 0; mask < (1u << (n - 1)); ++mask) {
    if (std::size_t(__builtin_popcount(mask)) != parts - 1) continue;
    double current = 0, worst = 0;
    for (std::size_t i = 0; i < n; ++i) {
      current += w[i];
      if (i + 1 == n || (mask >> i) & 1u) {
        worst = std::max(worst, current);
        current = 0;
      }
    }
    best = std::min(best, worst);
  }
  return best;
}

}  // namespace

TEST_CASE("sequential placement finds the min-max cut (brute force on 2000 random cases)") {
  std::mt19937_64 rng(20261121);
  for (int trial = 0; trial < 2000; ++trial) {
    CAPTURE(trial);
    const std::size_t n = 1 + rng() % 12;
    const int ranks = int(1 + rng() % std::min<std::size_t>(n, 4));
    const int per_rank = int(1 + rng() % std::max<std::size_t>(1, n / std::size_t(ranks)));
    const std::size_t parts = std::size_t(ranks * per_rank);
    if (parts > n) continue;
    std::vector<double> weights(n);
    std::vector<dip::fixed_layer_cost> costs;
    for (double& w : weights) {
      w = double(1 + rng() % 20);
      costs.push_back({{dip::milliseconds(w), {}, {}, {}, {}}, 0});
    }
    dip::fixed_cost_table table;
    table.set("lm", costs);
    const dip::multimodal_model model = chain_model(n);
    const dip::placement p = dip::sequential_placement(model, table, one_token, ranks, per_rank);
    REQUIRE(p.chunks.size() == parts);
    double worst = 0;
    std::size_t next = 0;
    for (std::size_t c = 0; c < parts; ++c) {
      const dip::chunk_spec& chunk = p.chunks[c];
      CHECK(chunk.rank.index() == c % std::size_t(ranks));  // round-robin (Megatron interleaving)
      REQUIRE(chunk.spans.size() == 1);
      CHECK(chunk.spans[0].first == next);  // consecutive, complete
      next = chunk.spans[0].last;
      double sum = 0;
      for (std::size_t i = chunk.spans[0].first; i < chunk.spans[0].last; ++i) sum += weights[i];
      worst = std::max(worst, sum);
    }
    CHECK(next == n);
    CHECK(worst == doctest::Approx(brute_force_bottleneck(weights, parts)).epsilon(1e-9));
  }
}

TEST_CASE("more chunks than layers is an infeasible request naming the numbers") {
  dip::fixed_cost_table table;
  table.set_uniform("lm", 3, {{1_ms, 1_ms, 1_ms, {}, {}}, 0});
  CHECK_THROWS_WITH_AS(dip::sequential_placement(chain_model(3), table, one_token, 2, 2),
                       doctest::Contains("has 3 layers, fewer than the 4 chunks"), dip::error);
}

TEST_CASE("stage graph of a 1F1B-style pipeline: stages, edges and critical path") {
  // 8 layers of 1 ms forward, 2 ms backward on 4 ranks: chunks of 2 ms F and 4 ms B.
  dip::fixed_cost_table table;
  table.set_uniform("lm", 8, {{1_ms, 1_ms, 1_ms, dip::bytes(10), dip::bytes(100)}, 0});
  const dip::multimodal_model model = chain_model(8);
  const dip::placement p = dip::sequential_placement(model, table, one_token, 4, 1);
  const dip::batch_work batch = dip::uniform_batch(model, 8, one_token);
  const dip::stage_graph g = dip::build_stage_graph(model, p, batch, table);
  CHECK(g.size() == 8 * 4 * 2);
  // Per microbatch: 3 forward edges, 3 backward edges, 1 loss edge.
  CHECK(g.edges().size() == 8 * 7);
  CHECK(dip::to_milliseconds(g.critical_path()) == doctest::Approx(4 * 2 + 4 * 4));
  for (dip::duration w : g.work_per_rank()) CHECK(dip::to_milliseconds(w) == doctest::Approx(8 * 6));
  const dip::stage_id f = g.find(dip::stage_kind::forward, dip::chunk_id(3), 5);
  const dip::stage_id b = g.find(dip::stage_kind::backward, dip::chunk_id(3), 5);
  CHECK(g.at(f).microbatch == dip::microbatch_id(5));
  CHECK(g.at(f).memory_delta == dip::bytes(20));
  CHECK(g.at(b).memory_delta == dip::bytes(-20));
  REQUIRE(g.out_edges(f).size() == 1);
  CHECK(g.edges()[g.out_edges(f)[0]].to == b);  // the loss edge
  CHECK_THROWS_AS(g.find(dip::stage_kind::backward_input, dip::chunk_id(3), 5), dip::error);

  // Split backward: I then W, and W is off the critical path of the next microbatch's chain.
  const dip::stage_graph split = dip::build_stage_graph(model, p, batch, table, {.split_backward = true});
  CHECK(split.size() == 8 * 4 * 3);
  CHECK(split.edges().size() == 8 * (7 + 4));
  // One microbatch: 4 F (2 ms) + 4 I (2 ms) + the last W (2 ms).
  CHECK(dip::to_milliseconds(split.critical_path()) == doctest::Approx(4 * 2 + 4 * 2 + 2));
}

TEST_CASE("two chains: every encoder sub-microbatch before the LLM's first forward") {
  dip::module_spec vit, llm;
  vit.name = "vit";
  llm.name = "llm";
  vit.layers.assign(2, dip::opaque_layer{"v", 0, 0});
  llm.layers.assign(2, dip::opaque_layer{"l", 0, 0});
  const dip::multimodal_model model = dip::model_builder("vlm").add(vit).add(llm).connect("vit", "llm").build();
  dip::fixed_cost_table table;
  table.set_uniform("vit", 2, {{1_ms, 1_ms, 1_ms, {}, {}}, 0});
  table.set_uniform("llm", 2, {{2_ms, 2_ms, 2_ms, {}, {}}, 0});
  // Each module its own chain of two one-layer chunks on ranks 0 and 1.
  dip::placement p;
  p.ranks = 2;
  p.chains = {{dip::chunk_id(0), dip::chunk_id(1)}, {dip::chunk_id(2), dip::chunk_id(3)}};
  p.chain_inputs = {{}, {0}};
  p.chunks = {{{{dip::module_id(0), 0, 1}}, dip::rank_id(0), 0, 0},
              {{{dip::module_id(0), 1, 2}}, dip::rank_id(1), 0, 1},
              {{{dip::module_id(1), 0, 1}}, dip::rank_id(0), 1, 0},
              {{{dip::module_id(1), 1, 2}}, dip::rank_id(1), 1, 1}};
  dip::batch_work batch;
  batch.microbatches.push_back(
      {{{dip::work_unit::sequence(1), dip::work_unit::sequence(1), dip::work_unit::sequence(1)},
        {dip::work_unit::sequence(1)}}});
  const dip::stage_graph g = dip::build_stage_graph(model, p, batch, table);
  CHECK(g.sub_count(0, 0) == 3);
  CHECK(g.sub_count(0, 1) == 1);
  CHECK(g.size() == (3 * 2 + 1 * 2) * 2);
  const dip::stage_id llm_first = g.find(dip::stage_kind::forward, dip::chunk_id(2), 0);
  CHECK(g.in_edges(llm_first).size() == 3);  // all three encoder sub-microbatches
  const dip::stage_id llm_back = g.find(dip::stage_kind::backward, dip::chunk_id(2), 0);
  CHECK(g.out_edges(llm_back).size() == 3);  // its gradient to each encoder sub-microbatch
  // Critical path: encoder F (1+1) -> LLM F (2+2) -> LLM B (4+4) -> encoder B (2+2).
  CHECK(dip::to_milliseconds(g.critical_path()) == doctest::Approx(2 + 4 + 8 + 4));
}

TEST_CASE("bad batches are rejected with where and what") {
  dip::fixed_cost_table table;
  table.set_uniform("lm", 4, {{1_ms, 1_ms, 1_ms, {}, {}}, 0});
  const dip::multimodal_model model = chain_model(4);
  const dip::placement p = dip::sequential_placement(model, table, one_token, 2, 1);
  CHECK_THROWS_WITH_AS(dip::build_stage_graph(model, p, dip::batch_work{}, table), doctest::Contains("no microbatches"),
                       dip::error);
  dip::batch_work no_work;
  no_work.microbatches.push_back({{{}}});
  CHECK_THROWS_WITH_AS(dip::build_stage_graph(model, p, no_work, table),
                       doctest::Contains("module 'lm' has no sub-microbatch"), dip::error);
  dip::batch_work nan_work;
  nan_work.microbatches.push_back({{{dip::work_unit{1, std::nan(""), 0, 0, 0}}}});
  CHECK_THROWS_WITH_AS(dip::build_stage_graph(model, p, nan_work, table), doctest::Contains("work_unit.tokens"),
                       dip::error);
}
