// Baseline schedules (GPipe, 1F1B, Megatron interleaved, ZB-H1, ZB-V, DualPipeV): exact orders
// against the published ones, structure (every stage once, dependencies respected, in-flight microbatches),
// closed-form makespans and bubbles through the simulator, lower bounds, and random costs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <random>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include <dip/cost/fixed_table.hpp>
#include <dip/io/model_json.hpp>
#include <dip/partition/contiguous_placement.hpp>
#include <dip/partition/placement.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/memory_chooser.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/stage_graph.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

#include "test_files.hpp"

using namespace dip::literals;

namespace {

using graph_ptr = std::shared_ptr<const dip::stage_graph>;
using orders_t = std::vector<std::vector<dip::stage_id>>;

dip::work_unit one_sequence(const dip::module_spec&) { return dip::work_unit::sequence(1); }

// A one-module model "lm" whose layers cost what `per_layer` says, and its cost table.
struct toy_model {
  dip::multimodal_model model;
  dip::fixed_cost_table costs;
};

toy_model make_model(std::vector<dip::fixed_layer_cost> per_layer) {
  dip::module_spec lm;
  lm.name = "lm";
  for (std::size_t i = 0; i < per_layer.size(); ++i)
    lm.layers.push_back(dip::opaque_layer{"lm." + std::to_string(i), 0, 0});
  toy_model t{dip::model_builder("toy").add(lm).build(), {}};
  t.costs.set("lm", std::move(per_layer));
  return t;
}

// `layers` identical layers: forward, input gradient, weight gradient, kept activation.
toy_model uniform_model(std::size_t layers, dip::duration forward, dip::duration input, dip::duration weight,
                        dip::bytes activation = dip::bytes(0)) {
  return make_model(
      std::vector<dip::fixed_layer_cost>(layers, {{forward, input, weight, activation, dip::bytes(0)}, 0}));
}

graph_ptr build(const toy_model& t, int p, int v, std::size_t m, bool split) {
  const dip::placement placement = dip::sequential_placement(t.model, t.costs, one_sequence, p, v);
  const dip::batch_work batch = dip::uniform_batch(t.model, m, one_sequence);
  return std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(t.model, placement, batch, t.costs, dip::stage_graph_options{split}));
}

// The toy model of tests/data/toy.json: 8 layers, forward 1 ms, backward 2 ms (I = W = 1 ms).
toy_model toy_json() {
  const dip::model_file file = dip::read_model_file(dip_test::data_file("toy.json"));
  return {file.model, file.measured};
}

using make_fn = dip::generator<dip::stage_id> (*)(graph_ptr, dip::rank_id);

orders_t orders_of(make_fn make, const graph_ptr& graph) {
  orders_t orders(std::size_t(graph->ranks()));
  for (std::size_t r = 0; r < orders.size(); ++r) {
    for (dip::stage_id id : make(graph, dip::rank_id::from_index(r))) orders[r].push_back(id);
  }
  return orders;
}

std::string describe_order(const dip::stage_graph& graph, const std::vector<dip::stage_id>& order) {
  std::string text;
  for (dip::stage_id id : order) {
    if (!text.empty()) text += ' ';
    text += dip::describe(graph, id);
  }
  return text;
}

// Structural soundness of per-rank orders, independent of stage times:
// - every stage appears exactly once, in the order of the rank that holds it;
// - on each rank, every stage comes after its same-rank predecessors;
// - the orders run to completion as a dataflow machine (a rank runs its next stage once all of
//   that stage's predecessors have run), i.e. no cross-rank deadlock.
void check_structure(const dip::stage_graph& graph, const orders_t& orders) {
  REQUIRE(int(orders.size()) == graph.ranks());
  std::vector<int> seen(graph.size(), 0);
  std::vector<std::size_t> position(graph.size());
  for (std::size_t r = 0; r < orders.size(); ++r) {
    for (std::size_t i = 0; i < orders[r].size(); ++i) {
      const dip::stage_id id = orders[r][i];
      REQUIRE(id.index() < graph.size());
      CHECK(graph.at(id).rank.index() == r);
      ++seen[id.index()];
      position[id.index()] = i;
    }
  }
  CHECK(std::ranges::all_of(seen, [](int n) { return n == 1; }));
  for (const dip::stage_edge& e : graph.edges()) {
    if (graph.at(e.from).rank == graph.at(e.to).rank) {
      CHECK_MESSAGE(position[e.from.index()] < position[e.to.index()],
                    dip::describe(graph, e.from) << " must run before " << dip::describe(graph, e.to));
    }
  }
  std::vector<char> done(graph.size(), 0);
  std::vector<std::size_t> next(orders.size(), 0);
  std::size_t ran = 0;
  for (bool progress = true; progress;) {
    progress = false;
    for (std::size_t r = 0; r < orders.size(); ++r) {
      while (next[r] < orders[r].size()) {
        const dip::stage_id id = orders[r][next[r]];
        const auto in = graph.in_edges(id);
        if (!std::ranges::all_of(in, [&](std::uint32_t e) { return done[graph.edges()[e].from.index()] != 0; })) break;
        done[id.index()] = 1;
        ++next[r];
        ++ran;
        progress = true;
      }
    }
  }
  CHECK_MESSAGE(ran == graph.size(), "the orders deadlock after " << ran << " of " << graph.size() << " stages");
}

// Peak number of microbatch-chunks whose activations a rank holds: +1 at F, -1 at B (or W,
// which frees them in a split graph), walking the rank's order.
std::size_t peak_in_flight(const dip::stage_graph& graph, const std::vector<dip::stage_id>& order) {
  std::size_t now = 0, peak = 0;
  for (dip::stage_id id : order) {
    const dip::stage_kind kind = graph.at(id).kind;
    if (kind == dip::stage_kind::forward) peak = std::max(peak, ++now);
    if (kind == dip::stage_kind::backward || kind == dip::stage_kind::backward_weight) --now;
  }
  return now == 0 ? peak : std::size_t(-1);
}

