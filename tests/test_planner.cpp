// dip::planner, the facade dip-plan plans with: every built-in schedule gives a plan that passes
// the validator at the cluster's cap and never beats the lower bound; planning is reproducible
// (and is exactly plan_dip on the stage graph it built); submit/get deliver what plan() gives;
// unknown schedules, batches that cannot fit and empty batches are refused with dip::error;
// a trainer's own schedules plan like the built-ins they wrap; the split covers every item
// once; the placements are the ones each schedule runs on.
//
// Tiny presets (tiny-vlm: ViT + LLM, tiny-t2v: LLM + DiT; PP 4, TP 1) and four microbatches keep
// every case at a few milliseconds of planning.
#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <dip/batch/source.hpp>
#include <dip/planner/planner.hpp>

namespace {

// Batches of `name`'s stream: OBELICS-like for tiny-vlm (images), video for tiny-t2v (clips).
std::vector<dip::packed_microbatch> batch_of(const dip::model_preset& preset, std::uint64_t seed,
                                             std::size_t microbatches = 4) {
  const bool video = preset.name == "tiny-t2v";
  dip::batch_source source = dip::make_batch_source(video ? "video" : "obelics", preset.model, seed);
  return source.next_batch(microbatches);
}

// A reproducible search: a rollout budget on one thread, no time budget.
dip::planner_options reproducible() {
  dip::planner_options o;
  o.search_ms = 0;
  o.search_rollouts = 16;
  o.threads = 1;
  o.seed = 5;
  o.async.workers = 1;
  return o;
}

dip::planner<dip::analytic_cost_model> planner_with_cap(const dip::model_preset& preset, dip::bytes cap,
                                                        dip::planner_options options = reproducible()) {
  dip::cluster_spec cluster = dip::cluster_of(preset);
  cluster.memory_cap = cap;
  return {preset.model, dip::analytic_cost_model(cluster.gpu, cluster.tp), cluster, std::move(options)};
}

double makespan_ms(const dip::planned_batch& planned) { return dip::to_milliseconds(planned.simulation.makespan); }

std::size_t non_keep_actions(const dip::plan& p) {
  std::size_t n = 0;
  for (const auto& list : p.ranks) {
    for (const dip::action& a : list) n += a.strategy != dip::memory_strategy::keep ? 1 : 0;
  }
  return n;
}

}  // namespace

