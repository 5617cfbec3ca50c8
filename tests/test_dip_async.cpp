// DIP's planner behind the asynchronous planner: plans arrive in order and valid, a short
// deadline still gets a valid plan (best so far or the static fallback), the search stops when
// cancelled, a fallback made past a deadline stops its memory phase at once; and a rank's actions
// as a generator equal the materialised list.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <stop_token>
#include <thread>

#include <dip/batch/source.hpp>
#include <dip/model/presets.hpp>
#include <dip/planner/dip_async.hpp>
#include <dip/planner/planner.hpp>
#include <dip/schedule/action_stream.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

namespace {

// VLM-S batches as dip::planner prepares them for DIP (the partitioner's K, NVLink, the GPU's
// memory): the stage graph comes from planning the batch with static-dip, which runs on the
// same placement and graph as dip.
struct vlm_stream {
  dip::model_preset preset = dip::find_preset("vlm-s");
  dip::planner<dip::analytic_cost_model> planner{
      preset.model, dip::analytic_cost_model(dip::find_gpu(preset.gpu), preset.parallel.tp), nvlink_cluster(preset),
      static_options()};
  dip::batch_source source{dip::make_batch_source("obelics", preset.model, 7)};
  std::vector<dip::bytes> weights;  // of the placement's ranks, set by next_graph
  dip::bytes cap = planner.cluster().cap();

  static dip::cluster_spec nvlink_cluster(const dip::model_preset& p) {
    dip::cluster_spec cluster = dip::cluster_of(p);
    cluster.link = cluster.gpu.nvlink;
    return cluster;
  }
  static dip::planner_options static_options() {
    dip::planner_options o;
    o.tune_segments = false;
    o.search_ms = 0;
    return o;
  }

  std::shared_ptr<const dip::stage_graph> next_graph(std::size_t microbatches) {
    const dip::planned_batch planned = planner.plan(source.next_batch(microbatches), "static-dip");
    weights = planned.weight_memory;
    return planned.plan.graph;
  }

  dip::dip_planner_options options(double search_ms) const {
    dip::dip_planner_options o;
    o.memory_cap = cap;
    o.weight_memory = weights;
    o.comm = planner.cluster().comm();
    o.search_ms = search_ms;
    return o;
  }
};

}  // namespace