double ms(dip::duration d) { return dip::to_milliseconds(d); }

// Exact up to the rounding of summing millisecond doubles.
doctest::Approx exactly(double value) { return doctest::Approx(value).epsilon(1e-9); }

dip::simulation_result simulate_baseline(std::string_view name, const graph_ptr& graph,
                                         const dip::simulation_options& options = {}) {
  const dip::plan plan = dip::plan_baseline(name, graph);
  dip::validate(plan);
  return dip::simulate(plan, options);
}

// Never shorter than what no schedule can beat (up to rounding: the simulator and the bounds
// sum the same stage times in different orders).
bool above_lower_bound(const dip::simulation_result& result) {
  return result.makespan.base() >= result.bounds.classic().base() * (1 - 1e-12);
}

double peak_memory(const dip::simulation_result& result) {
  double peak = 0;
  for (const dip::rank_stats& r : result.ranks) peak = std::max(peak, r.peak_memory.base());
  return peak;
}

}  // namespace

// --- exact orders ---------------------------------------------------------------------------------

TEST_CASE("1F1B and GPipe orders on the toy model, p = 4, m = 8") {
  const graph_ptr g = build(toy_json(), 4, 1, 8, false);
  const orders_t ofob = orders_of(&dip::one_f_one_b, g);
  CHECK(describe_order(*g, ofob[0]) ==
        "F0@c0 F1@c0 F2@c0 F3@c0 B0@c0 F4@c0 B1@c0 F5@c0 B2@c0 F6@c0 B3@c0 F7@c0 B4@c0 B5@c0 B6@c0 B7@c0");
  CHECK(describe_order(*g, ofob[2]) ==
        "F0@c2 F1@c2 B0@c2 F2@c2 B1@c2 F3@c2 B2@c2 F4@c2 B3@c2 F5@c2 B4@c2 F6@c2 B5@c2 F7@c2 B6@c2 B7@c2");
  CHECK(describe_order(*g, ofob[3]) ==
        "F0@c3 B0@c3 F1@c3 B1@c3 F2@c3 B2@c3 F3@c3 B3@c3 F4@c3 B4@c3 F5@c3 B5@c3 F6@c3 B6@c3 F7@c3 B7@c3");
  const orders_t gp = orders_of(&dip::gpipe, g);
  CHECK(describe_order(*g, gp[1]) ==
        "F0@c1 F1@c1 F2@c1 F3@c1 F4@c1 F5@c1 F6@c1 F7@c1 B0@c1 B1@c1 B2@c1 B3@c1 B4@c1 B5@c1 B6@c1 B7@c1");
}

TEST_CASE("1F1B with fewer microbatches than ranks warms up only what exists") {
  const graph_ptr g = build(toy_json(), 4, 1, 2, false);
  const orders_t o = orders_of(&dip::one_f_one_b, g);
  CHECK(describe_order(*g, o[0]) == "F0@c0 F1@c0 B0@c0 B1@c0");
  CHECK(describe_order(*g, o[2]) == "F0@c2 F1@c2 B0@c2 B1@c2");
  CHECK(describe_order(*g, o[3]) == "F0@c3 B0@c3 F1@c3 B1@c3");
}

TEST_CASE("interleaved order follows Megatron's chunk/microbatch table") {
  // p = 2, v = 2, m = 4. Megatron's k-th forward on a rank: chunk (k / p) % v, microbatch
  // (k / (p v)) p + k % p, i.e. (c0,0) (c0,1) (c1,0) (c1,1) (c0,2) (c0,3) (c1,2) (c1,3); the
  // k-th backward: chunk v - 1 - (k / p) % v. Warm-up: 2 (p - r - 1) + (v - 1) p = 4 on rank 0,
  // 2 on rank 1. Rank r's model chunk i is chain position i p + r (c0, c2 on rank 0).
  const graph_ptr g = build(uniform_model(8, 1_ms, 1_ms, 1_ms), 2, 2, 4, false);
  const orders_t o = orders_of(&dip::interleaved_one_f_one_b, g);
  CHECK(describe_order(*g, o[0]) == "F0@c0 F1@c0 F0@c2 F1@c2 "
                                    "F2@c0 B0@c2 F3@c0 B1@c2 F2@c2 B0@c0 F3@c2 B1@c0 "
                                    "B2@c2 B3@c2 B2@c0 B3@c0");
  CHECK(describe_order(*g, o[1]) == "F0@c1 F1@c1 "
                                    "F0@c3 B0@c3 F1@c3 B1@c3 F2@c1 B0@c1 F3@c1 B1@c1 F2@c3 B2@c3 F3@c3 B3@c3 "
                                    "B2@c1 B3@c1");
}

TEST_CASE("ZB1P order is the handcrafted ZB-H1 schedule") {
  // Qi et al., Figure 3 (p = 4): the first rank is 1F1B with each B split into I W; the last
  // rank runs F I without W p - 1 times and runs those W at the very end.
  const graph_ptr g = build(toy_json(), 4, 1, 8, true);
  const orders_t o = orders_of(&dip::zb1p, g);
  CHECK(describe_order(*g, o[0]) ==
        "F0@c0 F1@c0 F2@c0 F3@c0 I0@c0 W0@c0 F4@c0 I1@c0 W1@c0 F5@c0 I2@c0 W2@c0 F6@c0 I3@c0 W3@c0 "
        "F7@c0 I4@c0 W4@c0 I5@c0 W5@c0 I6@c0 W6@c0 I7@c0 W7@c0");
  CHECK(describe_order(*g, o[1]) ==
        "F0@c1 F1@c1 F2@c1 I0@c1 F3@c1 I1@c1 W0@c1 F4@c1 I2@c1 W1@c1 F5@c1 I3@c1 W2@c1 F6@c1 I4@c1 W3@c1 "
        "F7@c1 I5@c1 W4@c1 I6@c1 W5@c1 I7@c1 W6@c1 W7@c1");
  CHECK(describe_order(*g, o[3]) ==
        "F0@c3 I0@c3 F1@c3 I1@c3 F2@c3 I2@c3 F3@c3 I3@c3 W0@c3 F4@c3 I4@c3 W1@c3 F5@c3 I5@c3 W2@c3 "
        "F6@c3 I6@c3 W3@c3 F7@c3 I7@c3 W4@c3 W5@c3 W6@c3 W7@c3");
}