TEST_CASE("planner: every built-in schedule plans a plan valid at the cap, never below the lower bound") {
  for (const std::string name : {"tiny-vlm", "tiny-t2v"}) {
    CAPTURE(name);
    const dip::model_preset preset = dip::find_preset(name);
    // 50 MiB per GPU: tiny-vlm's GPipe and ZB1P keep up to 58 MiB, so they plan only if the
    // planner fits them with recompute/offload; tiny-t2v's plans all fit as they are.
    const dip::bytes cap = dip::mib(50);
    const dip::planner planner = planner_with_cap(preset, cap);
    const std::vector<dip::packed_microbatch> batch = batch_of(preset, 3);
    const std::vector<std::string> names = planner.schedules().names();
    CHECK(names == std::vector<std::string>{"dip", "static-dip", "optimus", "gpipe", "1f1b", "interleaved", "zb1p",
                                            "zbv", "dualpipev"});
    for (const std::string& schedule : names) {
      CAPTURE(schedule);
      if (schedule == "dualpipev" && batch.size() < 2 * std::size_t(planner.cluster().pp)) {
        // PyTorch's ScheduleDualPipeV needs as many microbatches as stages; so does dip's.
        CHECK_THROWS_WITH_AS((void)planner.plan(batch, schedule, 2), doctest::Contains("at least as many microbatches"),
                             dip::error);
        CHECK_NOTHROW((void)planner.plan(batch_of(preset, 3, 2 * std::size_t(planner.cluster().pp)), schedule, 2));
        continue;
      }
      const dip::planned_batch planned = planner.plan(batch, schedule, 2);
      CHECK(planned.schedule == schedule);
      CHECK(planned.index == 2);
      const std::string placement = schedule == "dip" || schedule == "static-dip" ? "dip"
                                    : schedule == "optimus"                       ? "optimus"
                                                                                  : "balanced";
      CHECK(planned.placement == placement);
      REQUIRE(planned.plan.graph != nullptr);
      CHECK(planned.plan.graph->ranks() == planner.cluster().pp);
      CHECK(planned.weight_memory.size() == std::size_t(planner.cluster().pp));
      CHECK(planned.work.microbatches.size() == batch.size());
      CHECK_NOTHROW(dip::validate(planned.plan, {.memory_cap = cap, .weight_memory = planned.weight_memory}));
      for (const auto& rank : planned.simulation.ranks) CHECK(rank.peak_memory <= cap);
      CHECK(planned.simulation.makespan > dip::duration{});
      CHECK(dip::to_milliseconds(planned.simulation.makespan) >=
            dip::to_milliseconds(planned.simulation.bounds.classic()) * (1 - 1e-9));
      // The planner adds the rank window and, under its cap, the memory-aware bound.
      CHECK(planned.simulation.bounds.rank_window > dip::duration{});
      CHECK(planned.simulation.bounds.memory > dip::duration{});
      CHECK(dip::to_milliseconds(planned.simulation.makespan) >=
            dip::to_milliseconds(planned.simulation.bounds.under_cap()) * (1 - 1e-9));
      // The simulation is of the plan handed out, with the cluster's link.
      const dip::simulation_result again =
          dip::simulate(planned.plan, {.comm = planner.cluster().comm(), .weight_memory = planned.weight_memory});
      CHECK(dip::to_milliseconds(again.makespan) == makespan_ms(planned));
      if ((schedule == "gpipe" || schedule == "zb1p") && preset.name == "tiny-vlm") {
        CHECK(non_keep_actions(planned.plan) > 0);  // fitted to the cap
      }
    }
  }
}

TEST_CASE("planner: plan() is reproducible with a rollout budget and is plan_dip on the graph it built") {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const dip::planner planner = dip::make_planner(preset, reproducible());
  const std::vector<dip::packed_microbatch> batch = batch_of(preset, 7);
  const dip::planned_batch first = planner.plan(batch, "dip", 3);
  const dip::planned_batch second = planner.plan(batch, "dip", 3);
  CHECK(makespan_ms(first) == makespan_ms(second));
  REQUIRE(first.plan.ranks.size() == second.plan.ranks.size());
  CHECK(dip::compute_orders(first.plan) == dip::compute_orders(second.plan));

  // The DIP planner itself, on that graph with the options the planner documents for batch 3.
  const dip::cluster_spec& cluster = planner.cluster();
  dip::dip_planner_options options;
  options.memory_cap = cluster.cap();
  options.weight_memory = first.weight_memory;
  options.comm = cluster.comm();
  options.search_ms = 0;
  options.search_rollouts = 16;
  options.threads = 1;
  options.seed = 5 + 3;
  const dip::plan direct = dip::plan_dip(first.plan.graph, options);
  CHECK(dip::compute_orders(direct) == dip::compute_orders(first.plan));
  CHECK(dip::to_milliseconds(
            dip::simulate(direct, {.comm = cluster.comm(), .weight_memory = first.weight_memory}).makespan) ==
        makespan_ms(first));
  // Another index is another seed; the stage graph of the same batch is the same.
  const dip::planned_batch other = planner.plan(batch, "dip", 4);
  CHECK(other.plan.graph->size() == first.plan.graph->size());
}

