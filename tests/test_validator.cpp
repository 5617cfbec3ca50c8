// The plan validator: valid plans pass; each rule's violation, made by mutating a valid plan, is
// caught with a message naming it.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <dip/cost/fixed_table.hpp>
#include <dip/model/model.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/stage_graph.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

#include "plan_test_support.hpp"

using namespace dip::literals;

namespace {

using dip_test::opaque_module;

// vit (2 layers) -> lm (3 layers) on 3 ranks, one chain per module:
//   vit: c0 on rank 0, c1 on rank 1;   lm: c2 on rank 2, c3 on rank 0, c4 on rank 1.
// Two microbatches; the vit runs 2 sub-microbatches in the first, 1 in the second.
std::shared_ptr<const dip::stage_graph> fixture_graph(bool split = false) {
  const dip::multimodal_model model =
      dip::model_builder("vlm").add(opaque_module("vit", 2)).add(opaque_module("lm", 3)).connect("vit", "lm").build();
  dip::fixed_cost_table costs;
  costs.set_uniform("vit", 2, {{1_ms, 1_ms, 1_ms, dip::mib(100), dip::mib(10)}, 0});
  costs.set_uniform("lm", 3, {{2_ms, 2_ms, 2_ms, dip::mib(200), dip::mib(20)}, 0});
  dip::placement p;
  p.ranks = 3;
  const auto vit = model.at("vit"), lm = model.at("lm");
  const auto r = [](int k) { return dip::rank_id::from_index(std::size_t(k)); };
  p.chunks = {{{{vit, 0, 1}}, r(0), 0, 0},
              {{{vit, 1, 2}}, r(1), 0, 1},
              {{{lm, 0, 1}}, r(2), 1, 0},
              {{{lm, 1, 2}}, r(0), 1, 1},
              {{{lm, 2, 3}}, r(1), 1, 2}};
  p.chains = {{dip::chunk_id(0), dip::chunk_id(1)}, {dip::chunk_id(2), dip::chunk_id(3), dip::chunk_id(4)}};
  p.chain_inputs = {{}, {0}};
  const auto seq = [](double n) { return dip::work_unit::sequence(n); };
  dip::batch_work batch;
  batch.microbatches.push_back({{{seq(100), seq(100)}, {seq(300)}}});
  batch.microbatches.push_back({{{seq(100)}, {seq(300)}}});
  return std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(model, p, batch, costs, {.split_backward = split}));
}

// Position of the action matching `pred` on rank r.
template <class Pred>
std::size_t find_action(const dip::plan& p, std::size_t r, Pred pred) {
  for (std::size_t i = 0; i < p.ranks[r].size(); ++i) {
    if (pred(p.ranks[r][i])) return i;
  }
  FAIL("no such action on rank " << r);
  return 0;
}

std::size_t compute_of(const dip::plan& p, dip::stage_id s) {
  return find_action(p, p.graph->at(s).rank.index(),
                     [&](const dip::action& a) { return a.kind == dip::action_kind::compute && a.stage == s; });
}

std::string violation(const dip::plan& p, const dip::validation_options& o = {}) {
  const std::optional<std::string> v = dip::first_violation(p, o);
  REQUIRE(v.has_value());
  // validate() throws the same message as an invalid_plan error.
  try {
    dip::validate(p, o);
    FAIL("validate did not throw");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::invalid_plan);
    CHECK(std::string(e.what()) == *v);
  }
  return *v;
}

}  // namespace

TEST_CASE("plans from random linear extensions are valid") {
  std::mt19937_64 rng(7);
  for (bool split : {false, true}) {
    const auto graph = fixture_graph(split);
    for (int k = 0; k < 50; ++k) {
      CAPTURE(split);
      CAPTURE(k);
      const dip::plan p = dip::make_plan(graph, dip_test::random_order(*graph, rng));
      CHECK_FALSE(dip::first_violation(p).has_value());
      CHECK_NOTHROW(
          dip::validate(p, {.memory_cap = dip::gib(100), .weight_memory = {dip::gib(1), dip::gib(1), dip::gib(1)}}));
      CHECK_NOTHROW(dip::simulate(p));
    }
  }
}

