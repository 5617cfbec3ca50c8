// The plan simulator: against an independent brute-force reference on thousands of random plans,
// closed forms on hand-built schedules, deadlocks, invalid plans, memory and communication.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
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

// --- random small plans -------------------------------------------------------------------------
class case_generator : public dip_test::random_draws {
 public:
  using random_draws::random_draws;

  dip::plan make_plan() {
    const dip_test::random_module_graph shape = dip_test::random_module_graph_of(rng_);
    dip::model_builder builder("random");
    dip::fixed_cost_table costs;
    for (const std::string& n : shape.names) {
      const std::size_t layers = std::size_t(integer(1, 8));
      builder.add(opaque_module(n, layers));
      std::vector<dip::fixed_layer_cost> per_layer;
      for (std::size_t i = 0; i < layers; ++i) per_layer.push_back(random_layer_cost());
      costs.set(n, per_layer);
    }
    for (const auto& [from, to] : shape.edges) builder.connect(from, to);
    const dip::multimodal_model model = builder.build();
    const dip::placement placement = dip_test::random_placement(model, 6, rng_);
    const dip::batch_work batch = dip_test::random_batch(
        model, rng_, [](std::mt19937_64& r) { return std::uniform_real_distribution<double>(50, 500)(r); });
    auto graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(model, placement, batch, costs, {.split_backward = coin()}));
    return dip::make_plan(graph, dip_test::random_order(*graph, rng_));
  }

  dip::simulation_options make_options(int ranks) {
    dip::simulation_options o;
    if (coin()) o.comm.latency = dip::milliseconds(uniform(0, 2));
    if (coin(0.7)) o.comm.link = dip::gigabytes_per_second(uniform(1, 100));
    if (coin()) {
      for (int r = 0; r < ranks; ++r) o.weight_memory.push_back(dip::mib(uniform(0, 4096)));
    }
    o.record_timeline = coin();
    return o;
  }

 private:
  dip::fixed_layer_cost random_layer_cost() {
    const auto time = [&] { return coin(0.15) ? dip::duration{} : dip::milliseconds(uniform(0.1, 5)); };
    const auto size = [&](double most) { return coin(0.15) ? dip::bytes{} : dip::mib(uniform(1, most)); };
    dip::fixed_layer_cost c;
    c.cost = {time(), time(), time(), size(1000), size(100)};
    c.reference_tokens = coin() ? 0.0 : uniform(100, 1000);  // some layers scale with the work
    return c;
  }
};

// --- the reference: fixed-point sweeps, no worklist ------------------------------------------
// Every action's time is a function of earlier actions on its rank and, for a recv, of its send;
// sweeping all ranks until no time changes reaches the unique solution of an acyclic plan.
struct reference_outcome {
  double makespan = 0;
  std::vector<double> busy, peak;
  std::vector<std::vector<double>> end;  // per action: compute end, send arrival, recv end
  int sweeps = 0;
};

