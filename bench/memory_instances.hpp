// Synthetic phase-3 instances: one pipeline-like rank of forward/backward pairs with a bounded
// number in flight. Shared by the memory-solver benchmark and dip-memory-gap so that both measure
// the same instances.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include <dip/schedule/memory_solver.hpp>

namespace dip_bench {

// A rank whose pairs interleave with at most `window` in flight (1F1B-like when full):
// activations 100-3000 MiB, forward 1-12 ms, backward about twice that, recompute keeping
// 2-25% of the activations, offload over a 50 GB/s link.
inline dip::memory_problem pipeline_rank(std::size_t pairs, int window, double tightness, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  dip::memory_problem pr;
  const dip::bytes weights = dip::gib(std::round(uniform(10, 40)));
  const dip::bandwidth host = dip::gigabytes_per_second(50);
  std::vector<std::size_t> open;
  std::size_t started = 0;
  while (started < pairs || !open.empty()) {
    const bool can_forward = started < pairs && int(open.size()) < window;
    const bool forward = can_forward && (open.empty() || uniform(0, 1) < 0.5 || int(open.size()) < window / 2);
    const std::size_t point = pr.base.size();
    pr.base.push_back(weights);
    if (!forward) {
      pr.items[open.front()].last = point;
      open.erase(open.begin());
      continue;
    }
    const double a = std::round(uniform(100, 3000));
    const dip::duration tf = dip::milliseconds(uniform(1, 12));
    const dip::duration tb = tf * uniform(1.6, 2.4);
    const dip::duration copy = dip::mib(a) / host;
    dip::candidate_list all{
        {dip::memory_strategy::keep, {}, dip::mib(a)},
        {dip::memory_strategy::recompute, tf, dip::mib(std::round(a * uniform(0.02, 0.25)))},
        {dip::memory_strategy::offload, std::max(dip::duration{}, copy - tf) + std::max(dip::duration{}, copy - tb),
         dip::bytes{}}};
    dip::memory_item item;
    item.first = point;
    item.candidates = dip::select_candidates(std::move(all), 3);
    open.push_back(pr.items.size());
    pr.items.push_back(std::move(item));
    ++started;
  }
  // The cap between the all-smallest and the all-keep peaks.
  const std::size_t n = pr.base.size();
  std::vector<double> lo(n + 1, 0), hi(n + 1, 0);
  for (const dip::memory_item& it : pr.items) {
    lo[it.first] += it.candidates.front().kept.base();
    lo[it.last] -= it.candidates.front().kept.base();
    hi[it.first] += it.candidates.back().kept.base();
    hi[it.last] -= it.candidates.back().kept.base();
  }
  double rl = 0, rh = 0, pl = 0, ph = 0;
  for (std::size_t i = 0; i < n; ++i) {
    rl += lo[i];
    rh += hi[i];
    pl = std::max(pl, pr.base[i].base() + rl);
    ph = std::max(ph, pr.base[i].base() + rh);
  }
  pr.cap = dip::bytes(std::round(pl + tightness * (ph - pl)));
  return pr;
}

}  // namespace dip_bench
