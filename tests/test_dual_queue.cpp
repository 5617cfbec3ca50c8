// Phase 2, greedy dual-queue interleaving: 1F1B exactly on a uniform pipeline under 1F1B's
// in-flight cap, determinism, and on random multi-chain (DIP-like) graphs: every plan valid,
// never below the lower bound, within the memory cap whenever it says so, and the same orders as
// the rule written plainly (every choice a scan of everything available).
#include <doctest/doctest.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <dip/cost/fixed_table.hpp>
#include <dip/partition/contiguous_placement.hpp>
#include <dip/partition/placement.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/dual_queue.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

#include "plan_test_support.hpp"

using namespace dip::literals;

namespace {

using graph_ptr = std::shared_ptr<const dip::stage_graph>;

std::vector<std::vector<dip::stage_id>> baseline_orders(const std::string& name, const graph_ptr& graph) {
  const dip::plan plan = dip::plan_baseline(name, graph);
  std::vector<std::vector<dip::stage_id>> orders(plan.ranks.size());
  for (std::size_t r = 0; r < plan.ranks.size(); ++r) {
    for (const dip::action& a : plan.ranks[r]) {
      if (a.kind == dip::action_kind::compute) orders[r].push_back(a.stage);
    }
  }
  return orders;
}

// A placement with one chain per module, each cut into `ranks * per_rank` chunks of one layer's
// worth, round robin.
dip::placement chain_per_module(const dip::multimodal_model& model, int ranks, const std::vector<int>& per_rank) {
  dip::placement p;
  p.ranks = ranks;
  for (std::size_t m = 0; m < model.module_count(); ++m) {
    const std::size_t chunks = std::size_t(ranks * per_rank[m]);
    const std::size_t layers = model.modules()[m].layers.size();
    p.chains.emplace_back();
    for (std::size_t c = 0; c < chunks; ++c) {
      dip::chunk_spec chunk;
      chunk.spans.push_back({dip::module_id::from_index(m), c * layers / chunks, (c + 1) * layers / chunks});
      chunk.rank = dip::rank_id::from_index((c + m) % std::size_t(ranks));
      chunk.chain = m;
      chunk.position = c;
      p.chains.back().push_back(dip::chunk_id::from_index(p.chunks.size()));
      p.chunks.push_back(chunk);
    }
    std::vector<std::size_t> inputs;
    for (dip::module_id in : model.inputs_of(dip::module_id::from_index(m))) inputs.push_back(in.index());
    p.chain_inputs.push_back(inputs);
  }
  return p;
}

// The rule of dual_queue.hpp written plainly, every choice by a scan of everything available: at
// each step the rank that can start an allowed stage soonest runs its best one (a forward and a
// backward both ready: the kind it did not run last; W only when neither is; forwards only
// within the cap unless no rank can run anything else). interleave_stages keeps queues sorted
// and least ready times cached; its orders must be these.
struct plain_interleaving {
  std::vector<std::vector<dip::stage_id>> order;
  bool over_cap = false;
};

plain_interleaving interleave_plainly(const dip::stage_graph& graph, const dip::pass_index& passes,
                                      const std::vector<std::uint32_t>& priority,
                                      const dip::interleave_options& options) {
  const std::size_t ranks = std::size_t(graph.ranks()), n = graph.size();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::uint32_t> waiting(n);
  std::vector<double> ready(n, 0);
  std::vector<char> available(n, 0);
  for (std::size_t v = 0; v < n; ++v) {
    waiting[v] = std::uint32_t(graph.in_edges(dip::stage_id::from_index(v)).size());
    available[v] = waiting[v] == 0;
  }
  std::vector<double> free_at(ranks, 0), memory(ranks, 0), cap(ranks, inf);
  for (std::size_t r = 0; r < ranks; ++r) {
    if (!options.weight_memory.empty()) memory[r] = options.weight_memory[r].base();
    if (!options.memory_cap.empty()) cap[r] = options.memory_cap[r].base();
  }
  std::vector<int> last(ranks, 1);
  const auto stage_of = [&](std::size_t v) -> const dip::stage& { return graph.stages()[v]; };
  const auto queue = [&](std::size_t v) {
    const dip::stage_kind k = stage_of(v).kind;
    return k == dip::stage_kind::forward ? 0 : k == dip::stage_kind::backward_weight ? 2 : 1;
  };
  const auto fits = [&](std::size_t v) {
    const std::size_t r = stage_of(v).rank.index();
    return memory[r] + stage_of(v).memory_delta.base() <= cap[r] * (1 + 1e-12);
  };
  const auto better = [&](std::size_t a, std::size_t b) {
    const auto pa = priority[passes.of(dip::stage_id::from_index(a))];
    const auto pb = priority[passes.of(dip::stage_id::from_index(b))];
    return pa != pb ? pa < pb : a < b;
  };
  const double latency = dip::to_seconds(options.comm.latency), link = options.comm.link.base();
  plain_interleaving result;
  result.order.assign(ranks, {});
  for (std::size_t done = 0; done < n; ++done) {
    const auto allowed = [&](std::size_t v, bool over) { return available[v] && (queue(v) != 0 || over || fits(v)); };
    std::size_t rank = ranks;
    double time = inf;
    bool forced = false;
    for (bool over : {false, true}) {
      for (std::size_t r = 0; r < ranks; ++r) {
        double t = inf;
        for (std::size_t v = 0; v < n; ++v) {
          if (stage_of(v).rank.index() == r && allowed(v, over)) t = std::min(t, ready[v]);
        }
        t = std::max(t, free_at[r]);
        if (t < time) time = t, rank = r;
      }
      if (rank < ranks) break;
      forced = true;
    }
    REQUIRE(rank < ranks);
    const auto best = [&](int q, bool over) {
      std::size_t chosen = n;
      for (std::size_t v = 0; v < n; ++v) {
        if (stage_of(v).rank.index() == rank && queue(v) == q && allowed(v, over) && ready[v] <= time &&
            (chosen == n || better(v, chosen)))
          chosen = v;
      }
      return chosen;
    };
    std::size_t chosen = n;
    if (forced) {
      chosen = best(0, true);
      result.over_cap = true;
    } else {
      const std::size_t f = best(0, false), b = best(1, false);
      chosen = f < n && b < n ? (last[rank] == 0 ? b : f) : f < n ? f : b < n ? b : best(2, false);
    }
    REQUIRE(chosen < n);
    const double finish = std::max(time, ready[chosen]) + dip::to_seconds(stage_of(chosen).time);
    available[chosen] = 0;
    free_at[rank] = finish;
    if (queue(chosen) != 2) last[rank] = queue(chosen);
    memory[rank] += stage_of(chosen).memory_delta.base();
    result.order[rank].push_back(dip::stage_id::from_index(chosen));
    for (std::uint32_t e : graph.out_edges(dip::stage_id::from_index(chosen))) {
      const dip::stage_edge& edge = graph.edges()[e];
      const bool remote = graph.at(edge.from).rank != graph.at(edge.to).rank;
      const double arrival = remote ? finish + latency + (link > 0 ? edge.size.base() / link : 0.0) : finish;
      ready[edge.to.index()] = std::max(ready[edge.to.index()], arrival);
      if (--waiting[edge.to.index()] == 0) available[edge.to.index()] = 1;
    }
  }
  return result;
}

}  // namespace