reference_outcome reference_simulate(const dip::plan& p, const dip::simulation_options& o) {
  const dip::stage_graph& g = *p.graph;
  const std::size_t ranks = p.ranks.size();
  std::map<std::uint32_t, std::pair<std::size_t, std::size_t>> send_of;
  reference_outcome out;
  out.busy.assign(ranks, 0);
  out.peak.assign(ranks, 0);
  out.end.resize(ranks);
  for (std::size_t r = 0; r < ranks; ++r) {
    out.end[r].assign(p.ranks[r].size(), 0.0);
    for (std::size_t i = 0; i < p.ranks[r].size(); ++i) {
      if (p.ranks[r][i].kind == dip::action_kind::send) send_of[p.ranks[r][i].edge] = {r, i};
    }
  }
  const double latency = o.comm.latency.base(), link = o.comm.link.base();
  std::vector<double> final_clock(ranks, 0);
  for (bool changed = true; changed;) {
    changed = false;
    REQUIRE(++out.sweeps < 100000);
    for (std::size_t r = 0; r < ranks; ++r) {
      double clock = 0;
      std::vector<double> link_free(ranks, 0);
      for (std::size_t i = 0; i < p.ranks[r].size(); ++i) {
        const dip::action& a = p.ranks[r][i];
        double value = 0;
        if (a.kind == dip::action_kind::compute) {
          clock = clock + g.at(a.stage).time.base();
          value = clock;
        } else if (a.kind == dip::action_kind::send) {
          const double transfer = link > 0 ? g.edges()[a.edge].size.base() / link : 0.0;
          const double start = std::max(clock, link_free[a.peer.index()]);
          link_free[a.peer.index()] = start + transfer;
          value = start + latency + transfer;
        } else {
          const auto [sr, si] = send_of.at(a.edge);
          clock = std::max(clock, out.end[sr][si]);
          value = clock;
        }
        if (value != out.end[r][i]) {
          out.end[r][i] = value;
          changed = true;
        }
      }
      final_clock[r] = clock;
    }
  }
  for (std::size_t r = 0; r < ranks; ++r) {
    out.makespan = std::max(out.makespan, final_clock[r]);
    double memory = o.weight_memory.empty() ? 0.0 : o.weight_memory[r].base();
    out.peak[r] = memory;
    for (const dip::action& a : p.ranks[r]) {
      if (a.kind != dip::action_kind::compute) continue;
      out.busy[r] += g.at(a.stage).time.base();
      memory += g.at(a.stage).memory_delta.base();
      out.peak[r] = std::max(out.peak[r], memory);
    }
  }
  return out;
}

bool agree(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)}); }

// --- hand-built plans -----------------------------------------------------------------------------
// A one-module model of `layers` layers, each with the same cost.
struct chain_fixture {
  std::shared_ptr<const dip::stage_graph> graph;

  // Chunk k is layer k, on rank ranks_of_chunks[k].
  chain_fixture(std::vector<int> ranks_of_chunks, int ranks, std::size_t microbatches, dip::layer_cost cost,
                bool split = false)
      : graph(dip_test::chain_graph(ranks_of_chunks, ranks, microbatches, cost, split)) {}

  dip::stage_id f(std::size_t chunk, std::size_t mb) const {
    return graph->find(dip::stage_kind::forward, dip::chunk_id::from_index(chunk), mb);
  }
  dip::stage_id b(std::size_t chunk, std::size_t mb) const {
    return graph->find(dip::stage_kind::backward, dip::chunk_id::from_index(chunk), mb);
  }
  std::uint32_t edge(dip::stage_id from, dip::stage_id to) const {
    for (std::uint32_t e = 0; e < graph->edges().size(); ++e) {
      if (graph->edges()[e].from == from && graph->edges()[e].to == to) return e;
    }
    FAIL("no such edge");
    return 0;
  }
  dip::action compute(dip::stage_id s) const {
    return {dip::action_kind::compute, s, 0, dip::rank_id{}, dip::memory_strategy::keep};
  }
  dip::action send(dip::stage_id from, dip::stage_id to) const {
    return {dip::action_kind::send, from, edge(from, to), graph->at(to).rank, dip::memory_strategy::keep};
  }
  dip::action recv(dip::stage_id from, dip::stage_id to) const {
    return {dip::action_kind::recv, from, edge(from, to), graph->at(from).rank, dip::memory_strategy::keep};
  }
};

dip::simulation_options options(dip::communication_model comm, std::vector<dip::bytes> weights = {},
                                bool timeline = false) {
  dip::simulation_options o;
  o.comm = comm;
  o.weight_memory = std::move(weights);
  o.record_timeline = timeline;
  return o;
}

dip::errc code_of(const dip::plan& p, const dip::simulation_options& o = {}) {
  try {
    dip::simulate(p, o);
  } catch (const dip::error& e) {
    return e.code();
  }
  FAIL("simulate did not throw");
  return dip::errc::invalid_argument;
}

}  // namespace

