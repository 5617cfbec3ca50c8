// The sub-microbatch bin-packer: every item in exactly one bin, caps hold, and each heuristic
// stays within its documented bound of the brute-force optimum.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <dip/batch/bin_packing.hpp>
#include <dip/batch/synthetic.hpp>  // sample_rng
#include <dip/core/units.hpp>

namespace {

using algorithm = dip::bin_packing_algorithm;
constexpr algorithm all_algorithms[] = {algorithm::lpt, algorithm::first_fit_decreasing, algorithm::karmarkar_karp,
                                        algorithm::best_of};

const auto identity = [](double w) { return w; };

// Every index in exactly one bin, `bins` bins, weights and memory the sums of their items.
void check_assignment(const dip::bin_assignment& a, const std::vector<double>& weights, std::size_t bins,
                      const std::vector<double>& memory = {}) {
  REQUIRE(a.bins.size() == bins);
  REQUIRE(a.weights.size() == bins);
  REQUIRE(a.memory.size() == bins);
  std::vector<int> seen(weights.size(), 0);
  for (std::size_t b = 0; b < bins; ++b) {
    double w = 0, m = 0;
    for (std::size_t i : a.bins[b]) {
      REQUIRE(i < weights.size());
      ++seen[i];
      w += weights[i];
      m += memory.empty() ? 0.0 : memory[i];
    }
    CHECK(a.weights[b] == doctest::Approx(w));
    CHECK(a.memory[b] == doctest::Approx(m));
    if (weights.size() >= bins) CHECK_FALSE(a.bins[b].empty());
  }
  for (int count : seen) REQUIRE(count == 1);
}

// The optimal largest bin by branch and bound (items heaviest first; bins of equal load are
// interchangeable, so only the first of them is tried).
double brute_force_optimum(std::vector<double> weights, std::size_t bins) {
  std::sort(weights.rbegin(), weights.rend());
  std::vector<double> load(bins, 0.0);
  double best = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::function<void(std::size_t, double)> place = [&](std::size_t i, double current) {
    if (current >= best) return;
    if (i == weights.size()) {
      best = current;
      return;
    }
    for (std::size_t b = 0; b < bins; ++b) {
      bool repeat = false;
      for (std::size_t c = 0; c < b; ++c) repeat = repeat || load[c] == load[b];
      if (repeat) continue;
      load[b] += weights[i];
      place(i + 1, std::max(current, load[b]));
      load[b] -= weights[i];
    }
  };
  place(0, 0.0);
  return best;
}

std::vector<double> random_weights(dip::sample_rng& rng, std::size_t n, int shape) {
  std::vector<double> w(n);
  for (double& x : w) {
    switch (shape) {
      case 0: x = double(1 + rng.next() % 100); break;   // small integers: many ties
      case 1: x = rng.uniform(1.0, 10.0); break;         // similar sizes
      default: x = rng.log_uniform(0.1, 1000.0); break;  // heavy-tailed, like OBELICS images
    }
  }
  return w;
}

double bound_of(algorithm a, std::size_t bins) {
  switch (a) {
    case algorithm::lpt: return dip::lpt_bound(bins);
    case algorithm::first_fit_decreasing: return dip::ffd_bound();
    case algorithm::karmarkar_karp: return dip::karmarkar_karp_bound(bins);
    case algorithm::best_of: return dip::best_of_bound(bins);
  }
  return 0;
}

}  // namespace

TEST_CASE("small instances: every heuristic within its bound of the brute-force optimum") {
  dip::sample_rng rng(2024);
  constexpr int instances = 3000;
  int optimal[4] = {0, 0, 0, 0};
  double worst[4] = {1, 1, 1, 1};
  for (int t = 0; t < instances; ++t) {
    const std::size_t n = 1 + rng.next() % 10;
    const std::size_t bins = 2 + rng.next() % 3;
    const std::vector<double> w = random_weights(rng, n, t % 3);
    const double opt = brute_force_optimum(w, bins);
    for (int a = 0; a < 4; ++a) {
      const dip::bin_assignment result = dip::pack_bins(w, bins, identity, all_algorithms[a]);
      check_assignment(result, w, bins);
      const double ratio = result.max_weight() / opt;
      CAPTURE(to_string(all_algorithms[a]));
      CAPTURE(n);
      CAPTURE(bins);
      REQUIRE(ratio >= 1 - 1e-9);  // nothing beats the optimum
      CHECK(ratio <= bound_of(all_algorithms[a], bins) * (1 + 1e-9));
      worst[a] = std::max(worst[a], ratio);
      optimal[a] += ratio <= 1 + 1e-9 ? 1 : 0;
    }
  }
  for (int a = 0; a < 4; ++a) {
    MESSAGE(to_string(all_algorithms[a]) << ": optimal on " << optimal[a] << " of " << instances << " ("
                                         << 100.0 * optimal[a] / instances << "%), worst ratio " << worst[a]);
  }
  CHECK(optimal[3] >= optimal[0]);
  CHECK(optimal[3] >= optimal[1]);
  CHECK(optimal[3] >= optimal[2]);
  CHECK(double(optimal[3]) / instances > 0.8);  // "equal on most"
}