TEST_CASE("on a split graph the plain schedules run I then W where B would be") {
  const graph_ptr g = build(toy_json(), 2, 1, 2, true);
  CHECK(describe_order(*g, orders_of(&dip::one_f_one_b, g)[0]) == "F0@c0 F1@c0 I0@c0 W0@c0 I1@c0 W1@c0");
  CHECK(describe_order(*g, orders_of(&dip::gpipe, g)[1]) == "F0@c1 F1@c1 I0@c1 W0@c1 I1@c1 W1@c1");
}

// --- structure ------------------------------------------------------------------------------------

TEST_CASE("every baseline orders every stage once, respects dependencies and cannot deadlock") {
  const toy_model model = uniform_model(24, 1_ms, 1_ms, 1_ms);
  for (int p : {1, 2, 3, 4, 6}) {
    for (std::size_t m = 1; m <= 13; ++m) {
      CAPTURE(p);
      CAPTURE(m);
      for (bool split : {false, true}) {
        const graph_ptr g = build(model, p, 1, m, split);
        check_structure(*g, orders_of(&dip::gpipe, g));
        check_structure(*g, orders_of(&dip::one_f_one_b, g));
        if (m % std::size_t(p) == 0) check_structure(*g, orders_of(&dip::interleaved_one_f_one_b, g));
        if (split) check_structure(*g, orders_of(&dip::zb1p, g));
      }
      for (int v : {2, 3, 4}) {
        if (m % std::size_t(p) != 0 || 24 % (p * v) != 0) continue;
        CAPTURE(v);
        for (bool split : {false, true}) {
          const graph_ptr g = build(model, p, v, m, split);
          check_structure(*g, orders_of(&dip::interleaved_one_f_one_b, g));
        }
      }
    }
  }
}

TEST_CASE("in-flight microbatches: 1F1B holds p - r on rank r, GPipe m, ZB1P min(p, m) everywhere") {
  const toy_model model = uniform_model(8, 1_ms, 1_ms, 1_ms);
  for (int p : {1, 2, 4, 8}) {
    for (std::size_t m = 1; m <= 16; ++m) {
      CAPTURE(p);
      CAPTURE(m);
      const graph_ptr g = build(model, p, 1, m, false);
      const graph_ptr split = build(model, p, 1, m, true);
      const orders_t ofob = orders_of(&dip::one_f_one_b, g), gp = orders_of(&dip::gpipe, g);
      const orders_t zb = orders_of(&dip::zb1p, split);
      std::size_t ofob_max = 0, zb_max = 0;
      for (std::size_t r = 0; r < std::size_t(p); ++r) {
        CAPTURE(r);
        CHECK(peak_in_flight(*g, ofob[r]) == std::min(std::size_t(p) - r, m));
        CHECK(peak_in_flight(*g, gp[r]) == m);
        // ZB1P keeps activations of the r microbatches whose W it deferred.
        CHECK(peak_in_flight(*split, zb[r]) == std::min(std::size_t(p), m));
        ofob_max = std::max(ofob_max, peak_in_flight(*g, ofob[r]));
        zb_max = std::max(zb_max, peak_in_flight(*split, zb[r]));
      }
      CHECK(zb_max == ofob_max);
    }
  }
}

TEST_CASE("interleaved in-flight chunks match Megatron's warm-up + 1") {
  // During warm-up a rank only runs forwards; its peak is the warm-up count plus the first
  // steady forward (the whole count when the warm-up covers everything).
  const toy_model model = uniform_model(48, 1_ms, 1_ms, 1_ms);
  for (int p : {2, 4}) {
    for (int v : {2, 3, 4}) {
      for (std::size_t m = std::size_t(p); m <= 16; m += std::size_t(p)) {
        CAPTURE(p);
        CAPTURE(v);
        CAPTURE(m);
        const graph_ptr g = build(model, p, v, m, false);
        const orders_t o = orders_of(&dip::interleaved_one_f_one_b, g);
        for (std::size_t r = 0; r < std::size_t(p); ++r) {
          const std::size_t total = m * std::size_t(v);
          const std::size_t warmup =
              std::min(2 * (std::size_t(p) - r - 1) + std::size_t(v - 1) * std::size_t(p), total);
          CHECK(peak_in_flight(*g, o[r]) == std::min(warmup + 1, total));
        }
      }
    }
  }
}

// --- contracts: errors, laziness, lifetime --------------------------------------------------------