TEST_CASE("planner: submit/get deliver what plan() gives for the same index") {
  for (const std::string name : {"tiny-vlm", "tiny-t2v"}) {
    CAPTURE(name);
    const dip::model_preset preset = dip::find_preset(name);
    dip::planner planner = dip::make_planner(preset, reproducible());
    const std::vector<std::string> schedules{"dip", "1f1b", "static-dip", "dip"};
    std::vector<std::vector<dip::packed_microbatch>> batches;
    std::vector<double> expected;
    for (std::size_t i = 0; i < schedules.size(); ++i) {
      batches.push_back(batch_of(preset, 11 + i));
      expected.push_back(makespan_ms(planner.plan(batches[i], schedules[i], i)));
    }
    // Two at a time: max_ahead is 2.
    for (std::size_t i = 0; i < schedules.size(); i += 2) {
      planner.submit(i, batches[i], schedules[i]);
      planner.submit(i + 1, batches[i + 1], schedules[i + 1]);
      for (std::size_t j = i; j < i + 2; ++j) {
        CAPTURE(j);
        const dip::delivered_plan<dip::planned_batch> got = planner.get(j, std::chrono::seconds(60));
        CHECK(got.batch_index == j);
        CHECK(got.source == dip::plan_source::in_time);
        CHECK(got.plan.schedule == schedules[j]);
        CHECK(got.plan.index == j);
        CHECK(makespan_ms(got.plan) == expected[j]);
      }
    }
    CHECK(planner.async_stats().delivered() == schedules.size());
    CHECK_THROWS_AS(planner.get(99, std::chrono::milliseconds(1)), dip::error);  // never submitted
  }
}