TEST_CASE("large instances: within a small factor of max(max item, sum / bins)") {
  dip::sample_rng rng(99);
  double worst_uniform = 1, worst_any = 1;
  for (std::size_t n : {16u, 64u, 128u, 512u}) {
    for (std::size_t bins : {2u, 4u, 8u, 16u}) {
      for (int shape = 0; shape < 3; ++shape) {
        const std::vector<double> w = random_weights(rng, n, shape);
        const double sum = std::accumulate(w.begin(), w.end(), 0.0);
        const double lower = std::max(*std::max_element(w.begin(), w.end()), sum / double(bins));
        for (algorithm a : all_algorithms) {
          const dip::bin_assignment result = dip::pack_bins(w, bins, identity, a);
          check_assignment(result, w, bins);
          CAPTURE(to_string(a));
          CAPTURE(n);
          CAPTURE(bins);
          CHECK(result.max_weight() >= lower * (1 - 1e-12));
          if (a == algorithm::best_of) {
            CHECK(result.max_weight() <= 2 * lower);  // proven: <= sum / k + max item
            const double ratio = result.max_weight() / lower;
            worst_any = std::max(worst_any, ratio);
            if (shape != 2 && n >= 4 * bins) {
              CHECK(ratio <= 1.02);  // many similar items balance almost perfectly
              worst_uniform = std::max(worst_uniform, ratio);
            }
          }
        }
      }
    }
  }
  MESSAGE("best_of / lower bound: worst " << worst_any << " overall, " << worst_uniform
                                          << " on similar-sized items (n >= 4 bins)");
}

TEST_CASE("fewer items than bins: one item per bin, the rest empty; the optimum is the largest item") {
  const std::vector<double> w{5, 3, 9};
  for (algorithm a : all_algorithms) {
    const dip::bin_assignment result = dip::pack_bins(w, 5, identity, a);
    check_assignment(result, w, 5);
    CHECK(result.max_weight() == 9);
    std::size_t empty = 0;
    for (const auto& bin : result.bins) empty += bin.empty() ? 1 : 0;
    CHECK(empty == 2);
  }
  // One bin holds everything.
  const dip::bin_assignment one = dip::best_of_bins(w, 1, identity);
  CHECK(one.bins == std::vector<std::vector<std::size_t>>{{0, 1, 2}});
  CHECK(one.max_weight() == 17);
}

TEST_CASE("a classic instance where LPT is not optimal but best_of is") {
  // Graham's worst case for k = 2: {3, 3, 2, 2, 2}: LPT gives 7, the optimum is 6 ({3,3}, {2,2,2}).
  const std::vector<double> w{3, 3, 2, 2, 2};
  CHECK(dip::lpt_bins(w, 2, identity).max_weight() == 7);
  CHECK(dip::best_of_bins(w, 2, identity).max_weight() == 6);
  CHECK(brute_force_optimum(w, 2) == 6);
  CHECK(7.0 / 6.0 <= dip::lpt_bound(2) + 1e-12);  // the bound is tight here
}

TEST_CASE("generic items: durations as weights, bytes as memory, under a cap") {
  struct image_item {
    dip::duration time;
    dip::bytes activation;
  };
  dip::sample_rng rng(5);
  int solved = 0, tried = 0;
  for (int t = 0; t < 300; ++t) {
    const std::size_t n = 4 + rng.next() % 40, bins = 2 + rng.next() % 6;
    std::vector<image_item> items;
    std::vector<double> w, m;
    for (std::size_t i = 0; i < n; ++i) {
      items.push_back({dip::milliseconds(rng.log_uniform(0.5, 50)), dip::mib(rng.uniform(10, 500))});
      w.push_back(items.back().time.base());
      m.push_back(items.back().activation.base());
    }
    const double total = std::accumulate(m.begin(), m.end(), 0.0);
    const double cap = std::max(*std::max_element(m.begin(), m.end()), total / double(bins)) * rng.uniform(1.0, 1.5);
    for (algorithm a : all_algorithms) {
      ++tried;
      try {
        const dip::bin_assignment result = dip::pack_bins(
            items, bins, [](const image_item& x) { return x.time; }, a,
            [](const image_item& x) { return x.activation; }, cap);
        check_assignment(result, w, bins, m);
        for (double used : result.memory) CHECK(used <= cap * (1 + 1e-9));
        ++solved;
      } catch (const dip::error& e) {
        CHECK(e.code() == dip::errc::infeasible);
        CHECK(std::string(e.what()).find("available") != std::string::npos);
      }
    }
  }
  MESSAGE("memory-capped instances solved: " << solved << " of " << tried);
  CHECK(solved > tried / 2);
}

