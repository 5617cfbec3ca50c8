// Bin-packer speed: LPT, first-fit-decreasing (MULTIFIT), Karmarkar-Karp and best_of on 8 to 512
// items of log-uniform weight on [1, 100] (images of varied sizes) into 4 bins, the sizes a
// per-batch planner splits many times per iteration. The counter "ratio" is the largest bin over
// the lower bound max(max item, sum / bins).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include <dip/batch/bin_packing.hpp>
#include <dip/batch/synthetic.hpp>

namespace {

std::vector<double> varied_sizes(std::size_t n) {
  dip::sample_rng rng(n);
  std::vector<double> w(n);
  for (double& x : w) x = rng.log_uniform(1.0, 100.0);
  return w;
}

void run(benchmark::State& state, dip::bin_packing_algorithm algorithm) {
  const std::vector<double> w = varied_sizes(std::size_t(state.range(0)));
  constexpr std::size_t bins = 4;
  double largest = 0;
  for (auto _ : state) {
    const dip::bin_assignment a = dip::pack_bins(
        w, bins, [](double x) { return x; }, algorithm);
    largest = a.max_weight();
    benchmark::DoNotOptimize(largest);
  }
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  state.counters["ratio"] = largest / std::max(*std::max_element(w.begin(), w.end()), sum / double(bins));
  state.counters["items_per_s"] =
      benchmark::Counter(double(w.size()) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void bm_lpt(benchmark::State& s) { run(s, dip::bin_packing_algorithm::lpt); }
void bm_ffd(benchmark::State& s) { run(s, dip::bin_packing_algorithm::first_fit_decreasing); }
void bm_karmarkar_karp(benchmark::State& s) { run(s, dip::bin_packing_algorithm::karmarkar_karp); }
void bm_best_of(benchmark::State& s) { run(s, dip::bin_packing_algorithm::best_of); }

}  // namespace

BENCHMARK(bm_lpt)->RangeMultiplier(4)->Range(8, 512);
BENCHMARK(bm_ffd)->RangeMultiplier(4)->Range(8, 512);
BENCHMARK(bm_karmarkar_karp)->RangeMultiplier(4)->Range(8, 512);
BENCHMARK(bm_best_of)->RangeMultiplier(4)->Range(8, 512);

BENCHMARK_MAIN();
