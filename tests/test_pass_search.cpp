// Phase 1, segment reordering by tree search: finds the brute-force best order on small graphs,
// is reproducible from a seed and a rollout budget (on any number of threads), never worse with a
// larger budget, never worse than its seeds, and the planner
// built on it gives valid plans within the memory cap.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <stop_token>
#include <vector>

#include <dip/cost/fixed_table.hpp>
#include <dip/planner/dip_planner.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/pass_search.hpp>
#include <dip/sim/simulator.hpp>

#include "plan_test_support.hpp"

namespace {

struct instance {
  dip::multimodal_model model;
  dip::fixed_cost_table table;
  std::shared_ptr<const dip::stage_graph> graph;
};

// An encoder chain feeding an LLM chain over `ranks` ranks (one chunk per rank each, encoder on
// rank r, LLM chunk c on rank c), with random layer costs and random sub-microbatch counts.
instance random_instance(std::mt19937_64& rng, int ranks, std::size_t microbatches, std::uint32_t max_subs) {
  instance t{dip::model_builder("m")
                 .add(dip_test::opaque_module("enc", std::size_t(ranks)))
                 .add(dip_test::opaque_module("llm", std::size_t(ranks)))
                 .connect("enc", "llm")
                 .build(),
             {},
             nullptr};
  for (const char* name : {"enc", "llm"}) {
    std::vector<dip::fixed_layer_cost> costs;
    for (int i = 0; i < ranks; ++i) {
      const double f = 0.5 + double(rng() % 40) / 10.0;
      costs.push_back(
          {{dip::milliseconds(f), dip::milliseconds(f), dip::milliseconds(f), dip::bytes(1), dip::bytes(0)}, 1.0});
    }
    t.table.set(name, costs);
  }
  dip::placement p;
  p.ranks = ranks;
  for (std::size_t m = 0; m < 2; ++m) {
    p.chains.emplace_back();
    for (int c = 0; c < ranks; ++c) {
      dip::chunk_spec chunk;
      chunk.spans.push_back({dip::module_id::from_index(m), std::size_t(c), std::size_t(c) + 1});
      chunk.rank = dip::rank_id::from_index(std::size_t(c));
      chunk.chain = m;
      chunk.position = std::size_t(c);
      p.chains.back().push_back(dip::chunk_id::from_index(p.chunks.size()));
      p.chunks.push_back(chunk);
    }
  }
  p.chain_inputs = {{}, {0}};
  dip::batch_work batch;
  for (std::size_t j = 0; j < microbatches; ++j) {
    dip::microbatch_work mb;
    std::vector<dip::work_unit> enc;
    for (std::uint32_t s = 0; s < 1 + rng() % max_subs; ++s)
      enc.push_back(dip::work_unit::sequence(double(1 + rng() % 4)));
    mb.modules = {enc, {dip::work_unit::sequence(double(1 + rng() % 4))}};
    batch.microbatches.push_back(mb);
  }
  t.graph = std::make_shared<const dip::stage_graph>(dip::build_stage_graph(t.model, p, batch, t.table));
  return t;
}

// The best phase-2 makespan over every order that keeps each (microbatch, chain)'s subs in order.
double brute_force_best(const dip::stage_graph& graph) {
  const dip::pass_index segments(graph);
  std::vector<std::uint32_t> order(segments.size());
  for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  double best = 1e300;
  do {
    bool pruned = false;
    for (std::size_t i = 0; i < order.size() && !pruned; ++i) {
      for (std::size_t k = i + 1; k < order.size(); ++k) {
        const auto& a = segments.at(order[i]);
        const auto& b = segments.at(order[k]);
        if (a.microbatch == b.microbatch && a.chain == b.chain && a.sub > b.sub) pruned = true;
      }
    }
    if (pruned) continue;
    std::vector<std::uint32_t> priority(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) priority[order[i]] = std::uint32_t(i);
    best = std::min(best, dip::to_seconds(dip::interleave_stages(graph, segments, priority).estimated_makespan));
  } while (std::next_permutation(order.begin(), order.end()));
  return best;
}

}  // namespace