TEST_CASE("asynchronous DIP planning: in order, valid within the cap, deadlines give best-so-far or the fallback") {
  vlm_stream stream;
  dip::async_planner<dip::plan> planner({.workers = 1, .max_ahead = 2}, {}, {});
  // Batch 0 with time to finish, batch 1 with a deadline far shorter than its search.
  dip::submit_dip_batch(planner, 0, stream.next_graph(8), stream.options(30));
  const dip::validation_options checks{.memory_cap = stream.cap, .weight_memory = stream.weights};
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

// The worker builds the fallback first, under the batch's stop token: a deadline must end its
// phase 3 too (each rank's problems not yet solved take their smallest strategies). Under a cap
// that binds, the stopped fallback is still valid and never faster than the finished one, and
// slower here: it really stopped (the fallback once ignored the token and ran to the end).
TEST_CASE("the static fallback stops its memory phase when asked: valid under the cap, never faster") {
  vlm_stream stream;
  const auto graph = stream.next_graph(16);
  dip::dip_planner_options options = stream.options(1);
  options.memory_cap.reset();
  const dip::plan unfitted = dip::static_dip_fallback(graph, options);
  const dip::simulation_options sim = dip::simulation_options_of(options);
  double weights = 0, peak = 0;
  const dip::simulation_result free_run = dip::simulate(unfitted, sim);
  for (std::size_t r = 0; r < free_run.ranks.size(); ++r) {
    if (free_run.ranks[r].peak_memory.base() > peak) {
      peak = free_run.ranks[r].peak_memory.base();
      weights = stream.weights[r].base();
    }
  }
  REQUIRE(peak > weights);
  // Every rank at most 30% of the worst rank's activations above its weights: phase 3 has real
  // choices to make there (at 50% and above every binding item here has one way to fit).
  options.memory_cap = dip::bytes(weights + 0.3 * (peak - weights));
  const dip::validation_options checks{.memory_cap = options.memory_cap, .weight_memory = stream.weights};
  const dip::plan finished = dip::static_dip_fallback(graph, options);
  std::stop_source stop;
  stop.request_stop();
  options.stop = stop.get_token();
  const dip::plan stopped = dip::static_dip_fallback(graph, options);
  CHECK_NOTHROW(dip::validate(finished, checks));
  CHECK_NOTHROW(dip::validate(stopped, checks));
  const double finished_ms = dip::to_milliseconds(dip::simulate(finished, sim).makespan);
  const double stopped_ms = dip::to_milliseconds(dip::simulate(stopped, sim).makespan);
  CHECK(stopped_ms > finished_ms);

  // get() past a deadline with nothing offered is late already: the fallback it makes stops its
  // phase 3 at once (the stopped plan above). The one worker is held in batch 0 until batch 1 has
  // been delivered, so batch 1 never starts.
  options.stop = {};
  dip::async_planner<dip::plan> planner({.workers = 1, .max_ahead = 2}, {}, {});
  std::latch release(1);
  planner.submit(
      0, [&](std::size_t, dip::planning_context<dip::plan>&) { release.wait(); },
      [&](std::size_t) { return finished; });
  dip::submit_dip_batch(planner, 1, graph, options);
  CHECK(planner.get(0, std::chrono::milliseconds(0)).source == dip::plan_source::fallback);
  const auto late = planner.get(1, std::chrono::milliseconds(0));
  release.count_down();
  CHECK(late.source == dip::plan_source::fallback);
  CHECK_NOTHROW(dip::validate(late.plan, checks));
  CHECK(dip::to_milliseconds(dip::simulate(late.plan, sim).makespan) == stopped_ms);

  // A deadline at once on an idle worker: get() takes the quick plan the worker is making (or has
  // made, or makes it itself if it wins the race): the same stopped plan whichever made it.
  for (std::size_t i = 2; i < 6; ++i) {
    dip::submit_dip_batch(planner, i, graph, options);
    const auto now = planner.get(i, std::chrono::milliseconds(0));
    CHECK_NOTHROW(dip::validate(now.plan, checks));
    if (now.source == dip::plan_source::fallback) {
      CHECK(dip::to_milliseconds(dip::simulate(now.plan, sim).makespan) == stopped_ms);
    }
  }
}

// The quick fallback is made once per batch by whichever of the worker and get() asks first; the
// other waits for it (it was started sooner) instead of making it again.
TEST_CASE("made_once: the first caller makes the value, a concurrent caller waits for it") {
  dip::detail::made_once<int> cell;
  std::latch making(1), release(1);
  std::atomic<int> made{0};
  std::thread first([&] {
    CHECK(cell.get([&] {
      ++made;
      making.count_down();
      release.wait();
      return 1;
    }) == 1);
  });
  making.wait();  // the first caller is inside make()
  std::atomic<bool> second_done{false};
  std::thread second([&] {
    CHECK(cell.get([&] {
      ++made;
      return 2;
    }) == 1);
    second_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(second_done.load());  // waiting, not making its own
  release.count_down();
  first.join();
  second.join();
  CHECK(second_done.load());
  CHECK(made.load() == 1);
  CHECK(cell.get([] { return 3; }) == 1);

  // A failure is made once too: every caller gets it, nobody makes the value again.
  dip::detail::made_once<int> failing;
  int attempts = 0;
  const auto fail = [&]() -> int {
    ++attempts;
    throw dip::error(dip::errc::infeasible, "made_once test", "no plan fits");
  };
  CHECK_THROWS_WITH_AS(failing.get(fail), doctest::Contains("no plan fits"), dip::error);
  CHECK_THROWS_WITH_AS(failing.get(fail), doctest::Contains("no plan fits"), dip::error);
  CHECK(attempts == 1);
}

TEST_CASE("a rank's actions as a generator equal the plan's list") {
  vlm_stream stream;
  const auto plan = std::make_shared<const dip::plan>(dip::plan_dip(stream.next_graph(4), stream.options(0)));
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
  CHECK_THROWS_WITH_AS(dip::rank_actions(plan, dip::rank_id::from_index(99)),
                       doctest::Contains("not one of the plan's"), dip::error);
}