TEST_CASE("bad inputs are refused at the call, with a message that says why") {
  const toy_model model = toy_json();
  const graph_ptr plain = build(model, 4, 1, 8, false);
  const graph_ptr two_chunks = build(model, 2, 2, 6, false);
  const dip::rank_id r0 = dip::rank_id::from_index(0);

  CHECK_THROWS_WITH_AS((void)dip::zb1p(plain, r0), doctest::Contains("split_backward = true"), dip::error);
  CHECK_THROWS_WITH_AS((void)dip::one_f_one_b(two_chunks, r0), doctest::Contains("one chunk per rank"), dip::error);
  CHECK_THROWS_WITH_AS((void)dip::gpipe(two_chunks, r0), doctest::Contains("one chunk per rank"), dip::error);
  CHECK_THROWS_WITH_AS((void)dip::interleaved_one_f_one_b(build(model, 4, 2, 6, false), r0),
                       doctest::Contains("must be a multiple of the number of pipeline ranks (4)"), dip::error);
  CHECK_NOTHROW((void)dip::interleaved_one_f_one_b(two_chunks, r0));
  CHECK_THROWS_WITH_AS((void)dip::gpipe(plain, dip::rank_id::from_index(4)), doctest::Contains("rank 4"), dip::error);
  CHECK_THROWS_WITH_AS((void)dip::gpipe(plain, dip::rank_id{}), doctest::Contains("rank invalid"), dip::error);
  CHECK_THROWS_WITH_AS((void)dip::gpipe(nullptr, r0), doctest::Contains("no stage graph"), dip::error);
  try {
    (void)dip::interleaved_one_f_one_b(build(model, 4, 2, 6, false), r0);
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::invalid_argument);
  }

  SUBCASE("unknown names list the known ones") {
    try {
      (void)dip::plan_baseline("pipedream", plain);
      FAIL("no error");
    } catch (const dip::error& e) {
      CHECK(e.code() == dip::errc::not_found);
      CHECK(std::string(e.what()).find("'pipedream'") != std::string::npos);
      CHECK(std::string(e.what()).find("gpipe, 1f1b, interleaved, zb1p") != std::string::npos);
    }
    CHECK(dip::baseline_names() ==
          std::vector<std::string>{"gpipe", "1f1b", "interleaved", "zb1p", "zbv", "dualpipev"});
  }

  SUBCASE("a DIP placement (several chains) is refused") {
    // Two modules, vit -> lm, each its own chain on its own rank.
    dip::module_spec vit, lm;
    vit.name = "vit";
    lm.name = "lm";
    vit.layers.assign(2, dip::opaque_layer{"v", 0, 0});
    lm.layers.assign(2, dip::opaque_layer{"l", 0, 0});
    const dip::multimodal_model two = dip::model_builder("vlm").add(vit).add(lm).connect("vit", "lm").build();
    dip::fixed_cost_table costs;
    costs.set_uniform("vit", 2, {{1_ms, 1_ms, 1_ms, {}, {}}, 0});
    costs.set_uniform("lm", 2, {{1_ms, 1_ms, 1_ms, {}, {}}, 0});
    dip::placement chains;
    chains.ranks = 2;
    chains.chunks = {{{{two.at("vit"), 0, 2}}, dip::rank_id(0), 0, 0}, {{{two.at("lm"), 0, 2}}, dip::rank_id(1), 1, 0}};
    chains.chains = {{dip::chunk_id(0)}, {dip::chunk_id(1)}};
    chains.chain_inputs = {{}, {0}};
    const graph_ptr g = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(two, chains, dip::uniform_batch(two, 2, one_sequence), costs));
    for (const std::string& name : dip::baseline_names()) {
      CAPTURE(name);
      CHECK_THROWS_WITH_AS((void)dip::plan_baseline(name, g), doctest::Contains("single-chain placement"), dip::error);
    }
  }

  SUBCASE("sub-microbatches are refused") {
    // One module on one chain runs each of its work units as a sub-microbatch.
    const dip::placement p = dip::sequential_placement(model.model, model.costs, one_sequence, 2, 1);
    dip::batch_work batch;
    batch.microbatches.assign(2, dip::microbatch_work{{{dip::work_unit::sequence(1), dip::work_unit::sequence(1)}}});
    const graph_ptr g =
        std::make_shared<const dip::stage_graph>(dip::build_stage_graph(model.model, p, batch, model.costs));
    CHECK_THROWS_WITH_AS((void)dip::one_f_one_b(g, r0), doctest::Contains("sub-microbatches"), dip::error);
  }
}

TEST_CASE("generators are lazy and keep the graph alive") {
  graph_ptr g = build(toy_json(), 4, 1, 8, true);
  const std::weak_ptr<const dip::stage_graph> watch = g;
  {
    auto order = dip::zb1p(g, dip::rank_id::from_index(3));
    g.reset();  // the generator's copy keeps the graph alive
    CHECK_FALSE(watch.expired());
    std::vector<dip::stage_id> first;
    auto it = order.begin();
    for (int k = 0; k < 3 && it != order.end(); ++k, ++it) first.push_back(*it);
    REQUIRE(first.size() == 3);
    const graph_ptr alive = watch.lock();
    REQUIRE(alive != nullptr);
    CHECK(describe_order(*alive, first) == "F0@c3 I0@c3 F1@c3");
  }
  CHECK(watch.expired());  // and releases it with the generator

  // A generator composes with std::views as an rvalue.
  const graph_ptr h = build(toy_json(), 4, 1, 8, false);
  std::vector<dip::stage_id> warmup;
  for (dip::stage_id id : dip::one_f_one_b(h, dip::rank_id::from_index(0)) | std::views::take(4)) warmup.push_back(id);
  CHECK(describe_order(*h, warmup) == "F0@c0 F1@c0 F2@c0 F3@c0");
}

// --- closed forms through the simulator (uniform stages, free communication) ----------------------

TEST_CASE("the toy model on p = 4, m = 8: 1F1B and GPipe take 66 ms with bubble 3/11") {
  // Stage F = 2 ms, B = 4 ms: (m + p - 1)(F + B) = 11 x 6 ms; each rank computes 8 x 6 = 48 ms.
  const graph_ptr g = build(toy_json(), 4, 1, 8, false);
  for (const char* name : {"1f1b", "gpipe"}) {
    CAPTURE(name);
    const dip::simulation_result result = simulate_baseline(name, g);
    CHECK(ms(result.makespan) == exactly(66.0));
    CHECK(result.bubble_ratio == exactly(3.0 / 11.0));
    for (const dip::rank_stats& r : result.ranks) CHECK(ms(r.idle) == exactly(18.0));
  }
}