TEST_CASE("planner: an unknown schedule is refused naming the known ones") {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const dip::planner planner = dip::make_planner(preset, reproducible());
  const std::vector<dip::packed_microbatch> batch = batch_of(preset, 1);
  try {
    (void)planner.plan(batch, "pipedream");
    FAIL("an unknown schedule planned");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::not_found);
    const std::string what = e.what();
    CHECK(what.find("unknown schedule 'pipedream'") != std::string::npos);
    for (const std::string& known : planner.schedules().names()) CHECK(what.find(known) != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(planner.placement_of("pipedream"), doctest::Contains("known: dip, static-dip"), dip::error);
  dip::planner_options zigzag;
  zigzag.partition = "zigzag";
  CHECK_THROWS_WITH_AS(dip::make_planner(preset, zigzag), doctest::Contains("unknown partition 'zigzag'"), dip::error);
}

TEST_CASE("planner: a cap too small for a schedule is refused with where() naming it") {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const std::vector<dip::packed_microbatch> batch = batch_of(preset, 3);
  const auto refusal = [&](const dip::planner<dip::analytic_cost_model>& planner, const std::string& schedule) {
    try {
      (void)planner.plan(batch, schedule);
    } catch (const dip::error& e) {
      return e;
    }
    return dip::error(dip::errc::invalid_argument, "test", "planned within the cap");
  };
  // 4 MiB: the weights fit, the activations only with recompute/offload.
  SUBCASE("a schedule fitted afterwards: even recompute and offload do not fit") {
    const dip::planner planner = planner_with_cap(preset, dip::mib(4));
    const dip::error e = refusal(planner, "zb1p");
    CHECK(e.code() == dip::errc::infeasible);
    CHECK(e.where() == "zb1p");
    CHECK(std::string(e.what()).find("recompute or offload") != std::string::npos);
  }
  SUBCASE("dip without memory strategies: no order fits") {
    dip::planner_options options = reproducible();
    options.memory_strategies = false;
    const dip::planner planner = planner_with_cap(preset, dip::mib(4), options);
    const dip::error e = refusal(planner, "dip");
    CHECK((e.code() == dip::errc::invalid_plan || e.code() == dip::errc::infeasible));
    CHECK(e.where() == "dip");
    // With recompute/offload the same cap plans.
    const dip::planner fitting = planner_with_cap(preset, dip::mib(4));
    const dip::planned_batch planned = fitting.plan(batch, "dip");
    CHECK(non_keep_actions(planned.plan) > 0);
  }
}

TEST_CASE("planner: a schedule added to the registry plans like the built-in it wraps") {
  const dip::model_preset preset = dip::find_preset("tiny-t2v");
  dip::planner planner = dip::make_planner(preset, reproducible());
  planner.schedules().add("my-1f1b",
                          {.placement = dip::schedule_placement::classic,
                           .make = [](const dip::schedule_request& q) { return dip::plan_baseline("1f1b", q.graph); },
                           .description = "1F1B, as a trainer would register it"});
  planner.schedules().add("gpipe-again", planner.schedules().at("gpipe"));
  planner.schedules().add(
      "my-static-dip", {.placement = dip::schedule_placement::modality,
                        .make = [](const dip::schedule_request& q) { return dip::plan_static_dip(q.graph, q.options); },
                        .description = "static-dip under another name"});
  const std::vector<std::string> names = planner.schedules().names();
  CHECK(names.size() == 12);
  CHECK(names.back() == "my-static-dip");
  CHECK(planner.schedules().known().find("my-1f1b") != std::string::npos);

  const std::vector<dip::packed_microbatch> batch = batch_of(preset, 5);
  for (const auto& [mine, builtin] : {std::pair<std::string, std::string>{"my-1f1b", "1f1b"},
                                      {"gpipe-again", "gpipe"},
                                      {"my-static-dip", "static-dip"}}) {
    CAPTURE(mine);
    const dip::planned_batch ours = planner.plan(batch, mine);
    const dip::planned_batch theirs = planner.plan(batch, builtin);
    CHECK(ours.schedule == mine);
    CHECK(ours.placement == theirs.placement);
    CHECK(makespan_ms(ours) == makespan_ms(theirs));
    CHECK(ours.plan.graph->size() == theirs.plan.graph->size());
  }
  // Registering needs a name and a planning function.
  CHECK_THROWS_AS(planner.schedules().add("", planner.schedules().at("gpipe")), dip::error);
  CHECK_THROWS_AS(planner.schedules().add("nothing", dip::schedule_entry{}), dip::error);
}

TEST_CASE("planner: the split holds every image, clip and caption of the batch exactly once") {
  for (const std::string name : {"tiny-vlm", "tiny-t2v"}) {
    for (const std::size_t sub_size : {std::size_t(0), std::size_t(1)}) {
      CAPTURE(name);
      CAPTURE(sub_size);
      const dip::model_preset preset = dip::find_preset(name);
      dip::planner_options options = reproducible();
      options.sub_microbatch_size = sub_size;
      const dip::planner planner = dip::make_planner(preset, options);
      const std::vector<dip::packed_microbatch> batch = batch_of(preset, 9);
      std::size_t items = 0;
      for (const dip::packed_microbatch& mb : batch) items += mb.images.size() + mb.clips.size();
      REQUIRE(items > 0);
      for (const std::string schedule : {"dip", "1f1b"}) {
        CAPTURE(schedule);
        const dip::planned_batch planned = planner.plan(batch, schedule);
        REQUIRE(planned.split.size() == batch.size());
        std::size_t split_subs = 0, item_modules = 0;
        for (std::size_t j = 0; j < batch.size(); ++j) {
          CHECK(planned.split[j].microbatch == j);
          REQUIRE(planned.split[j].modules.size() == preset.model.module_count());
          for (const dip::module_split& m : planned.split[j].modules) {
            if (m.kind == dip::item_kind::sequence) continue;  // the packed sequence: item 0
            const std::size_t count = dip::item_count(batch[j], m.kind);
            std::vector<int> seen(count, 0);
            std::size_t held = 0;
            for (const dip::sub_microbatch& s : m.subs) {
              held += s.items.size();
              for (std::size_t item : s.items) {
                REQUIRE(item < count);
                ++seen[item];
              }
              // B is fixed for the image and clip chains; caption chains keep the partitioner's.
              if (sub_size > 0 && schedule == "dip" && m.kind != dip::item_kind::caption)
                CHECK(s.items.size() <= sub_size);
            }
            CHECK(held == count);
            CHECK(std::set<int>(seen.begin(), seen.end()) == (count == 0 ? std::set<int>{} : std::set<int>{1}));
            item_modules += count > 0 ? 1 : 0;
            split_subs += m.subs.size() > 1 ? 1 : 0;
          }
          // The stage graph's input is this split.
          CHECK(planned.work.microbatches[j].modules.size() == planned.split[j].modules.size());
        }
        CHECK(item_modules > 0);
        // The classic placement splits nothing; DIP's with B = 1 splits every microbatch with
        // more than one item.
        if (schedule == "1f1b") CHECK(split_subs == 0);
        if (schedule == "dip" && sub_size > 0) CHECK(split_subs > 0);
      }
    }
  }
}

TEST_CASE("planner: the placement each schedule runs on") {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const int pp = preset.parallel.pp;
  dip::planner_options options = reproducible();
  SUBCASE("K tuned on the first batch: dip's placement exists once a batch is planned") {
    const dip::planner planner = dip::make_planner(preset, options);
    CHECK(planner.modality_partition_if_built() == nullptr);
    CHECK_THROWS_WITH_AS(planner.placement_of("dip"), doctest::Contains("needs sample batches"), dip::error);
    CHECK(planner.placement_of("1f1b").chains.size() == 1);  // classic placements need no batch
    (void)planner.plan(batch_of(preset, 2), "dip");
    REQUIRE(planner.modality_partition_if_built() != nullptr);
    CHECK(planner.placement_of("dip").chains.size() == planner.modality_partition_if_built()->placement.chains.size());
  }
  SUBCASE("tuned on the options' batches") {
    options.tuning_batches = {batch_of(preset, 2), batch_of(preset, 3)};
    const dip::planner planner = dip::make_planner(preset, options);
    const dip::placement& modality = planner.placement_of("dip");
    CHECK(modality.chains.size() > 1);  // one per modality
    CHECK(&planner.placement_of("static-dip") == &modality);
    CHECK(planner.policy_of("dip").items_per_sub.size() == preset.model.module_count());

    const dip::placement& one_f_one_b = planner.placement_of("1f1b");
    CHECK(one_f_one_b.chains.size() == 1);
    CHECK(one_f_one_b.chunks.size() == std::size_t(pp));
    CHECK(&planner.placement_of("gpipe") == &one_f_one_b);
    CHECK(planner.placement_of("interleaved").chunks.size() == 2 * std::size_t(pp));

    // Optimus: the modality-aware chains with one chunk per rank each.
    const dip::placement& optimus = planner.placement_of("optimus");
    CHECK(optimus.chains.size() > 1);
    for (const auto& chain : optimus.chains) {
      std::set<std::size_t> ranks;
      for (dip::chunk_id c : chain) ranks.insert(optimus.chunk(c).rank.index());
      CHECK(ranks.size() == chain.size());
    }
  }
  SUBCASE("megatron's partition for the classic schedules") {
    options.partition = "megatron";
    options.segments_per_rank = 1;  // fixed K: nothing to tune
    const dip::planner planner = dip::make_planner(preset, options);
    const std::vector<dip::packed_microbatch> batch = batch_of(preset, 4);
    CHECK(planner.plan(batch, "1f1b").placement == "megatron");
    CHECK(planner.plan(batch, "dip").placement == "dip");
    CHECK(planner.placement_of("1f1b").chains.size() == 1);
  }
}

TEST_CASE("planner: an empty batch is refused") {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  dip::planner planner = dip::make_planner(preset, reproducible());
  for (const std::string schedule : {"dip", "1f1b"}) {
    CAPTURE(schedule);
    CHECK_THROWS_WITH_AS(planner.plan({}, schedule), doctest::Contains("no microbatches"), dip::error);
  }
  CHECK_THROWS_WITH_AS(planner.submit(0, {}, "dip"), doctest::Contains("no microbatches"), dip::error);
}