TEST_CASE("each rule's violation is named") {
  std::mt19937_64 rng(11);
  const auto graph = fixture_graph();
  const dip::stage_graph& g = *graph;
  const dip::plan valid = dip::make_plan(graph, dip_test::random_order(g, rng));
  REQUIRE_FALSE(dip::first_violation(valid).has_value());
  const auto chunk = [](std::size_t c) { return dip::chunk_id::from_index(c); };
  const dip::stage_id f_vit0 = g.find(dip::stage_kind::forward, chunk(0), 0, 0);
  const dip::stage_id b_vit0 = g.find(dip::stage_kind::backward, chunk(0), 0, 0);  // no successors
  const dip::stage_id f_lm_last = g.find(dip::stage_kind::forward, chunk(4), 1);
  const dip::stage_id b_lm_last = g.find(dip::stage_kind::backward, chunk(4), 1);

  SUBCASE("duplicate stage") {
    dip::plan p = valid;
    p.ranks[0].push_back(p.ranks[0][compute_of(p, f_vit0)]);
    const std::string v = violation(p);
    CHECK(v.find("rank 0 action " + std::to_string(p.ranks[0].size() - 1)) == 0);
    CHECK(v.find("computes F0.0@c0 a second time") != std::string::npos);
    CHECK(v.find("duplicate stage") != std::string::npos);
  }
  SUBCASE("missing stage") {
    dip::plan p = valid;
    p.ranks[0].erase(p.ranks[0].begin() + std::ptrdiff_t(compute_of(p, b_vit0)));
    CHECK(violation(p) == "plan: missing stage: B0.0@c0 is never computed (rank 0 owns it)");
  }
  SUBCASE("stage on the wrong rank") {
    dip::plan p = valid;
    p.ranks[0].insert(p.ranks[0].begin(), p.ranks[1][compute_of(p, f_lm_last)]);
    CHECK(violation(p) == "rank 0 action 0: computes F1@c4 on the wrong rank: its chunk c4 is on rank 1");
  }
  SUBCASE("order contradicting a same-rank dependency") {
    dip::plan p = valid;
    const std::size_t f = compute_of(p, f_lm_last), b = compute_of(p, b_lm_last);
    std::swap(p.ranks[1][f], p.ranks[1][b]);  // the loss's backward before its forward
    const std::string v = violation(p);
    CHECK(v.find("rank 1 action " + std::to_string(f)) == 0);
    CHECK(v.find("order contradicts a dependency: B1@c4 runs before its input F1@c4 is computed on this rank") !=
          std::string::npos);
  }
  SUBCASE("order contradicting a cross-rank dependency") {
    dip::plan p = valid;
    const std::size_t c = compute_of(p, f_lm_last);
    REQUIRE(p.ranks[1][c - 1].kind == dip::action_kind::recv);
    std::swap(p.ranks[1][c - 1], p.ranks[1][c]);  // compute before the recv of its input
    const std::string v = violation(p);
    CHECK(v.find("rank 1 action " + std::to_string(c - 1)) == 0);
    CHECK(v.find("F1@c4 runs before its input F1@c3 from rank 0 is received") != std::string::npos);
  }
  SUBCASE("unpaired send") {
    // B0.0@c0 consumes the gradient rank 1 sends; drop its recv and the stage: the send dangles.
    dip::plan p = valid;
    const std::size_t c = compute_of(p, b_vit0);
    REQUIRE(p.ranks[0][c - 1].kind == dip::action_kind::recv);
    p.ranks[0].erase(p.ranks[0].begin() + std::ptrdiff_t(c - 1), p.ranks[0].begin() + std::ptrdiff_t(c + 1));
    const std::string v = violation(p);
    CHECK(v.find("rank 1 action") == 0);
    CHECK(v.find("unpaired send: send B0.0@c1 -> B0.0@c0 to rank 0 is never received") != std::string::npos);
  }
  SUBCASE("unpaired recv") {
    dip::plan p = valid;
    const std::size_t c = compute_of(p, b_vit0);
    const std::uint32_t edge = p.ranks[0][c - 1].edge;
    const std::size_t s =
        find_action(p, 1, [&](const dip::action& a) { return a.kind == dip::action_kind::send && a.edge == edge; });
    p.ranks[1].erase(p.ranks[1].begin() + std::ptrdiff_t(s));
    CHECK(violation(p).find("unpaired recv: recv B0.0@c1 -> B0.0@c0 from rank 1 is never sent") != std::string::npos);
  }
  SUBCASE("recv with the wrong peer") {
    dip::plan p = valid;
    const std::size_t c = compute_of(p, f_lm_last);
    p.ranks[1][c - 1].peer = dip::rank_id(2);
    const std::string v = violation(p);
    CHECK(v.find("rank 1 action " + std::to_string(c - 1)) == 0);
    CHECK(v.find("recv F1@c3 -> F1@c4 from rank 2 has the wrong peer: the producer F1@c3 is on rank 0") !=
          std::string::npos);
  }
  SUBCASE("send on the wrong rank, before its producer, twice; a message within one rank") {
    dip::plan p = valid;
    const std::size_t c = compute_of(p, f_vit0);
    REQUIRE(p.ranks[0][c + 1].kind == dip::action_kind::send);
    const dip::action send = p.ranks[0][c + 1];
    p.ranks[2].insert(p.ranks[2].begin(), send);
    CHECK(violation(p).find("on the wrong rank: the producer F0.0@c0 is on rank 0") != std::string::npos);
    p = valid;
    p.ranks[0].insert(p.ranks[0].begin(), send);
    CHECK(violation(p).find(
              "rank 0 action 0: send F0.0@c0 -> F0.0@c1 to rank 1 comes before its producer F0.0@c0 is computed") == 0);
    p = valid;
    p.ranks[0].insert(p.ranks[0].begin() + std::ptrdiff_t(c + 2), send);
    CHECK(violation(p).find("repeats the send at rank 0 action " + std::to_string(c + 1)) != std::string::npos);
    // The loss edge F1@c4 -> B1@c4 stays on rank 1: no message may carry it.
    p = valid;
    std::uint32_t loss = 0;
    while (g.edges()[loss].from != f_lm_last || g.edges()[loss].to != b_lm_last) ++loss;
    p.ranks[1].push_back({dip::action_kind::send, f_lm_last, loss, dip::rank_id(1), dip::memory_strategy::keep});
    CHECK(violation(p).find("both ends of the edge are on rank 1") != std::string::npos);
  }
  SUBCASE("memory over a cap: needed vs cap") {
    const dip::simulation_result sim = dip::simulate(valid);
    dip::bytes peak{};
    for (const dip::rank_stats& r : sim.ranks) peak = std::max(peak, r.peak_memory);
    CHECK_FALSE(dip::first_violation(valid, {.memory_cap = peak, .weight_memory = {}}).has_value());
    const dip::bytes cap = peak - dip::mib(50);
    const std::string v = violation(valid, {.memory_cap = cap, .weight_memory = {}});
    CHECK(v.find("memory over the cap after") != std::string::npos);
    CHECK(v.find("needs " + dip::to_string(peak)) != std::string::npos);
    CHECK(v.find("the cap is " + dip::to_string(cap)) != std::string::npos);
    // Weights alone over the cap.
    CHECK(violation(valid, {.memory_cap = dip::gib(1), .weight_memory = {dip::bytes{}, dip::gib(2), dip::bytes{}}}) ==
          "rank 1: its weights need 2.00 GiB, over the memory cap of 1.00 GiB");
    // The memory rule alone (dip::memory_fits) draws the same line.
    CHECK(dip::memory_fits(valid, peak));
    CHECK_FALSE(dip::memory_fits(valid, cap));
    CHECK_FALSE(dip::memory_fits(valid, dip::gib(1), {dip::bytes{}, dip::gib(2), dip::bytes{}}));
    // A plan whose memory cannot be summed does not fit.
    dip::plan broken = valid;
    broken.ranks.pop_back();
    CHECK_FALSE(dip::memory_fits(broken, peak));
    broken = valid;
    broken.ranks[0].push_back({dip::action_kind::compute, dip::stage_id::from_index(g.size()), 0, dip::rank_id{},
                               dip::memory_strategy::keep});
    CHECK_FALSE(dip::memory_fits(broken, peak));
    CHECK_FALSE(dip::memory_fits(valid, peak, {dip::bytes{}}));
  }
  SUBCASE("the rank count must match the graph") {
    dip::plan p = valid;
    p.ranks.pop_back();
    CHECK(violation(p) == "plan: has action lists for 2 ranks, the stage graph has 3");
    CHECK_THROWS_AS(dip::validate(valid, {.memory_cap = std::nullopt, .weight_memory = {dip::gib(1)}}), dip::error);
  }
}