TEST_CASE("a cap that cannot hold is an infeasible error with needed and available bytes") {
  const std::vector<double> w{1, 2, 3};
  const auto memory = [](double x) { return x * 1e9; };
  // One item above the cap: the error names it.
  try {
    (void)dip::pack_bins(w, 2, identity, algorithm::best_of, memory, 2.5e9);
    FAIL("an item above the cap was placed");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::infeasible);
    CHECK(std::string(e.what()).find("item 2 alone needs 3000000000 bytes") != std::string::npos);
  }
  // Every item fits alone, but three 2 GB items cannot go into 2 bins of 3 GB.
  const auto two_gb = [](double) { return 2e9; };
  for (algorithm a : all_algorithms) {
    CAPTURE(to_string(a));
    try {
      (void)dip::pack_bins(w, 2, identity, a, two_gb, 3e9);
      FAIL("a split above the cap was returned");
    } catch (const dip::error& e) {
      CHECK(e.code() == dip::errc::infeasible);
      const std::string message = e.what();
      CHECK_MESSAGE(message.find("the best needs 4000000000 bytes") != std::string::npos, message);
      CHECK_MESSAGE(message.find("available 3000000000 bytes") != std::string::npos, message);
    }
  }
  // A cap that forces a worse weight balance: best_of still finds a split that fits.
  const std::vector<double> time{10, 10, 1, 1};
  const std::vector<double> mem{1, 1, 10, 10};
  const std::vector<std::size_t> items{0, 1, 2, 3};
  const dip::bin_assignment fits = dip::best_of_bins(
      items, 2, [&](std::size_t i) { return time[i]; }, [&](std::size_t i) { return mem[i]; }, 11.0);
  check_assignment(fits, time, 2, mem);
  CHECK(fits.max_weight() == 11);
  CHECK(fits.max_memory() == 11);
}

TEST_CASE("bad input is a clear error") {
  const std::vector<double> ok{1, 2};
  const auto code_of = [](auto&& call) {
    try {
      call();
    } catch (const dip::error& e) {
      return std::string(dip::to_string(e.code())) + ": " + e.what();
    }
    return std::string("no error");
  };
  CHECK(code_of([&] {
          dip::best_of_bins(ok, 0, identity);
        }).find("invalid argument: bin packing: needs at least one bin") == 0);
  CHECK(code_of([&] { dip::best_of_bins(std::vector<double>{}, 2, identity); }).find("has no items") !=
        std::string::npos);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(code_of([&] {
          dip::best_of_bins(std::vector<double>{1, nan}, 2, identity);
        }).find("item 1: weight must be finite and >= 0, got nan") != std::string::npos);
  CHECK(code_of([&] {
          dip::lpt_bins(std::vector<double>{-1, 2}, 2, identity);
        }).find("item 0: weight must be finite and >= 0") != std::string::npos);
  CHECK(code_of([&] {
          dip::ffd_bins(ok, 2, identity, [](double) { return -1.0; });
        }).find("item 0: memory must be finite and >= 0") != std::string::npos);
  CHECK(code_of([&] {
          dip::karmarkar_karp_bins(
              ok, 2, identity, [](double) { return 1.0; }, -5.0);
        }).find("memory cap must be finite and >= 0") != std::string::npos);
  CHECK(code_of([&] {
          dip::karmarkar_karp_bins(
              ok, 2, identity, [](double) { return 1.0; }, nan);
        }).find("invalid argument") == 0);
}

TEST_CASE("zero weights and equal weights split deterministically") {
  const std::vector<double> zeros(6, 0.0);
  for (algorithm a : all_algorithms) {
    const dip::bin_assignment result = dip::pack_bins(zeros, 3, identity, a);
    check_assignment(result, zeros, 3);
    CHECK(result.max_weight() == 0);
  }
  const std::vector<double> same(12, 4.0);
  for (algorithm a : all_algorithms) {
    const dip::bin_assignment first = dip::pack_bins(same, 4, identity, a);
    const dip::bin_assignment second = dip::pack_bins(same, 4, identity, a);
    CHECK(first.bins == second.bins);
    CHECK(first.max_weight() == 12);
    CHECK(first.spread() == 0);
  }
}