TEST_CASE("1F1B and GPipe: makespan (m + p - 1)(F + B), bubble (p - 1) / (m + p - 1)") {
  // The toy model's 8 layers on p ranks: stage F = 8/p ms, B = 16/p ms. The closed form holds
  // for m < p as well, where both schedules degenerate to all forwards then all backwards.
  const toy_model model = toy_json();
  for (int p : {1, 2, 4, 8}) {
    for (std::size_t m = 1; m <= 16; ++m) {
      CAPTURE(p);
      CAPTURE(m);
      const graph_ptr g = build(model, p, 1, m, false);
      const double stage = 24.0 / p;  // F + B
      for (const char* name : {"1f1b", "gpipe"}) {
        CAPTURE(name);
        const dip::simulation_result result = simulate_baseline(name, g);
        CHECK(ms(result.makespan) == exactly(double(m + std::size_t(p) - 1) * stage));
        CHECK(result.bubble_ratio == exactly(double(p - 1) / double(m + std::size_t(p) - 1)));
        CHECK(above_lower_bound(result));
      }
    }
  }
}

TEST_CASE("interleaved 1F1B: bubble (p - 1) / (v m + p - 1)") {
  // 96 layers of F = 0.125 ms, B = 0.25 ms: every rank does 12/p ms of forward per microbatch
  // whatever v, so a chunk has f = 12/(p v) ms and b = 2f. Megatron's schedule keeps every rank
  // busy except (p - 1) chunk-slots of f + b: makespan = (v m + p - 1)(f + b) = (v m + p - 1)
  // 36/(p v) ms, against (m + p - 1) 36/p ms for 1F1B on the same model.
  const toy_model model = uniform_model(96, 0.125_ms, 0.125_ms, 0.125_ms);
  for (int p : {1, 2, 4, 8}) {
    for (int v : {2, 3, 4}) {
      for (std::size_t m = std::size_t(p); m <= 16; m += std::size_t(p)) {
        CAPTURE(p);
        CAPTURE(v);
        CAPTURE(m);
        const graph_ptr g = build(model, p, v, m, false);
        const dip::simulation_result result = simulate_baseline("interleaved", g);
        const double slots = double(std::size_t(v) * m + std::size_t(p) - 1);
        CHECK(ms(result.makespan) == exactly(slots * 36.0 / (p * v)));
        CHECK(result.bubble_ratio == exactly(double(p - 1) / slots));
        CHECK(above_lower_bound(result));
      }
    }
  }
}

// ZB1P with F = I = W = T per stage (the toy model: I = W = backward / 2 = F).
//
// Derivation. Rank r starts r T late (the first forward reaches it after r forwards), the
// same as 1F1B. In 1F1B the backward chain climbs back one B = 2T per rank, and rank r's
// cool-down waits for it, so every rank idles (p - 1)(F + B) = 3 (p - 1) T. In ZB-H1 only I
// (T) is on that chain: the gradient returns twice as fast, and the W that each rank r
// deferred (r of them) fill its remaining gaps (the last ranks, idle earliest in 1F1B's
// cool-down, defer the most). What is left is the fill of the forward wave: (p - 1) T per
// rank, the paper's (p - 1)(T_F + T_I - T_W). So for m >= p
//   makespan = 3 m T + (p - 1) T = (3m + p - 1) T,   bubble = (p - 1) / (3m + p - 1),
// with idle time per rank exactly one third of 1F1B's. For p = 4, m = 8, T = 2 ms: 54 ms and
// bubble 1/9, against 1F1B's 66 ms and 3/11 (6 ms idle per rank against 18 ms).
// For m < p the warm-up is cut short and the makespan is (2m + 2p - 1) T.
TEST_CASE("ZB1P: makespan (3m + p - 1) T, a third of 1F1B's bubble") {
  const graph_ptr toy = build(toy_json(), 4, 1, 8, true);
  const dip::simulation_result zb = simulate_baseline("zb1p", toy);
  CHECK(ms(zb.makespan) == exactly(54.0));
  CHECK(zb.bubble_ratio == exactly(1.0 / 9.0));
  const dip::simulation_result ofob = simulate_baseline("1f1b", build(toy_json(), 4, 1, 8, false));
  CHECK(ms(ofob.makespan) == exactly(66.0));
  for (std::size_t r = 0; r < 4; ++r) {
    CHECK(ms(zb.ranks[r].idle) == exactly(6.0));
    CHECK(ms(zb.ranks[r].idle) * 3 == exactly(ms(ofob.ranks[r].idle)));
  }

  const toy_model model = toy_json();
  for (int p : {1, 2, 4, 8}) {
    for (std::size_t m = 1; m <= 16; ++m) {
      CAPTURE(p);
      CAPTURE(m);
      const double t = 8.0 / p;
      const double mm = double(m), pp = double(p);
      const dip::simulation_result result = simulate_baseline("zb1p", build(model, p, 1, m, true));
      if (m >= std::size_t(p)) {
        CHECK(ms(result.makespan) == exactly((3 * mm + pp - 1) * t));
        CHECK(result.bubble_ratio == exactly((pp - 1) / (3 * mm + pp - 1)));
      } else {
        CHECK(ms(result.makespan) == exactly((2 * mm + 2 * pp - 1) * t));
      }
      CHECK(above_lower_bound(result));
    }
  }
}

