// Simulator speed: simulated actions per second on a large plan.
//
// 8 ranks, one chain of 32 one-layer chunks (4 per rank, chunk c on rank c mod 8, as Megatron
// interleaves them), 256 microbatches; backward whole (F, B) or split (F, I, W). The compute
// order is a wavefront: stage (microbatch j, depth d along F-then-B) gets priority j + d, every
// edge raises the priority, so sorting by it gives a linear extension and a deadlock-free plan.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include <dip/cost/fixed_table.hpp>
#include <dip/model/model.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/stage_graph.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

namespace {

using namespace dip::literals;

constexpr int ranks = 8;
constexpr std::size_t chunks = 32, microbatches = 256;

dip::plan large_plan(bool split) {
  dip::module_spec lm;
  lm.name = "lm";
  for (std::size_t i = 0; i < chunks; ++i) lm.layers.push_back(dip::opaque_layer{"block", 0, 0});
  const dip::multimodal_model model = dip::model_builder("bench").add(lm).build();
  dip::fixed_cost_table costs;
  costs.set_uniform("lm", chunks, {{1_ms, 1_ms, 1_ms, dip::mib(256), dip::mib(16)}, 0});
  dip::placement p;
  p.ranks = ranks;
  p.chains.emplace_back();
  p.chain_inputs.emplace_back();
  for (std::size_t c = 0; c < chunks; ++c) {
    p.chunks.push_back({{{model.at("lm"), c, c + 1}}, dip::rank_id::from_index(c % ranks), 0, c});
    p.chains[0].push_back(dip::chunk_id::from_index(c));
  }
  const dip::batch_work batch =
      dip::uniform_batch(model, microbatches, [](const dip::module_spec&) { return dip::work_unit::sequence(4096); });
  auto graph = std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(model, p, batch, costs, {.split_backward = split}));

  const auto depth = [&](const dip::stage& s) -> std::size_t {
    const std::size_t c = s.chunk.index();
    switch (s.kind) {
      case dip::stage_kind::forward: return c;
      case dip::stage_kind::backward:
      case dip::stage_kind::backward_input: return 2 * chunks - 1 - c;
      case dip::stage_kind::backward_weight: return 2 * chunks - c;
    }
    return 0;
  };
  std::vector<std::size_t> order(graph->size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  const auto stages = graph->stages();
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return stages[a].microbatch.index() + depth(stages[a]) < stages[b].microbatch.index() + depth(stages[b]);
  });
  std::vector<std::vector<dip::stage_id>> per_rank(ranks);
  for (std::size_t s : order) per_rank[stages[s].rank.index()].push_back(dip::stage_id::from_index(s));
  dip::plan plan = dip::make_plan(graph, per_rank);
  dip::validate(plan);
  return plan;
}

void simulate_large_plan(benchmark::State& state) {
  const bool split = state.range(0) != 0;
  const dip::plan plan = large_plan(split);
  dip::simulation_options options;
  options.comm = {10_us, dip::gigabytes_per_second(200)};
  options.record_timeline = state.range(1) != 0;
  const std::size_t actions = plan.action_count();
  double makespan = 0, bubble = 0;
  for (auto _ : state) {
    const dip::simulation_result result = dip::simulate(plan, options);
    benchmark::DoNotOptimize(result.makespan);
    makespan = dip::to_seconds(result.makespan);
    bubble = result.bubble_ratio;
  }
  state.SetItemsProcessed(std::int64_t(state.iterations()) * std::int64_t(actions));
  state.counters["actions"] = double(actions);
  state.counters["actions_per_s"] =
      benchmark::Counter(double(actions) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["makespan_s"] = makespan;
  state.counters["bubble"] = bubble;
}

}  // namespace

BENCHMARK(simulate_large_plan)
    ->ArgNames({"split", "timeline"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
