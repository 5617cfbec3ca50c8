// DIP's planner behind the asynchronous planner: plans arrive in order and valid, a short
// deadline still gets a valid plan (best so far or the static fallback), the search stops when
// cancelled; and a rank's actions as a generator equal the materialised list.
#include <doctest/doctest.h>

#include <chrono>
#include <memory>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/action_stream.hpp>
#include <dip/schedule/dip_async.hpp>
#include <dip/schedule/validate.hpp>

namespace {

struct vlm_stream {
  dip::model_preset preset = dip::find_preset("vlm-s");
  dip::gpu_spec gpu = dip::find_gpu("H800");
  dip::analytic_cost_model costs{gpu, preset.parallel.tp};
  dip::modality_partition part;
  dip::batch_source source;

  vlm_stream()
      : part(dip::partition_modalities(preset.model, costs,
                                       [&] {
                                         dip::partition_options o;
                                         o.ranks = preset.parallel.pp;
                                         o.memory = {preset.parallel.tp, 16.0, gpu.memory};
                                         return o;
                                       }())),
        source(dip::make_batch_source("obelics", preset.model, 7)) {}

  std::shared_ptr<const dip::stage_graph> next_graph(std::size_t microbatches) {
    const auto packed = source.next_batch(microbatches);
    const dip::batch_work batch = dip::to_batch_work(dip::split_batch(packed, preset.model, part.policy, costs));
    return std::make_shared<const dip::stage_graph>(dip::build_stage_graph(preset.model, part.placement, batch, costs));
  }

  dip::dip_planner_options options(double search_ms) const {
    dip::dip_planner_options o;
    o.memory_cap = gpu.memory;
    o.weight_memory = part.weight_memory;
    o.comm = {{}, gpu.nvlink};
    o.search_ms = search_ms;
    return o;
  }
};

}  // namespace

TEST_CASE("asynchronous DIP planning: in order, valid within the cap, deadlines give best-so-far or the fallback") {
  vlm_stream stream;
  dip::async_planner<dip::plan> planner({.workers = 1, .max_ahead = 2}, {}, {});
  const dip::validation_options checks{.memory_cap = stream.gpu.memory, .weight_memory = stream.part.weight_memory};
  // Batch 0 with time to finish, batch 1 with a deadline far shorter than its search.
  dip::submit_dip_batch(planner, 0, stream.next_graph(8), stream.options(30));
  dip::submit_dip_batch(planner, 1, stream.next_graph(8), stream.options(60000));
  const auto first = planner.get(0);
  CHECK(first.batch_index == 0);
  CHECK(first.source == dip::plan_source::in_time);
  CHECK_NOTHROW(dip::validate(first.plan, checks));
  const auto start = std::chrono::steady_clock::now();
  const auto second = planner.get(1, std::chrono::milliseconds(50));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));  // the 60 s search was cut short
  CHECK(second.batch_index == 1);
  CHECK((second.source == dip::plan_source::best_so_far || second.source == dip::plan_source::fallback));
  CHECK_NOTHROW(dip::validate(second.plan, checks));
  CHECK(planner.stats().delivered() == 2);

  // The fallback alone: the static plan fits the cap too.
  const auto graph = stream.next_graph(8);
  CHECK_NOTHROW(dip::validate(dip::static_dip_fallback(graph, stream.options(1)), checks));
  CHECK_THROWS_WITH_AS(dip::submit_dip_batch(planner, 2, graph, stream.options(0)),
                       doctest::Contains("needs a search budget"), dip::error);
}

TEST_CASE("a rank's actions as a generator equal the plan's list") {
  vlm_stream stream;
  const auto plan = std::make_shared<const dip::plan>(dip::plan_dip_schedule(stream.next_graph(4), stream.options(0)));
  for (std::size_t r = 0; r < plan->ranks.size(); ++r) {
    std::size_t i = 0;
    for (const dip::action& a : dip::rank_actions(plan, dip::rank_id::from_index(r))) {
      REQUIRE(i < plan->ranks[r].size());
      CHECK(a.kind == plan->ranks[r][i].kind);
      CHECK(a.stage == plan->ranks[r][i].stage);
      CHECK(a.edge == plan->ranks[r][i].edge);
      ++i;
    }
    CHECK(i == plan->ranks[r].size());
  }
  CHECK_THROWS_WITH_AS(dip::rank_actions(plan, dip::rank_id::from_index(99)), doctest::Contains("not one of the plan's"),
                       dip::error);
}