TEST_CASE("random plans agree with a brute-force fixed-point reference") {
  constexpr std::uint64_t seed = 20240611;
  constexpr int cases = 3000;
  case_generator gen(seed);
  std::size_t actions = 0;
  for (int index = 0; index < cases; ++index) {
    CAPTURE(seed);
    CAPTURE(index);
    const dip::plan p = gen.make_plan();
    const dip::simulation_options o = gen.make_options(p.graph->ranks());
    const dip::stage_graph& g = *p.graph;
    REQUIRE_FALSE(dip::first_violation(p, {.memory_cap = std::nullopt, .weight_memory = o.weight_memory}).has_value());
    const dip::simulation_result sim = dip::simulate(p, o);
    const reference_outcome ref = reference_simulate(p, o);
    actions += sim.simulated_actions;
    REQUIRE(sim.simulated_actions == p.action_count());
    CHECK(agree(sim.makespan.base(), ref.makespan));
    REQUIRE(sim.ranks.size() == p.ranks.size());
    double busy = 0;
    for (std::size_t r = 0; r < p.ranks.size(); ++r) {
      CAPTURE(r);
      CHECK(agree(sim.ranks[r].busy.base(), ref.busy[r]));
      CHECK(agree(sim.ranks[r].peak_memory.base(), ref.peak[r]));
      CHECK(agree(sim.ranks[r].idle.base(), ref.makespan - ref.busy[r]));
      busy += ref.busy[r];
    }
    if (ref.makespan > 0) CHECK(agree(sim.bubble_ratio, 1 - busy / (double(p.ranks.size()) * ref.makespan)));
    // Bounds are the stage graph's, and no plan beats them.
    const std::vector<dip::duration> work = g.work_per_rank();
    CHECK(agree(sim.bounds.busiest_rank.base(), std::max_element(work.begin(), work.end())->base()));
    CHECK(agree(sim.bounds.critical_path.base(), g.critical_path().base()));
    CHECK(sim.makespan.base() >= sim.bounds.classic().base() * (1 - 1e-12));
    if (o.record_timeline) {
      REQUIRE(sim.timeline.size() == p.action_count());
      std::size_t k = 0;
      for (std::size_t r = 0; r < p.ranks.size(); ++r) {
        for (std::size_t i = 0; i < p.ranks[r].size(); ++i, ++k) {
          CAPTURE(r);
          CAPTURE(i);
          CHECK(sim.timeline[k].rank.index() == r);
          CHECK(sim.timeline[k].index == i);
          CHECK(agree(sim.timeline[k].end.base(), ref.end[r][i]));
          CHECK(sim.timeline[k].start <= sim.timeline[k].end);
        }
      }
    } else {
      CHECK(sim.timeline.empty());
    }
  }
  MESSAGE("simulated " << actions << " actions over " << cases << " random plans");
}

TEST_CASE("one rank running m forward+backward stages: makespan is the sum, no bubble") {
  for (bool split : {false, true}) {
    CAPTURE(split);
    const std::size_t m = 7;
    const chain_fixture fx({0}, 1, m, {1_ms, 2_ms, 0.5_ms, dip::mib(10), dip::mib(1)}, split);
    std::vector<std::vector<dip::stage_id>> order(1);
    for (std::size_t j = 0; j < m; ++j) {
      order[0].push_back(fx.f(0, j));
      if (split) {
        order[0].push_back(fx.graph->find(dip::stage_kind::backward_input, dip::chunk_id::from_index(0), j));
        order[0].push_back(fx.graph->find(dip::stage_kind::backward_weight, dip::chunk_id::from_index(0), j));
      } else {
        order[0].push_back(fx.b(0, j));
      }
    }
    const dip::simulation_result r =
        dip::simulate(dip::make_plan(fx.graph, order), options({1_ms, dip::gigabytes_per_second(1)}));
    CHECK(r.makespan.base() == doctest::Approx(to_seconds(3.5_ms) * m));
    CHECK(r.bubble_ratio == doctest::Approx(0.0));
    CHECK(r.ranks[0].idle.base() == doctest::Approx(0.0));
    CHECK(r.bounds.classic().base() == doctest::Approx(r.makespan.base()));
    CHECK(r.ranks[0].peak_memory == dip::mib(10));  // F then its backward: one activation at a time
  }
}