TEST_CASE("dual-queue interleaving under 1F1B's in-flight cap reproduces 1F1B exactly") {
  for (const auto& [p, m] : {std::pair{4, 8}, std::pair{4, 4}, std::pair{2, 5}, std::pair{8, 16}, std::pair{3, 7}}) {
    CAPTURE(p);
    CAPTURE(m);
    dip::fixed_cost_table table;
    table.set_uniform("lm", std::size_t(p), {{1_ms, 1_ms, 1_ms, dip::bytes(1), dip::bytes(1)}, 0});
    const dip::multimodal_model model =
        dip::model_builder("toy").add(dip_test::opaque_module("lm", std::size_t(p))).build();
    const auto one = [](const dip::module_spec&) { return dip::work_unit::sequence(1); };
    const dip::placement placement = dip::sequential_placement(model, table, one, p, 1);
    const auto graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(model, placement, dip::uniform_batch(model, std::size_t(m), one), table));
    // 1F1B keeps at most p - r microbatches in flight on rank r, one activation byte each.
    dip::interleave_options options;
    for (int r = 0; r < p; ++r) options.memory_cap.push_back(dip::bytes(double(p - r)));
    const dip::pass_index segments(*graph);
    const dip::interleave_result result =
        dip::interleave_stages(*graph, segments, dip::default_pass_priority(segments), options);
    CHECK_FALSE(result.over_cap);
    CHECK(result.order == baseline_orders("1f1b", graph));
    // Without a cap it runs every forward it can first: GPipe's order on rank 0.
    const dip::interleave_result free =
        dip::interleave_stages(*graph, segments, dip::default_pass_priority(segments), {});
    CHECK(free.order.back() == baseline_orders("1f1b", graph).back());  // the last rank alternates anyway
    CHECK(dip::to_milliseconds(dip::simulate(dip::make_plan(graph, result.order), {}).makespan) ==
          doctest::Approx(double(m + p - 1) * 3.0));
  }
}

