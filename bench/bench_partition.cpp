// Partitioner speed: the exact min-max cut (partition/min_max.hpp) and the whole modality-aware
// partitioner (partition/modality_partition.hpp: B per chain, K per chain by repeated DPs,
// offsets), which dip runs offline once per model and again for each K the segment tuning tries.
//
//   build/bench/dip-bench-partition --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#include <dip/batch/synthetic.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/min_max.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/planner/planner.hpp>

namespace {

// range(0) layers of varied weight (log-uniform on [1, 4]: blocks, embeddings, heads) cut into
// range(1) runs.
void min_max_cut(benchmark::State& state) {
  const std::size_t layers = std::size_t(state.range(0)), parts = std::size_t(state.range(1));
  dip::sample_rng rng(layers);
  std::vector<double> w(layers);
  for (double& x : w) x = rng.log_uniform(1.0, 4.0);
  double largest = 0;
  for (auto _ : state) {
    largest = dip::min_max_partition(w, parts).largest;
    benchmark::DoNotOptimize(largest);
  }
  state.counters["cuts_per_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["layers_per_s"] =
      benchmark::Counter(double(layers) * double(state.iterations()), benchmark::Counter::kIsRate);
}

// The modality-aware partition of a preset on its own cluster (PP, TP, GPU), with the weight
// memory rule dip::planner partitions with.
void modality_partition(benchmark::State& state, const char* preset_name) {
  const dip::model_preset preset = dip::find_preset(preset_name);
  const dip::cluster_spec cluster = dip::cluster_of(preset);
  const dip::analytic_cost_model costs(cluster.gpu, cluster.tp);
  dip::partition_options options;
  options.ranks = cluster.pp;
  options.memory = cluster.weight_rule();
  std::size_t chunks = 0;
  for (auto _ : state) {
    const dip::modality_partition part = dip::partition_modalities(preset.model, costs, options);
    chunks = part.placement.chunks.size();
    benchmark::DoNotOptimize(chunks);
  }
  state.counters["chunks"] = double(chunks);
  state.counters["partitions_per_s"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(min_max_cut)->Args({32, 4})->Args({128, 32})->Args({512, 64})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(modality_partition, vlm_s, "vlm-s")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(modality_partition, vlm_l, "vlm-l")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(modality_partition, t2v_l, "t2v-l")->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