TEST_CASE("two ranks each receiving first from the other deadlock, and the error names both") {
  const chain_fixture fx({0, 1}, 2, 1, {1_ms, 1_ms, 1_ms, dip::mib(1), dip::mib(1)});
  const auto f0 = fx.f(0, 0), f1 = fx.f(1, 0), b0 = fx.b(0, 0), b1 = fx.b(1, 0);
  dip::plan p{fx.graph,
              {{fx.recv(b1, b0), fx.compute(f0), fx.send(f0, f1), fx.compute(b0)},
               {fx.recv(f0, f1), fx.compute(f1), fx.compute(b1), fx.send(b1, b0)}}};
  // Rank 0 cannot send F before it gets B's gradient; rank 1 cannot send that before it gets F.
  // Every rule of the validator holds (a receive may come early); only simulation shows it.
  CHECK_FALSE(dip::first_violation(p).has_value());
  const auto start = std::chrono::steady_clock::now();
  try {
    dip::simulate(p);
    FAIL("expected a deadlock");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::deadlock);
    const std::string what = e.what();
    CHECK(what.find("rank 0 waits at action 0 (recv B0@c1 -> B0@c0 from rank 1)") != std::string::npos);
    CHECK(what.find("rank 1 waits at action 0 (recv F0@c0 -> F0@c1 from rank 0)") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));

  // A deadlock later in the lists: rank 0 sends microbatch 1's forward only after it has
  // microbatch 0's gradient, which rank 1 computes only after microbatch 1.
  const chain_fixture two({0, 1}, 2, 2, {1_ms, 1_ms, 1_ms, dip::mib(1), dip::mib(1)});
  dip::plan q = dip::make_plan(two.graph, {{two.f(0, 0), two.b(0, 0), two.f(0, 1), two.b(0, 1)},
                                           {two.f(1, 1), two.b(1, 1), two.f(1, 0), two.b(1, 0)}});
  try {
    dip::simulate(q);
    FAIL("expected a deadlock");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::deadlock);
    CHECK(std::string(e.what()).find("rank 0 waits at action 2") != std::string::npos);
    CHECK(std::string(e.what()).find("rank 1 waits at action 0") != std::string::npos);
  }
}