TEST_CASE("tree search finds the brute-force best segment order on small graphs") {
  std::mt19937_64 rng(11);
  int improved_on_seeds = 0;
  for (int trial = 0; trial < 40; ++trial) {
    CAPTURE(trial);
    const instance t = random_instance(rng, 2 + int(rng() % 2), 2 + rng() % 2, 2);
    const dip::pass_index segments(*t.graph);
    if (segments.size() > 8) continue;  // keep the brute force small
    dip::pass_search_options options;
    options.time_budget_ms = 0;
    options.max_rollouts = 20000;  // more than the pruned tree has nodes: the search becomes exhaustive
    const dip::pass_search_result found = dip::search_pass_order(*t.graph, options);
    const double truth = brute_force_best(*t.graph);
    CHECK(dip::to_seconds(found.makespan) == doctest::Approx(truth).epsilon(1e-9));
    // The reported makespan is what phase 2 gives for the returned priority.
    CHECK(dip::to_seconds(dip::interleave_stages(*t.graph, segments, found.priority).estimated_makespan) ==
          doctest::Approx(truth).epsilon(1e-9));
    improved_on_seeds += found.found_by == "tree" ? 1 : 0;
  }
  MESSAGE(improved_on_seeds << " instances where the tree beat every seed");
}

TEST_CASE("tree search: reproducible with one thread and a seed; never worse than the natural order; threads give a "
          "permutation") {
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 10; ++trial) {
    CAPTURE(trial);
    const instance t = random_instance(rng, 4, 8, 4);
    const dip::pass_index segments(*t.graph);
    dip::pass_search_options options;
    options.time_budget_ms = 0;
    options.max_rollouts = 200;
    options.seed = std::uint64_t(trial);
    const dip::pass_search_result a = dip::search_pass_order(*t.graph, options);
    const dip::pass_search_result b = dip::search_pass_order(*t.graph, options);
    CHECK(a.priority == b.priority);
    CHECK(a.makespan == b.makespan);
    CHECK(a.rollouts == 200);
    const dip::duration natural =
        dip::interleave_stages(*t.graph, segments, dip::default_pass_priority(segments)).estimated_makespan;
    CHECK(a.makespan <= natural);
    // Progress is monotone: every recorded point improves on the previous one.
    for (std::size_t i = 1; i < a.progress.size(); ++i)
      CHECK(a.progress[i].best_makespan_ms < a.progress[i - 1].best_makespan_ms);

    options.threads = 3;
    const dip::pass_search_result c = dip::search_pass_order(*t.graph, options);
    std::vector<std::uint32_t> sorted = c.priority;
    std::sort(sorted.begin(), sorted.end());
    for (std::uint32_t i = 0; i < sorted.size(); ++i) CHECK(sorted[i] == i);
    CHECK(c.makespan <= natural);
    CHECK(c.rollouts == 200);
  }
}

// Each thread grows its own tree, whose rollouts do not depend on timing: with a rollout budget
// the result is reproducible on several threads, and a larger budget runs every thread's rollouts
// of a smaller one first, so it never ends worse (a shared tree broke both). The first thread of
// T gets the same rollouts as a single-threaded search with 1/T of the budget, so T threads are
// never worse than that either.
TEST_CASE("tree search on several threads: reproducible with a rollout budget, never worse with a larger one") {
  std::mt19937_64 rng(17);
  int strictly_better = 0;
  for (int trial = 0; trial < 12; ++trial) {
    CAPTURE(trial);
    const instance t = random_instance(rng, 2 + int(rng() % 3), 6 + rng() % 6, 4);
    dip::pass_search_options options;
    options.time_budget_ms = 0;
    options.seed = std::uint64_t(trial) + 3;
    options.threads = 1;
    options.max_rollouts = 30;
    const dip::pass_search_result single = dip::search_pass_order(*t.graph, options);

    options.threads = 2;
    double previous = 1e300;
    for (std::size_t budget : {60, 61, 150, 400}) {
      CAPTURE(budget);
      options.max_rollouts = budget;
      const dip::pass_search_result a = dip::search_pass_order(*t.graph, options);
      const dip::pass_search_result b = dip::search_pass_order(*t.graph, options);
      CHECK(a.priority == b.priority);
      CHECK(a.makespan == b.makespan);
      CHECK(a.rollouts == budget);
      CHECK(dip::to_seconds(a.makespan) <= previous);
      if (dip::to_seconds(a.makespan) < previous && previous < 1e300) ++strictly_better;
      previous = dip::to_seconds(a.makespan);
      CHECK(a.makespan <= single.makespan);  // thread 0 alone does the single search's 30 and more
    }
  }
  MESSAGE(strictly_better << " larger budgets that found a strictly better order");
}