TEST_CASE("dual-queue interleaving on random multi-chain graphs: valid, deterministic, never below the bound, within "
          "the cap") {
  std::mt19937_64 rng(77);
  int capped = 0, over = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    CAPTURE(trial);
    const int ranks = 1 + int(rng() % 4);
    // Two encoders feeding an LLM, or a text encoder feeding a decoder (a chain of two).
    const bool two_encoders = rng() % 2 == 0;
    dip::model_builder builder("random");
    std::vector<std::string> names = two_encoders ? std::vector<std::string>{"a", "b", "llm"}
                                                  : std::vector<std::string>{"text", "dit"};
    dip::fixed_cost_table table;
    std::vector<int> per_rank;
    for (const std::string& name : names) {
      const int k = 1 + int(rng() % 2);
      per_rank.push_back(k);
      const std::size_t layers = std::size_t(ranks * k) * (1 + rng() % 2);
      builder.add(dip_test::opaque_module(name, layers));
      std::vector<dip::fixed_layer_cost> costs;
      for (std::size_t i = 0; i < layers; ++i) {
        const double f = 0.1 + double(rng() % 100) / 50.0;
        costs.push_back({{dip::milliseconds(f), dip::milliseconds(f), dip::milliseconds(f * (rng() % 2)),
                          dip::bytes(double(1 + rng() % 4)), dip::bytes(double(rng() % 1000))},
                         0});
      }
      table.set(name, costs);
    }
    if (two_encoders) {
      builder.connect("a", "llm").connect("b", "llm");
    } else {
      builder.connect("text", "dit");
    }
    const dip::multimodal_model model = builder.build();
    const dip::placement placement = chain_per_module(model, ranks, per_rank);
    dip::batch_work batch;
    const std::size_t microbatches = 1 + rng() % 6;
    for (std::size_t j = 0; j < microbatches; ++j) {
      dip::microbatch_work mb;
      for (std::size_t m = 0; m < model.module_count(); ++m) {
        mb.modules.emplace_back(1 + rng() % 3, dip::work_unit::sequence(1));
      }
      batch.microbatches.push_back(mb);
    }
    const bool split = rng() % 3 == 0;
    const auto graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(model, placement, batch, table, {.split_backward = split}));
    const dip::pass_index segments(*graph);
    std::vector<std::uint32_t> priority = dip::default_pass_priority(segments);
    std::shuffle(priority.begin(), priority.end(), rng);

    dip::interleave_options options;
    options.comm = {dip::microseconds(double(rng() % 50)), dip::bandwidth(1e6)};
    // A cap that allows some but not all forwards in flight, half of the time.
    const bool with_cap = rng() % 2 == 0;
    const std::vector<dip::bytes> weights(std::size_t(ranks), dip::bytes(100));
    options.weight_memory = weights;
    if (with_cap) {
      ++capped;
      for (int r = 0; r < ranks; ++r) options.memory_cap.push_back(dip::bytes(100 + double(40 + rng() % 200)));
    }
    const dip::interleave_result result = dip::interleave_stages(*graph, segments, priority, options);
    const dip::interleave_result again = dip::interleave_stages(*graph, segments, priority, options);
    CHECK(result.order == again.order);
    const plain_interleaving plain = interleave_plainly(*graph, segments, priority, options);
    CHECK(result.order == plain.order);
    CHECK(result.over_cap == plain.over_cap);

    const dip::plan plan = dip::make_plan(graph, result.order);
    std::optional<dip::bytes> cap;
    if (with_cap && !result.over_cap) cap = *std::max_element(options.memory_cap.begin(), options.memory_cap.end());
    CHECK_NOTHROW(dip::validate(plan, {.memory_cap = cap, .weight_memory = weights}));
    if (with_cap && !result.over_cap) {
      for (int r = 0; r < ranks; ++r) CHECK(result.peak_memory[std::size_t(r)] <= options.memory_cap[std::size_t(r)]);
    }
    over += result.over_cap ? 1 : 0;
    const dip::simulation_result sim = dip::simulate(plan, {.comm = options.comm, .weight_memory = weights});
    CHECK(sim.makespan >= sim.bounds.classic() * (1 - 1e-9));
    // The estimated clock has the same compute times and no link contention: it is never later.
    CHECK(result.estimated_makespan <= sim.makespan * (1 + 1e-9));
  }
  MESSAGE(capped << " capped cases, " << over << " needed to exceed the cap");
  CHECK(capped > 500);
}

TEST_CASE("dual-queue interleaving rejects priorities and caps of the wrong size") {
  dip::fixed_cost_table table;
  table.set_uniform("lm", 2, {{1_ms, 1_ms, 1_ms, dip::bytes(1), dip::bytes(1)}, 0});
  const dip::multimodal_model model = dip::model_builder("toy").add(dip_test::opaque_module("lm", 2)).build();
  const auto one = [](const dip::module_spec&) { return dip::work_unit::sequence(1); };
  const dip::stage_graph graph = dip::build_stage_graph(model, dip::sequential_placement(model, table, one, 2, 1),
                                                        dip::uniform_batch(model, 3, one), table);
  const dip::pass_index segments(graph);
  CHECK(segments.size() == 3);
  const std::vector<std::uint32_t> short_priority{0, 1};
  CHECK_THROWS_WITH_AS(dip::interleave_stages(graph, segments, short_priority),
                       doctest::Contains("one priority per pass"), dip::error);
  dip::interleave_options options;
  options.memory_cap = {dip::bytes(1)};
  CHECK_THROWS_WITH_AS(dip::interleave_stages(graph, segments, dip::default_pass_priority(segments), options),
                       doctest::Contains("one entry per rank"), dip::error);
}