TEST_CASE("a stage computed before its input arrives is an invalid plan") {
  const chain_fixture fx({0, 1}, 2, 1, {1_ms, 1_ms, 1_ms, dip::mib(1), dip::mib(1)});
  const auto f0 = fx.f(0, 0), f1 = fx.f(1, 0), b0 = fx.b(0, 0), b1 = fx.b(1, 0);
  const dip::plan good{fx.graph,
                       {{fx.compute(f0), fx.send(f0, f1), fx.recv(b1, b0), fx.compute(b0)},
                        {fx.recv(f0, f1), fx.compute(f1), fx.compute(b1), fx.send(b1, b0)}}};
  CHECK(dip::simulate(good).makespan == 6_ms);
  CHECK(dip::make_plan(fx.graph, {{f0, b0}, {f1, b1}}).ranks == good.ranks);

  dip::plan p = good;
  std::swap(p.ranks[1][0], p.ranks[1][1]);  // F0@c1 before the recv of its input
  CHECK_THROWS_WITH_AS(dip::simulate(p), doctest::Contains("rank 1 action 0: stage F0@c1 runs before its input F0@c0"),
                       dip::error);
  CHECK(code_of(p) == dip::errc::invalid_plan);

  p = good;
  std::swap(p.ranks[1][1], p.ranks[1][2]);  // B before F on one rank
  CHECK_THROWS_WITH_AS(dip::simulate(p), doctest::Contains("stage B0@c1 runs before its input F0@c1 is computed"),
                       dip::error);

  // Pairing errors.
  p = good;
  p.ranks[0].insert(p.ranks[0].begin() + 2, fx.send(f0, f1));  // the same edge sent twice
  CHECK_THROWS_WITH_AS(dip::simulate(p), doctest::Contains("sent twice"), dip::error);
  p = good;
  p.ranks[0].push_back(fx.recv(f0, f1));  // a recv on the producer's rank
  CHECK(code_of(p) == dip::errc::invalid_plan);
  p = good;
  p.ranks[1][3].peer = dip::rank_id(1);  // a send naming itself as the peer
  CHECK(code_of(p) == dip::errc::invalid_plan);
  p = good;
  p.ranks[0].erase(p.ranks[0].begin() + 1);  // rank 1's recv has no send anywhere
  CHECK_THROWS_WITH_AS(dip::simulate(p), doctest::Contains("has no matching send"), dip::error);
  p = good;
  p.ranks[0].erase(p.ranks[0].begin() + 2, p.ranks[0].end());  // a send nobody receives, B0@c0 never run
  CHECK_THROWS_WITH_AS(dip::simulate(p),
                       doctest::Contains("rank 1 action 3: send B0@c1 -> B0@c0 to rank 0 is never received"),
                       dip::error);
  p = good;
  p.ranks[0].pop_back();
  CHECK_THROWS_WITH_AS(dip::simulate(p), doctest::Contains("B0@c0 is never computed"), dip::error);
  p = good;
  p.ranks[0].push_back(fx.compute(b0));
  CHECK_THROWS_WITH_AS(dip::simulate(p), doctest::Contains("computed twice"), dip::error);
  p = good;
  p.ranks[1].push_back(fx.compute(b0));
  CHECK_THROWS_WITH_AS(dip::simulate(p), doctest::Contains("B0@c0 belongs to rank 0"), dip::error);
  p = good;
  p.ranks.pop_back();
  CHECK(code_of(p) == dip::errc::invalid_plan);
  CHECK_THROWS_AS(dip::simulate(good, options({}, {dip::bytes(1)})), dip::error);  // one entry for two ranks
  CHECK_THROWS_AS(dip::simulate(dip::plan{}), dip::error);
}

TEST_CASE("memory: allocated as F ends, freed as B or W ends, timeline and peak") {
  // One rank, F0 F1 B0 B1: F 1 ms, B 2 ms, 100 MiB kept per microbatch, 1 GiB of weights.
  const chain_fixture fx({0}, 1, 2, {1_ms, 1.5_ms, 0.5_ms, dip::mib(100), dip::mib(1)});
  const dip::plan p = dip::make_plan(fx.graph, {{fx.f(0, 0), fx.f(0, 1), fx.b(0, 0), fx.b(0, 1)}});
  const dip::bytes w = dip::gib(1), a = dip::mib(100);
  const dip::simulation_result r = dip::simulate(p, options({}, {w}, true));
  CHECK(r.ranks[0].peak_memory == w + a + a);
  const std::vector<std::pair<dip::duration, dip::bytes>> expected{
      {0_ms, w}, {1_ms, w + a}, {2_ms, w + a + a}, {4_ms, w + a}, {6_ms, w}};
  REQUIRE(r.ranks[0].memory_timeline.size() == expected.size());
  for (std::size_t k = 0; k < expected.size(); ++k) {
    CAPTURE(k);
    CHECK(r.ranks[0].memory_timeline[k].first.base() == doctest::Approx(expected[k].first.base()));
    CHECK(r.ranks[0].memory_timeline[k].second == expected[k].second);
  }
  // Without a timeline the peak is the same and no timeline is kept.
  const dip::simulation_result quiet = dip::simulate(p, options({}, {w}));
  CHECK(quiet.ranks[0].peak_memory == w + a + a);
  CHECK(quiet.ranks[0].memory_timeline.empty());

  // Split backward: I keeps the activation, W frees it.
  const chain_fixture split({0}, 1, 1, {1_ms, 1.5_ms, 0.5_ms, dip::mib(100), dip::mib(1)}, true);
  const auto i0 = split.graph->find(dip::stage_kind::backward_input, dip::chunk_id::from_index(0), 0);
  const auto w0 = split.graph->find(dip::stage_kind::backward_weight, dip::chunk_id::from_index(0), 0);
  const dip::simulation_result s =
      dip::simulate(dip::make_plan(split.graph, {{split.f(0, 0), i0, w0}}), options({}, {}, true));
  REQUIRE(s.ranks[0].memory_timeline.size() == 3);
  CHECK(s.ranks[0].memory_timeline[1] == std::pair{dip::duration(1e-3), a});
  CHECK(s.ranks[0].memory_timeline[2].first.base() == doctest::Approx(3e-3));
  CHECK(s.ranks[0].memory_timeline[2].second == dip::bytes{});
}