TEST_CASE("ZB1P's peak memory is 1F1B's") {
  // One layer per chunk with 1 byte of kept activation: memory = microbatches in flight.
  // 1F1B peaks at min(p - r, m) on rank r; ZB1P at min(p, m) on every rank (rank r holds the
  // activations of its r deferred W), so the peak over ranks is the same, min(p, m).
  for (int p : {1, 2, 4, 8}) {
    const toy_model model = uniform_model(std::size_t(p), 1_ms, 1_ms, 1_ms, dip::bytes(1));
    for (std::size_t m = 1; m <= 16; ++m) {
      CAPTURE(p);
      CAPTURE(m);
      const dip::simulation_result zb = simulate_baseline("zb1p", build(model, p, 1, m, true));
      const dip::simulation_result ofob = simulate_baseline("1f1b", build(model, p, 1, m, false));
      const dip::simulation_result ofob_split = simulate_baseline("1f1b", build(model, p, 1, m, true));
      CHECK(peak_memory(zb) == peak_memory(ofob));
      CHECK(peak_memory(zb) == peak_memory(ofob_split));
      CHECK(peak_memory(zb) == double(std::min(std::size_t(p), m)));
      for (std::size_t r = 0; r < std::size_t(p); ++r) {
        CHECK(zb.ranks[r].peak_memory.base() == double(std::min(std::size_t(p), m)));
        CHECK(ofob.ranks[r].peak_memory.base() == double(std::min(std::size_t(p) - r, m)));
      }
    }
  }
}

// --- random per-layer costs -----------------------------------------------------------------------

TEST_CASE("random per-layer costs: every baseline is valid, deadlock-free and above the lower bound") {
  std::mt19937 rng(20240611);
  const auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::size_t plans = 0;
  for (int c = 0; c < 200; ++c) {
    const int p = pick(1, 6), v = pick(1, 3);
    // Half the interleaved cases get a multiple of p, the others usually not.
    const std::size_t m = v > 1 && pick(0, 1) == 0 ? std::size_t(p * pick(1, 3)) : std::size_t(pick(1, 12));
    const std::size_t layers = std::size_t(p * v + pick(0, 10));
    std::vector<dip::fixed_layer_cost> per_layer;
    for (std::size_t i = 0; i < layers; ++i) {
      per_layer.push_back(
          {{dip::milliseconds(uniform(0.05, 3.0)), dip::milliseconds(uniform(0.05, 3.0)),
            dip::milliseconds(uniform(0.05, 3.0)), dip::bytes(uniform(1, 100)), dip::bytes(uniform(1e6, 1e8))},
           0});
    }
    const toy_model model = make_model(per_layer);
    dip::simulation_options options;
    if (c % 2 == 1) options.comm = {dip::microseconds(uniform(0, 200)), dip::gigabytes_per_second(uniform(10, 400))};
    CAPTURE(c);
    CAPTURE(p);
    CAPTURE(v);
    CAPTURE(m);
    for (bool split : {false, true}) {
      CAPTURE(split);
      const graph_ptr g = build(model, p, v, m, split);
      std::vector<std::string> names;
      if (v == 1) names = {"gpipe", "1f1b"};
      if (v == 1 && split) names.push_back("zb1p");
      if (m % std::size_t(p) == 0) names.push_back("interleaved");
      else CHECK_THROWS_AS((void)dip::plan_baseline("interleaved", g), dip::error);
      for (const std::string& name : names) {
        CAPTURE(name);
        const dip::plan plan = dip::plan_baseline(name, g);
        CHECK_NOTHROW(dip::validate(plan));
        check_structure(*g, dip::compute_orders(plan));
        dip::simulation_result result;
        REQUIRE_NOTHROW(result = dip::simulate(plan, options));
        CHECK(above_lower_bound(result));
        CHECK(result.bounds.critical_path.base() == exactly(g->critical_path().base()));
        ++plans;
      }
    }
  }
  CHECK(plans > 400);
}

// --- the V: ZB-V and DualPipeV ----------------------------------------------------------------------

namespace {

graph_ptr build_v(const toy_model& t, int p, std::size_t m, bool split = true) {
  const dip::placement placement =
      dip::sequential_placement(t.model, t.costs, one_sequence, p, 2, dip::chunk_order::v_shape);
  const dip::batch_work batch = dip::uniform_batch(t.model, m, one_sequence);
  return std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(t.model, placement, batch, t.costs, dip::stage_graph_options{split}));
}

// A rank's order in PyTorch's compute_only notation, "<stage><F|I|W><microbatch>" (the chain
// position is PyTorch's stage index).
std::string torch_notation(const dip::stage_graph& graph, const std::vector<dip::stage_id>& order) {
  std::string text;
  for (dip::stage_id id : order) {
    const dip::stage& s = graph.at(id);
    if (!text.empty()) text += ' ';
    text += std::to_string(graph.placement().chunk(s.chunk).position) + dip::to_char(s.kind) +
            std::to_string(s.microbatch.value());
  }
  return text;
}

// Idle time inside each rank's own window, from its first compute stage's start to its last
// one's end (what the zero-bubble papers call the bubble: the fill of the forward wave, before
// a rank's first stage, is outside it).
std::vector<double> idle_inside_window(const dip::plan& plan) {
  dip::simulation_options options;
  options.record_timeline = true;
  const dip::simulation_result result = dip::simulate(plan, options);
  std::vector<double> first(plan.ranks.size(), 1e300), last(plan.ranks.size(), 0);
  for (const dip::timed_action& a : result.timeline) {
    if (plan.ranks[a.rank.index()][a.index].kind != dip::action_kind::compute) continue;
    first[a.rank.index()] = std::min(first[a.rank.index()], ms(a.start));
    last[a.rank.index()] = std::max(last[a.rank.index()], ms(a.end));
  }
  std::vector<double> idle;
  for (std::size_t r = 0; r < plan.ranks.size(); ++r) idle.push_back(last[r] - first[r] - ms(result.ranks[r].busy));
  return idle;
}

}  // namespace