TEST_CASE("the DIP planner gives valid plans within the cap that never beat the lower bound") {
  std::mt19937_64 rng(21);
  for (int trial = 0; trial < 30; ++trial) {
    CAPTURE(trial);
    const instance t = random_instance(rng, 1 + int(rng() % 4), 1 + rng() % 6, 3);
    const std::vector<dip::bytes> weights(std::size_t(t.graph->ranks()), dip::bytes(10));
    dip::dip_planner_options options;
    options.memory_cap = dip::bytes(10 + 40);
    options.weight_memory = weights;
    options.search_rollouts = 50;
    const dip::plan plan = dip::plan_dip(t.graph, options);  // validates, cap included
    const dip::simulation_result sim = dip::simulate(plan, {.comm = {}, .weight_memory = weights});
    CHECK(sim.makespan >= sim.bounds.classic() * (1 - 1e-9));
    for (const dip::rank_stats& r : sim.ranks) CHECK(r.peak_memory <= *options.memory_cap);
  }
  dip::pass_search_options bad;
  bad.time_budget_ms = 0;
  std::mt19937_64 rng2(1);
  const instance t = random_instance(rng2, 2, 2, 2);
  CHECK_THROWS_WITH_AS(dip::search_pass_order(*t.graph, bad), doctest::Contains("time budget or a rollout budget"),
                       dip::error);
}

TEST_CASE("memory strategies (phase 3) never make the DIP plan slower and rescue caps phase 2 alone cannot meet") {
  std::mt19937_64 rng(8);
  int rescued = 0, faster = 0;
  for (int trial = 0; trial < 40; ++trial) {
    CAPTURE(trial);
    const instance t = random_instance(rng, 2 + int(rng() % 3), 4 + rng() % 6, 3);
    const std::vector<dip::bytes> weights(std::size_t(t.graph->ranks()), dip::bytes(10));
    dip::dip_planner_options options;
    options.memory_cap = dip::bytes(10 + double(4 + rng() % 12));  // tight: a few microbatches in flight
    options.weight_memory = weights;
    options.search_rollouts = 20;
    const dip::simulation_options sim{
        .comm = {}, .weight_memory = weights, .record_timeline = false, .memory_strategies = options.strategy_model};
    const dip::plan with = dip::plan_dip(t.graph, options);  // validated under the cap
    for (const dip::rank_stats& r : dip::simulate(with, sim).ranks) CHECK(r.peak_memory <= *options.memory_cap);
    options.memory_strategies = false;
    try {
      const dip::plan without = dip::plan_dip(t.graph, options);
      const dip::duration a = dip::simulate(with, sim).makespan, b = dip::simulate(without, sim).makespan;
      CHECK(a <= b * (1 + 1e-12));
      faster += a < b * (1 - 1e-9) ? 1 : 0;
    } catch (const dip::error& e) {
      CHECK(e.code() == dip::errc::invalid_plan);  // phase 2 alone had to break the cap
      ++rescued;
    }
  }
  MESSAGE(faster << " plans faster with memory strategies, " << rescued << " only feasible with them");
}

// plan_dip prices its candidate orders (the real cap, 1F1B's in-flight limit, the looser caps)
// fastest-before-fitting first and fits only those that could still win: its plan must be as
// fast as the best of all of them, each fitted and validated here.
TEST_CASE("the DIP planner's plan is the fastest of its candidates, each fitted") {
  std::mt19937_64 rng(4049);
  int loose_wins = 0, priced = 0;
  for (int trial = 0; trial < 40; ++trial) {
    CAPTURE(trial);
    const instance t = random_instance(rng, 2 + int(rng() % 3), 4 + rng() % 8, 3);
    const std::vector<dip::bytes> weights(std::size_t(t.graph->ranks()), dip::bytes(10));
    dip::dip_planner_options options;
    options.memory_cap = dip::bytes(10 + double(3 + rng() % 40));
    options.weight_memory = weights;
    options.strategy_model.host_link = dip::bandwidth(300 + double(rng() % 2000));  // copies of ms: offload costs
    const dip::simulation_options sim = dip::simulation_options_of(options);
    const dip::pass_index passes(*t.graph);
    std::vector<std::uint32_t> priority = dip::default_pass_priority(passes);
    std::shuffle(priority.begin(), priority.end(), rng);

    const dip::interleave_options at_cap = dip::interleave_options_of(*t.graph, options);
    std::vector<dip::interleave_options> caps{at_cap, at_cap};
    caps[1].memory_cap = dip::one_f_one_b_caps(*t.graph, weights, options.memory_cap);
    for (double factor : options.relaxations) {
      dip::interleave_options loose = at_cap;
      loose.memory_cap.clear();
      if (factor > 0) loose.memory_cap.assign(weights.size(), weights[0] + (*options.memory_cap - weights[0]) * factor);
      caps.push_back(loose);
    }
    double best = 1e300;
    std::size_t best_index = 0;
    for (std::size_t k = 0; k < caps.size(); ++k) {
      dip::plan p = dip::make_plan(t.graph, dip::interleave_stages(*t.graph, passes, priority, caps[k]).order);
      try {
        dip::fit_memory(p, *options.memory_cap, weights, options.strategy_model, options.memory_solver);
      } catch (const dip::error& e) {
        CHECK(e.code() == dip::errc::infeasible);
        continue;
      }
      if (dip::first_violation(p, dip::validation_options_of(options))) continue;
      const double ms = dip::to_milliseconds(dip::simulate(p, sim).makespan);
      if (ms < best) {
        best = ms;
        best_index = k;
      }
    }
    if (best == 1e300) continue;
    ++priced;
    loose_wins += best_index >= 2;
    const dip::plan planned = dip::plan_dip(t.graph, options, priority);
    CHECK(dip::to_milliseconds(dip::simulate(planned, sim).makespan) == doctest::Approx(best).epsilon(1e-12));
  }
  CHECK(loose_wins > 0);  // the looser caps really are priced, and win on some instances only
  CHECK(loose_wins < priced);
  MESSAGE(loose_wins << " of " << priced << " instances where a looser cap won");
}