TEST_CASE("communication: a two-rank chain pays latency plus size / bandwidth per transfer") {
  // 10 MB activations at 10 GB/s: 1 ms on the link; latency 0.5 ms.
  const dip::layer_cost cost{1_ms, 1_ms, 1_ms, dip::mib(1), dip::bytes(1e7)};
  const chain_fixture fx({0, 1}, 2, 1, cost);
  const dip::plan p = dip::make_plan(fx.graph, {{fx.f(0, 0), fx.b(0, 0)}, {fx.f(1, 0), fx.b(1, 0)}});
  const dip::communication_model comm{0.5_ms, dip::gigabytes_per_second(10)};
  // F0@c0 [0,1], transfer [1,2] + 0.5, F0@c1 [2.5,3.5], B0@c1 [3.5,5.5], transfer + 1.5, B0@c0 [7,9].
  const dip::simulation_result r = dip::simulate(p, options(comm, {}, true));
  CHECK(r.makespan.base() == doctest::Approx(9e-3));
  CHECK(r.ranks[0].busy.base() == doctest::Approx(3e-3));
  CHECK(r.ranks[1].busy.base() == doctest::Approx(3e-3));
  CHECK(r.bubble_ratio == doctest::Approx(1 - 6.0 / 18.0));
  CHECK(r.bounds.critical_path.base() == doctest::Approx(6e-3));  // communication not counted
  // Rank 0: F, send, recv, B; the send's timed span is the transfer up to its arrival.
  REQUIRE(r.timeline.size() == 8);
  CHECK(r.timeline[1].start.base() == doctest::Approx(1e-3));
  CHECK(r.timeline[1].end.base() == doctest::Approx(2.5e-3));
  CHECK(r.timeline[2].start.base() == doctest::Approx(1e-3));  // rank 0 waits from 1 ms ...
  CHECK(r.timeline[2].end.base() == doctest::Approx(7e-3));    // ... to the gradient's arrival

  // Free transfers: only latency.
  CHECK(dip::simulate(p, options({0.5_ms, dip::bandwidth{}})).makespan.base() == doctest::Approx(7e-3));
  CHECK(dip::simulate(p).makespan.base() == doctest::Approx(6e-3));

  // Transfers on one link serialise; latency overlaps. 50 MB at 10 GB/s is 5 ms on the link.
  const chain_fixture big({0, 1}, 2, 2, {1_ms, 1_ms, 1_ms, dip::mib(1), dip::bytes(5e7)});
  const dip::plan q = dip::make_plan(big.graph, {{big.f(0, 0), big.f(0, 1), big.b(0, 0), big.b(0, 1)},
                                                 {big.f(1, 0), big.b(1, 0), big.f(1, 1), big.b(1, 1)}});
  const dip::simulation_result s = dip::simulate(q, options(comm, {}, true));
  // Rank 0: F0 [0,1] send F0; F1 [1,2] send F1; ...
  REQUIRE(q.ranks[0][1].kind == dip::action_kind::send);
  REQUIRE(q.ranks[0][3].kind == dip::action_kind::send);
  CHECK(s.timeline[1].start.base() == doctest::Approx(1e-3));
  CHECK(s.timeline[1].end.base() == doctest::Approx(6.5e-3));
  CHECK(s.timeline[3].start.base() == doctest::Approx(6e-3));  // waits for the link, not the rank
  CHECK(s.timeline[3].end.base() == doctest::Approx(11.5e-3));
}
