// Tuning the segments per rank by planning sample batches: the rule's K is tried first, the
// result is never slower on the samples than any K tried, K values the layers cannot take are
// recorded as failed trials rather than thrown, and the planner never loses to static-dip's order.
#include <doctest/doctest.h>

#include <algorithm>
#include <utility>
#include <vector>

#include <dip/batch/source.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/planner/dip_planner.hpp>
#include <dip/planner/planner.hpp>
#include <dip/planner/segment_tuning.hpp>

namespace {

// The tuner's inputs for a preset on its cluster with NVLink between neighbours, as
// dip::planner passes them; `pipeline` is that planner.
struct setup {
  dip::model_preset preset;
  dip::cluster_spec cluster;
  dip::analytic_cost_model costs;
  dip::partition_options options;

  explicit setup(const char* name)
      : preset(dip::find_preset(name)), cluster(dip::cluster_of(preset)), costs(cluster.gpu, cluster.tp) {
    cluster.link = cluster.gpu.nvlink;
    options.ranks = cluster.pp;
    options.memory = cluster.weight_rule();
  }
  dip::dip_planner_options planner() const {
    dip::dip_planner_options o;
    o.memory_cap = cluster.cap();
    o.comm = cluster.comm();
    return o;
  }
  dip::planner<dip::analytic_cost_model> pipeline(dip::planner_options o) const {
    return {preset.model, costs, cluster, std::move(o)};
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
    const dip::segment_tuning tuned =
        dip::tune_segments_per_rank(s.preset.model, s.costs, s.options, samples, s.planner());
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
    // dip-plan's pipeline tuned on the same samples chooses the same K, and planning them
    // there as the tuner does (phase 2 alone: no search, no memory strategies) gives the
    // recorded mean.
    dip::planner_options o;
    o.tuning_batches = samples;
    o.search_ms = 0;
    o.memory_strategies = false;
    const dip::planner pipeline = s.pipeline(o);
    dip::duration total{};
    for (const auto& batch : samples) total += pipeline.plan(batch, "dip").simulation.makespan;
    const dip::modality_partition* tuned_there = pipeline.modality_partition_if_built();
    REQUIRE(tuned_there != nullptr);
    std::vector<std::size_t> there_k;
    for (const auto& g : tuned_there->groups) there_k.push_back(g.segments_per_rank);
    CHECK(there_k == chosen_k);
    CHECK(dip::to_milliseconds(total / 2.0) ==
          doctest::Approx(dip::to_milliseconds(*chosen->mean_makespan)).epsilon(1e-12));
  }
}

TEST_CASE("segment tuning: a K the layers cannot take is a failed trial, not an error") {
  setup s("t2v-s");
  // t2v-s's DiT has 28 layers on 4 ranks: K = 7 is the most it takes; start the search there.
  s.options.segments_per_rank["dit"] = 7;
  const auto samples = s.samples("video", 5, 1);
  const dip::segment_tuning tuned =
      dip::tune_segments_per_rank(s.preset.model, s.costs, s.options, samples, s.planner());
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
  s.cluster.memory_cap = dip::gib(56);
  s.options.memory = s.cluster.weight_rule();
  const auto samples = s.samples("obelics", 1 + 0x5eed, 2);
  const dip::segment_tuning tuned =
      dip::tune_segments_per_rank(s.preset.model, s.costs, s.options, samples, s.planner());
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
  // The partitioner's K; static-dip gets the cap too (its in-flight caps) and neither is fitted
  // with memory strategies afterwards.
  dip::planner_options o;
  o.tune_segments = false;
  o.search_ms = 0;
  o.memory_strategies = false;
  o.fit_memory = false;
  const dip::planner pipeline = s.pipeline(o);
  dip::batch_source source = dip::make_batch_source("obelics", s.preset.model, 11);
  for (int round = 0; round < 3; ++round) {
    const auto batch = source.next_batch(8);
    const dip::planned_batch dip_plan = pipeline.plan(batch, "dip");
    const dip::planned_batch static_plan = pipeline.plan(batch, "static-dip");
    REQUIRE(dip_plan.plan.graph->size() == static_plan.plan.graph->size());
    CHECK(dip_plan.simulation.makespan <= static_plan.simulation.makespan);
  }
}