// Phase 3 solves the ranks on the planner's threads: the plan must not depend on how many. A stop
// request (a deadline) may make it slower but never invalid. And fitting memory only ever adds
// time to a fixed order, which is what lets plan_dip skip fitting an order that is already slower
// than its best plan.
TEST_CASE("the DIP planner: its threads do not change the plan, a stop request still gives a valid plan, fitting "
          "only adds time") {
  std::mt19937_64 rng(2027);
  int fitted = 0;
  for (int trial = 0; trial < 40; ++trial) {
    CAPTURE(trial);
    const instance t = random_instance(rng, 2 + int(rng() % 3), 4 + rng() % 6, 3);
    const std::vector<dip::bytes> weights(std::size_t(t.graph->ranks()), dip::bytes(10));
    dip::dip_planner_options options;
    options.memory_cap = dip::bytes(10 + double(4 + rng() % 12));
    options.weight_memory = weights;
    const dip::simulation_options sim{
        .comm = {}, .weight_memory = weights, .record_timeline = false, .memory_strategies = options.strategy_model};
    const dip::pass_index passes(*t.graph);
    std::vector<std::uint32_t> priority = dip::default_pass_priority(passes);
    std::shuffle(priority.begin(), priority.end(), rng);

    const dip::plan one = dip::plan_dip(t.graph, options, priority);
    options.threads = 3;
    const dip::plan three = dip::plan_dip(t.graph, options, priority);
    REQUIRE(one.ranks.size() == three.ranks.size());
    for (std::size_t r = 0; r < one.ranks.size(); ++r) {
      REQUIRE(one.ranks[r].size() == three.ranks[r].size());
      for (std::size_t a = 0; a < one.ranks[r].size(); ++a) {
        CHECK(one.ranks[r][a].stage == three.ranks[r][a].stage);
        CHECK(one.ranks[r][a].strategy == three.ranks[r][a].strategy);
      }
    }

    std::stop_source deadline;
    deadline.request_stop();
    options.stop = deadline.get_token();
    const dip::plan stopped = dip::plan_dip(t.graph, options, priority);  // validated under the cap
    for (const dip::rank_stats& r : dip::simulate(stopped, sim).ranks) CHECK(r.peak_memory <= *options.memory_cap);

    // An order phase 2 makes without a cap, fitted under the cap: never faster than unfitted.
    dip::interleave_options loose;
    loose.weight_memory = weights;
    dip::plan raw = dip::make_plan(t.graph, dip::interleave_stages(*t.graph, passes, priority, loose).order);
    dip::plan fit = raw;
    try {
      dip::fit_memory(fit, *options.memory_cap, weights, options.strategy_model);
    } catch (const dip::error& e) {
      CHECK(e.code() == dip::errc::infeasible);
      continue;
    }
    CHECK(dip::simulate(fit, sim).makespan >= dip::simulate(raw, sim).makespan * (1 - 1e-12));
    ++fitted;
  }
  CHECK(fitted > 10);
}
