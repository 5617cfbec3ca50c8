// static-dip and optimus: on a classic single-chain pipeline the in-flight caps are 1F1B's
// (P - r), so static-dip is exactly 1F1B; on multi-chain DIP placements both give valid plans.
#include <doctest/doctest.h>

#include <memory>

#include <dip/batch/source.hpp>
#include <dip/batch/uniform.hpp>
#include <dip/cost/fixed_table.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/contiguous_placement.hpp>
#include <dip/planner/modality_baselines.hpp>
#include <dip/planner/planner.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/sim/simulator.hpp>

#include "plan_test_support.hpp"

using namespace dip::literals;

TEST_CASE("one_f_one_b_caps are P - r microbatches on a single chain, and static-dip is then exactly 1F1B") {
  for (const auto& [p, m] : {std::pair{4, 8}, std::pair{3, 5}, std::pair{8, 16}}) {
    CAPTURE(p);
    dip::fixed_cost_table table;
    table.set_uniform("lm", std::size_t(p), {{1_ms, 1_ms, 1_ms, dip::bytes(7), dip::bytes(1)}, 0});
    const dip::multimodal_model model =
        dip::model_builder("toy").add(dip_test::opaque_module("lm", std::size_t(p))).build();
    const auto one = [](const dip::module_spec&) { return dip::work_unit::sequence(1); };
    const auto graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(model, dip::sequential_placement(model, table, one, p, 1),
                               dip::uniform_batch(model, std::size_t(m), one), table));
    const std::vector<dip::bytes> weights(std::size_t(p), dip::bytes(100));
    const std::vector<dip::bytes> caps = dip::one_f_one_b_caps(*graph, weights, std::nullopt);
    for (int r = 0; r < p; ++r) CHECK(caps[std::size_t(r)] == dip::bytes(100 + 7.0 * (p - r)));
    const dip::plan ours =
        dip::plan_static_dip(graph, {.memory_cap = std::nullopt, .weight_memory = weights, .comm = {}});
    const dip::plan theirs = dip::plan_baseline("1f1b", graph);
    for (std::size_t r = 0; r < ours.ranks.size(); ++r) {
      std::vector<dip::stage_id> a, b;
      for (const dip::action& x : ours.ranks[r])
        if (x.kind == dip::action_kind::compute) a.push_back(x.stage);
      for (const dip::action& x : theirs.ranks[r])
        if (x.kind == dip::action_kind::compute) b.push_back(x.stage);
      CHECK(a == b);
    }
  }
}

TEST_CASE("static-dip and optimus plan the presets' uniform batches validly, never below the lower bound") {
  for (const char* name : {"vlm-s", "t2v-s"}) {
    CAPTURE(name);
    const dip::model_preset preset = dip::find_preset(name);
    // dip-plan's pipeline with the partitioner's K: static-dip on DIP's placement, optimus on its
    // one-chunk-per-rank variant; uniform microbatches (every one the preset's typical sample).
    dip::planner_options options;
    options.tune_segments = false;
    const dip::planner planner = dip::make_planner(preset, options);
    dip::batch_source source = dip::make_batch_source("uniform", preset.model);
    const std::vector<dip::packed_microbatch> batch = source.next_batch(8);
    for (const char* schedule : {"static-dip", "optimus"}) {
      CAPTURE(schedule);
      const dip::planned_batch planned = planner.plan(batch, schedule);
      CHECK(planned.plan.graph->placement().chains.size() > 1);
      const dip::simulation_result& sim = planned.simulation;
      CHECK(sim.makespan >= sim.bounds.classic() * (1 - 1e-9));
      CHECK(sim.makespan <= 2.0 * sim.bounds.classic());  // a sane pipeline, not a serialised one
    }
  }
}