TEST_CASE("the V placement: rank c going out, rank 2p - 1 - c coming back") {
  const toy_model model = uniform_model(12, 1_ms, 1_ms, 1_ms);
  const dip::placement v =
      dip::sequential_placement(model.model, model.costs, one_sequence, 3, 2, dip::chunk_order::v_shape);
  std::vector<std::size_t> ranks;
  for (dip::chunk_id c : v.chains[0]) ranks.push_back(v.chunk(c).rank.index());
  CHECK(ranks == std::vector<std::size_t>{0, 1, 2, 2, 1, 0});
  // More chunks per rank zig-zag (the modality-aware placement's V); ZB-V and DualPipeV take two.
  const dip::placement zigzag =
      dip::sequential_placement(model.model, model.costs, one_sequence, 3, 3, dip::chunk_order::v_shape);
  ranks.clear();
  for (dip::chunk_id c : zigzag.chains[0]) ranks.push_back(zigzag.chunk(c).rank.index());
  CHECK(ranks == std::vector<std::size_t>{0, 1, 2, 2, 1, 0, 0, 1, 2});
  CHECK_THROWS_WITH_AS(
      (void)dip::plan_baseline("zbv", std::make_shared<const dip::stage_graph>(dip::build_stage_graph(
                                          model.model, zigzag, dip::uniform_batch(model.model, 6, one_sequence),
                                          model.costs, dip::stage_graph_options{true}))),
      doctest::Contains("needs a V-shaped placement of 2 chunks per rank; the chain has 9 chunks"), dip::error);
}

TEST_CASE("ZB-V and DualPipeV orders equal PyTorch's ScheduleZBVZeroBubble and ScheduleDualPipeV") {
  // Printed by torch 2.15.0's _calculate_single_rank_operations (None slots dropped, DualPipeV's
  // OVERLAP_F_B expanded to its F and full backward, a full backward written I then W);
  // python/tests/torch/test_v_schedules.py compares many more (p, m) against the live classes.
  const toy_model model = uniform_model(12, 1_ms, 1_ms, 1_ms);
  const graph_ptr g24 = build_v(model, 2, 4);
  const orders_t zbv = orders_of(&dip::zbv, g24);
  CHECK(torch_notation(*g24, zbv[0]) ==
        "0F0 0F1 0F2 3F0 3I0 3W0 3F1 3I1 3W1 0F3 0I0 0W0 3F2 3I2 3W2 0I1 0W1 3F3 3I3 3W3 0I2 0W2 0I3 0W3");
  CHECK(torch_notation(*g24, zbv[1]) ==
        "1F0 2F0 1F1 2F1 2I0 2W0 1F2 1I0 1W0 2F2 2I1 2W1 1F3 1I1 1W1 2F3 2I2 2W2 1I2 2I3 1I3 1W2 2W3 1W3");
  const orders_t dual = orders_of(&dip::dualpipev, g24);
  CHECK(torch_notation(*g24, dual[0]) ==
        "0F0 0F1 0F2 3F0 3I0 3W0 3F1 0F3 3I1 3W1 3F2 0I0 0W0 3I2 3W2 3F3 0I1 0W1 3I3 3W3 0I2 0W2 0I3 0W3");
  CHECK(torch_notation(*g24, dual[1]) ==
        "1F0 2F0 1F1 2F1 1F2 2I0 2W0 2F2 1I0 1W0 1F3 2I1 2W1 2F3 1I1 1W1 2I2 2W2 1I2 1W2 2I3 1I3 2W3 1W3");
  // Fewer microbatches than the V needs (m < 2p - 1): PyTorch plans 2p - 1 and drops the rest.
  const graph_ptr g32 = build_v(uniform_model(12, 1_ms, 1_ms, 1_ms), 3, 2);
  const orders_t short_zbv = orders_of(&dip::zbv, g32);
  CHECK(torch_notation(*g32, short_zbv[0]) == "0F0 0F1 5F0 5I0 5W0 5F1 5I1 5W1 0I0 0W0 0I1 0W1");
  CHECK(torch_notation(*g32, short_zbv[1]) == "1F0 1F1 4F0 4F1 4I0 4W0 4I1 4W1 1I0 1W0 1I1 1W1");
  CHECK(torch_notation(*g32, short_zbv[2]) == "2F0 3F0 2F1 3F1 3I0 3W0 2I0 2W0 3I1 3W1 2I1 2W1");
}

