// Tuning the segments per rank by planning sample batches: the rule's K is tried first, the
// result is never slower on the samples than any K tried, K values the layers cannot take are
// recorded as failed trials rather than thrown, and the planner never loses to static-dip's order.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/dip_planner.hpp>
#include <dip/schedule/modality_baselines.hpp>
#include <dip/schedule/segment_tuning.hpp>
#include <dip/sim/simulator.hpp>

namespace {

struct setup {
  dip::model_preset preset;
  dip::gpu_spec gpu = dip::find_gpu("H800");
  dip::analytic_cost_model costs;
  dip::partition_options options;

  explicit setup(const char* name) : preset(dip::find_preset(name)), costs(gpu, preset.parallel.tp) {
    options.ranks = preset.parallel.pp;
    options.memory = {preset.parallel.tp, 16.0, gpu.memory};
  }
  dip::dip_planner_options planner() const {
    dip::dip_planner_options o;
    o.memory_cap = gpu.memory;
    o.comm = {{}, gpu.nvlink};
    return o;
  }
  std::vector<std::vector<dip::packed_microbatch>> samples(const char* data, std::uint64_t seed, int batches) const {
    dip::batch_source source = dip::make_batch_source(data, preset.model, seed);
    std::vector<std::vector<dip::packed_microbatch>> out;
    for (int i = 0; i < batches; ++i) out.push_back(source.next_batch(8));
    return out;
  }
};

}  // namespace

TEST_CASE("segment tuning: the rule's K first, the best trial kept, impossible K recorded") {
  for (const char* name : {"vlm-s", "t2v-s"}) {
    CAPTURE(name);
    const setup s(name);
    const auto samples = s.samples(name[0] == 'v' ? "obelics" : "video", 3, 2);
    const dip::segment_tuning tuned = dip::tune_segments_per_rank(s.preset.model, s.costs, s.options, samples, s.planner());
    const dip::modality_partition rule = dip::partition_modalities(s.preset.model, s.costs, s.options);
    REQUIRE(!tuned.trials.empty());
    std::vector<std::size_t> rule_k, chosen_k;
    for (const auto& g : rule.groups) rule_k.push_back(g.segments_per_rank);
    for (const auto& g : tuned.partition.groups) chosen_k.push_back(g.segments_per_rank);
    CHECK(tuned.trials.front().segments_per_rank == rule_k);
    // The chosen K is a trial that planned, and no trial planned faster.
    const auto chosen = std::find_if(tuned.trials.begin(), tuned.trials.end(),
                                     [&](const dip::segment_trial& t) { return t.segments_per_rank == chosen_k; });
    REQUIRE(chosen != tuned.trials.end());
    REQUIRE(chosen->mean_makespan.has_value());
    for (const dip::segment_trial& t : tuned.trials) {
      if (t.mean_makespan) {
        CHECK(*chosen->mean_makespan <= *t.mean_makespan);
      } else {
        CHECK(!t.failure.empty());
      }
    }
    // Re-planning the samples on the chosen partition gives the recorded mean.
    dip::dip_planner_options planner = s.planner();
    planner.memory_strategies = false;
    planner.weight_memory = tuned.partition.weight_memory;
    dip::duration total{};
    for (const auto& batch : samples) {
      const auto split = dip::split_batch(batch, s.preset.model, tuned.partition.policy, s.costs);
      auto graph = std::make_shared<const dip::stage_graph>(
          dip::build_stage_graph(s.preset.model, tuned.partition.placement, dip::to_batch_work(split), s.costs));
      total += dip::simulate(dip::plan_dip_schedule(graph, planner), dip::simulation_options_of(planner)).makespan;
    }
    CHECK(dip::to_milliseconds(total / 2.0) == doctest::Approx(dip::to_milliseconds(*chosen->mean_makespan)).epsilon(1e-12));
  }
}

TEST_CASE("segment tuning: a K the layers cannot take is a failed trial, not an error") {
  setup s("t2v-s");
  // t2v-s's DiT has 28 layers on 4 ranks: K = 7 is the most it takes; start the search there.
  s.options.segments_per_rank["dit"] = 7;
  const auto samples = s.samples("video", 5, 1);
  const dip::segment_tuning tuned = dip::tune_segments_per_rank(s.preset.model, s.costs, s.options, samples, s.planner());
  // The rule is fixed by the caller here, so every trial keeps K = 7: tuning overrides it per
  // trial, and K = 8 cannot partition 28 layers over 4 ranks.
  const bool failed_eight = std::any_of(tuned.trials.begin(), tuned.trials.end(), [](const dip::segment_trial& t) {
    return t.segments_per_rank.back() == 8 && !t.mean_makespan && !t.failure.empty();
  });
  CHECK(failed_eight);
  CHECK_THROWS_AS(dip::tune_segments_per_rank(s.preset.model, s.costs, s.options, {}, s.planner()), dip::error);
}

TEST_CASE("segment tuning: under a tight cap, a K that fits only with memory strategies is still a candidate") {
  // VLM-S with 56 GiB per GPU: one LLM segment per rank does not fit by phase 2 alone on these
  // samples, but with recompute it plans (and on the real batches it is the fastest K).
  setup s("vlm-s");
  s.gpu.memory = dip::gib(56);
  s.options.memory = {s.preset.parallel.tp, 16.0, s.gpu.memory};
  const auto samples = s.samples("obelics", 1 + 0x5eed, 2);
  const dip::segment_tuning tuned = dip::tune_segments_per_rank(s.preset.model, s.costs, s.options, samples, s.planner());
  const auto helped = std::find_if(tuned.trials.begin(), tuned.trials.end(), [](const dip::segment_trial& t) {
    return t.with_memory_strategies && t.mean_makespan.has_value();
  });
  REQUIRE(helped != tuned.trials.end());
  // Without memory strategies the same K is a failed trial.
  dip::dip_planner_options no_strategies = s.planner();
  no_strategies.memory_strategies = false;
  const dip::segment_tuning plain =
      dip::tune_segments_per_rank(s.preset.model, s.costs, s.options, samples, no_strategies);
  const auto same = std::find_if(plain.trials.begin(), plain.trials.end(), [&](const dip::segment_trial& t) {
    return t.segments_per_rank == helped->segments_per_rank;
  });
  if (same != plain.trials.end()) {
    CHECK(!same->mean_makespan.has_value());
    CHECK(!same->failure.empty());
  }
  for (const dip::segment_trial& t : plain.trials) CHECK(!t.with_memory_strategies);
}

TEST_CASE("the DIP planner without search is never slower than static-dip's order (it tries 1F1B's in-flight caps)") {
  const setup s("vlm-l");
  const dip::modality_partition part = dip::partition_modalities(s.preset.model, s.costs, s.options);
  dip::batch_source source = dip::make_batch_source("obelics", s.preset.model, 11);
  for (int round = 0; round < 3; ++round) {
    const auto split = dip::split_batch(source.next_batch(8), s.preset.model, part.policy, s.costs);
    auto graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(s.preset.model, part.placement, dip::to_batch_work(split), s.costs));
    dip::dip_planner_options planner = s.planner();
    planner.weight_memory = part.weight_memory;
    planner.memory_strategies = false;
    const dip::simulation_options sim = dip::simulation_options_of(planner);
    const dip::duration dip_time = dip::simulate(dip::plan_dip_schedule(graph, planner), sim).makespan;
    const dip::duration static_time = dip::simulate(dip::plan_static_dip(graph, planner), sim).makespan;
    CHECK(dip_time <= static_time);
  }
}
