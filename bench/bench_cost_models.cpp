// How fast the cost models answer: the schedule search prices thousands of (sub-)microbatch x
// chunk pairs per batch, so a cost query must cost microseconds, not milliseconds.
//   dip-bench-cost_models --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <dip/dip.hpp>

namespace {

void analytic_layer(benchmark::State& state) {
  const dip::module_spec llm = dip::presets::qwen2_32b();
  const dip::analytic_cost_model costs(dip::h800(), 8);
  const auto work = dip::work_unit::sequences_of(double(state.range(0)), 169);
  for (auto _ : state) benchmark::DoNotOptimize(costs.cost(llm, 5, work));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(analytic_layer)->Arg(1)->Arg(48);

void analytic_chunk_of_16_layers(benchmark::State& state) {
  const dip::module_spec llm = dip::presets::qwen2_32b();
  const dip::analytic_cost_model costs(dip::h800(), 8);
  const auto work = dip::work_unit::sequence(8192);
  for (auto _ : state) benchmark::DoNotOptimize(dip::chunk_cost(costs, llm, 1, 17, work));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(analytic_chunk_of_16_layers);

void fixed_table_layer(benchmark::State& state) {
  dip::fixed_cost_table table;
  table.set_uniform("llm", 64, {{dip::milliseconds(1), dip::milliseconds(1), dip::milliseconds(1), {}, {}}, 8192});
  const dip::module_spec llm = dip::presets::qwen2_32b();
  const auto work = dip::work_unit::sequence(4096);
  for (auto _ : state) benchmark::DoNotOptimize(table.cost(llm, 5, work));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(fixed_table_layer);

}  // namespace

BENCHMARK_MAIN();