// F = I = W = t per chunk (96 identical layers cut into 2p chunks: t = 12 / (2p) ms).
//
// ZB-V. Rank p - 1 holds the turn of the V and cannot start before the first microbatch's
// p - 1 forwards reach it, and every rank has 6 m t of work, so no schedule beats
// (6m + p - 1) t. ZB-V reaches it for m >= 2p - 1 with no idle inside any rank's window (each
// rank's first stage to its last): the "zero bubble" of Qi et al., whose bubble formulas
// count the idle inside that window; the trapezoid's ramps (rank r starts r t late and ends
// (p - 1 - r) t early) are what is left, half of ZB1P's (p - 1) 2t on the same model. Peak
// activations: 2p chunks' on rank 0 (PyTorch's and the paper's "same as 1F1B").
//
// DualPipeV. Same makespan for m >= 2p, but its ranks end together: rank r idles
// (p - 1 - r) t inside its window (the V's fill is not deferred W as in ZB-V), (p - 1) t per
// rank in all. DeepSeek's table says (p - 1)(F&B + B - 3W): 2 (p - 1) t with F&B = F + B (no
// overlap, as here), (p - 1) t with F&B = max(F, B), the perfect overlap it assumes. dip's
// sequential pairs reach the lower figure; not reconciled: DualPipe runs a pair as one step
// that waits for both inputs, dip starts a pair's F as soon as its own input is there.
// Peak activations 2p + 1 chunks' (DeepSeek's "PP + 1" for PP = 2p stages).
TEST_CASE("ZB-V and DualPipeV with F = I = W: the published bubbles and activation memory") {
  const toy_model model = uniform_model(96, 0.125_ms, 0.125_ms, 0.125_ms, dip::bytes(1));
  for (int p : {1, 2, 3, 4, 6}) {
    const double t = 12.0 / (2 * p), chunk_bytes = 96.0 / (2 * p);
    const std::size_t pp = std::size_t(p);
    for (std::size_t m = 2 * pp - 1; m <= 16; ++m) {
      CAPTURE(p);
      CAPTURE(m);
      const graph_ptr g = build_v(model, p, m);
      const dip::plan zbv = dip::plan_baseline("zbv", g);
      dip::validate(zbv);
      const dip::simulation_result zr = dip::simulate(zbv);
      CHECK(ms(zr.makespan) == exactly(double(6 * m + pp - 1) * t));
      for (double idle : idle_inside_window(zbv)) CHECK(idle == doctest::Approx(0).epsilon(1e-9));
      CHECK(peak_memory(zr) == exactly(2 * pp * chunk_bytes));
      CHECK(zr.ranks[0].peak_memory.base() == exactly(2 * pp * chunk_bytes));
      // ZB1P on the same model, p chunks of 2 t: (3m + p - 1) 2t, twice ZB-V's ramp.
      const dip::simulation_result zb1p = simulate_baseline("zb1p", build(model, p, 1, m, true));
      CHECK(ms(zb1p.makespan) - ms(zr.makespan) == exactly(double(pp - 1) * t));
      CHECK(peak_memory(zb1p) == exactly(peak_memory(zr)));
      if (m < 2 * pp) continue;
      const dip::plan dual = dip::plan_baseline("dualpipev", g);
      dip::validate(dual);
      const dip::simulation_result dr = dip::simulate(dual);
      CHECK(ms(dr.makespan) == exactly(double(6 * m + pp - 1) * t));
      const std::vector<double> idle = idle_inside_window(dual);
      for (std::size_t r = 0; r < pp; ++r) CHECK(idle[r] == exactly(double(pp - 1 - r) * t));
      CHECK(peak_memory(dr) == exactly(double(2 * pp + 1) * chunk_bytes));
    }
  }
}

TEST_CASE("ZB-V and DualPipeV refuse what they cannot schedule") {
  const toy_model model = uniform_model(12, 1_ms, 1_ms, 1_ms);
  const dip::rank_id r0 = dip::rank_id::from_index(0);
  // Round robin with two chunks per rank is Megatron's interleaving, not the V.
  CHECK_THROWS_WITH_AS((void)dip::zbv(build(model, 3, 2, 6, true), r0),
                       doctest::Contains("needs the V-shaped placement"), dip::error);
  CHECK_THROWS_WITH_AS((void)dip::dualpipev(build(model, 3, 1, 6, true), r0), doctest::Contains("2 chunks per rank"),
                       dip::error);
  CHECK_THROWS_WITH_AS((void)dip::zbv(build_v(model, 3, 6, false), r0), doctest::Contains("split_backward = true"),
                       dip::error);
  CHECK_THROWS_WITH_AS((void)dip::dualpipev(build_v(model, 3, 5), r0),
                       doctest::Contains("at least as many microbatches as stages (2 x 3 ranks = 6), got 5"),
                       dip::error);
  // And the classic four refuse the V.
  CHECK_THROWS_WITH_AS((void)dip::plan_baseline("interleaved", build_v(model, 3, 6)),
                       doctest::Contains("needs chunk position c on rank c mod p"), dip::error);
}

TEST_CASE("random per-layer costs on the V: ZB-V and DualPipeV are valid, deadlock-free, above the bound") {
  std::mt19937 rng(20261206);
  const auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::size_t plans = 0;
  for (int c = 0; c < 150; ++c) {
    const int p = pick(1, 6);
    const std::size_t m = std::size_t(pick(1, 16));
    std::vector<dip::fixed_layer_cost> per_layer;
    for (std::size_t i = 0; i < std::size_t(2 * p + pick(0, 10)); ++i) {
      per_layer.push_back(
          {{dip::milliseconds(uniform(0.05, 3.0)), dip::milliseconds(uniform(0.05, 3.0)),
            dip::milliseconds(uniform(0.05, 3.0)), dip::bytes(uniform(1, 100)), dip::bytes(uniform(1e6, 1e8))},
           0});
    }
    const graph_ptr g = build_v(make_model(per_layer), p, m);
    dip::simulation_options options;
    if (c % 2 == 1) options.comm = {dip::microseconds(uniform(0, 200)), dip::gigabytes_per_second(uniform(10, 400))};
    CAPTURE(c);
    CAPTURE(p);
    CAPTURE(m);
    for (const char* name : {"zbv", "dualpipev"}) {
      CAPTURE(name);
      if (std::string_view(name) == "dualpipev" && m < std::size_t(2 * p)) {
        CHECK_THROWS_AS((void)dip::plan_baseline(name, g), dip::error);
        continue;
      }
      const dip::plan plan = dip::plan_baseline(name, g);
      CHECK_NOTHROW(dip::validate(plan));
      check_structure(*g, dip::compute_orders(plan));
      dip::simulation_result result;
      REQUIRE_NOTHROW(result = dip::simulate(plan, options));
      CHECK(above_lower_bound(result));
      ++plans;
    }
  }
  CHECK(plans > 200);
}
