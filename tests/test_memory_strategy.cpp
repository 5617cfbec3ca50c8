// Memory strategies (DIP phase 3): the cost rules on hand-built pairs, candidate selection, the
// chooser against brute force on thousands of small instances (abstract and from random stage
// graphs), its gap on large instances, infeasibility errors, and the simulator and validator
// honouring the chosen strategies.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include <dip/cost/fixed_table.hpp>
#include <dip/model/model.hpp>
#include <dip/partition/placement.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/memory_chooser.hpp>
#include <dip/schedule/memory_solver/decompose.hpp>
#include <dip/schedule/memory_solver/exchange.hpp>
#include <dip/schedule/memory_solver/headroom_tree.hpp>
#include <dip/schedule/memory_solver/solve_component.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/stage_graph.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

#include "plan_test_support.hpp"

using namespace dip::literals;

namespace {

using dip::memory_strategy;
using dip_test::opaque_module;

bool nearly_equal(double a, double b, double rel = 1e-9) {
  return std::fabs(a - b) <= rel * std::max({1e-300, std::fabs(a), std::fabs(b)});
}

// --- a one-chunk-per-layer chain, as in the simulator tests -----------------------------------
using dip_test::chain_graph;

using dip_test::graph_generator;

std::size_t forwards_on(const dip::stage_graph& g, std::size_t rank) {
  std::size_t n = 0;
  for (const dip::stage& s : g.stages()) n += s.kind == dip::stage_kind::forward && s.rank.index() == rank;
  return n;
}

// Brute force over every combination of one rank's candidates: the least extra time whose
// predicted peak (the simulator's arithmetic) stays within the cap; infinity if none does.
double brute_force_rank(const dip::stage_graph& g, const std::vector<dip::stage_id>& order, dip::bytes weights,
                        dip::bytes cap, const dip::memory_strategy_model& model) {
  std::vector<dip::stage_id> forwards;
  std::vector<dip::candidate_list> cands;
  for (dip::stage_id id : order) {
    if (g.at(id).kind != dip::stage_kind::forward) continue;
    forwards.push_back(id);
    cands.push_back(dip::candidates_for(g, id, model));
  }
  std::vector<std::size_t> pick(forwards.size(), 0);
  std::vector<memory_strategy> table(g.size(), memory_strategy::keep);
  double best = std::numeric_limits<double>::infinity();
  while (true) {
    double extra = 0;
    for (std::size_t p = 0; p < forwards.size(); ++p) {
      const dip::activation_pair pair = dip::pair_of(g, forwards[p]);
      const memory_strategy s = cands[p][pick[p]].strategy;
      table[pair.forward.index()] = table[pair.use.index()] = table[pair.release.index()] = s;
      extra += cands[p][pick[p]].extra.base();
    }
    if (dip::predicted_peak(g, order, weights, table) <= cap) best = std::min(best, extra);
    std::size_t p = 0;
    while (p < pick.size() && ++pick[p] == cands[p].size()) pick[p++] = 0;
    if (p == pick.size()) break;
  }
  return best;
}

// --- abstract problems -------------------------------------------------------------------------
struct problem_generator {
  std::mt19937_64 rng;
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

  // Peaks of the all-smallest and all-largest choices.
  static std::pair<double, double> peak_range(const dip::memory_problem& pr) {
    const std::size_t n = pr.base.size();
    std::vector<double> lo(n + 1, 0), hi(n + 1, 0);
    for (const dip::memory_item& it : pr.items) {
      double a = std::numeric_limits<double>::infinity(), b = 0;
      for (const auto& c : it.candidates) {
        a = std::min(a, c.kept.base());
        b = std::max(b, c.kept.base());
      }
      lo[it.first] += a, lo[it.last] -= a, hi[it.first] += b, hi[it.last] -= b;
    }
    double rl = 0, rh = 0, pl = 0, ph = 0;
    for (std::size_t i = 0; i < n; ++i) {
      rl += lo[i], rh += hi[i];
      pl = std::max(pl, pr.base[i].base() + rl);
      ph = std::max(ph, pr.base[i].base() + rh);
    }
    return {pl, ph};
  }

  // Up to 10 items on up to 24 points, 1-4 arbitrary candidates each (dominated ones too), whole
  // MiB so every sum is exact.
  dip::memory_problem small() {
    dip::memory_problem pr;
    const int points = integer(1, 24);
    for (int i = 0; i < points; ++i) pr.base.push_back(dip::mib(double(integer(0, 200))));
    const int items = integer(0, 10);
    for (int p = 0; p < items; ++p) {
      dip::memory_item it;
      it.first = std::size_t(integer(0, points - 1));
      it.last = std::size_t(integer(int(it.first), points));
      const int cands = integer(1, 4);
      for (int c = 0; c < cands; ++c) {
        it.candidates.push_back({memory_strategy(integer(0, 2)), dip::milliseconds(double(integer(0, 20))),
                                 dip::mib(double(integer(0, 500)))});
      }
      pr.items.push_back(std::move(it));
    }
    const auto [lo, hi] = peak_range(pr);
    pr.cap = dip::bytes(std::round(lo + uniform(-0.1, 1.1) * (hi - lo)));
    return pr;
  }

  // A pipeline-like rank: pairs whose forward and backward interleave with at most `window`
  // in flight (1F1B-like when the window is full), realistic activations and times.
  dip::memory_problem pipeline(std::size_t pairs, int window, double tightness) {
    dip::memory_problem pr;
    const dip::bytes weights = dip::gib(double(integer(10, 40)));
    std::vector<std::size_t> open;  // items in flight, oldest first
    std::vector<double> forward_time;
    std::size_t started = 0;
    const dip::bandwidth host = dip::gigabytes_per_second(50);
    while (started < pairs || !open.empty()) {
      const bool can_forward = started < pairs && int(open.size()) < window;
      const bool forward = can_forward && (open.empty() || uniform(0, 1) < 0.5 || int(open.size()) < window / 2);
      const std::size_t point = pr.base.size();
      pr.base.push_back(weights);
      if (forward) {
        dip::memory_item it;
        it.first = point;
        const double a = std::round(uniform(100, 3000));  // MiB
        const dip::duration tf = dip::milliseconds(uniform(1, 12));
        const dip::duration tb = tf * uniform(1.6, 2.4);
        const double input = std::round(a * uniform(0.02, 0.25));
        const dip::duration copy = dip::mib(a) / host;
        dip::candidate_list all{
            {memory_strategy::keep, {}, dip::mib(a)},
            {memory_strategy::recompute, tf, dip::mib(input)},
            {memory_strategy::offload, std::max(dip::duration{}, copy - tf) + std::max(dip::duration{}, copy - tb),
             dip::bytes{}}};
        it.candidates = dip::select_candidates(all, 3);
        open.push_back(pr.items.size());
        pr.items.push_back(std::move(it));
        ++started;
      } else {
        pr.items[open.front()].last = point;
        open.erase(open.begin());
      }
    }
    const auto [lo, hi] = peak_range(pr);
    pr.cap = dip::bytes(std::round(lo + tightness * (hi - lo)));
    return pr;
  }
};

double brute_force_optimum(const dip::memory_problem& pr) {
  const std::size_t n = pr.items.size(), points = pr.base.size();
  std::vector<std::size_t> pick(n, 0);
  double best = std::numeric_limits<double>::infinity();
  while (true) {
    double extra = 0;
    bool fits = true;
    for (std::size_t i = 0; i < points && fits; ++i) {
      double load = pr.base[i].base();
      for (std::size_t p = 0; p < n; ++p) {
        if (pr.items[p].first <= i && i < pr.items[p].last) load += pr.items[p].candidates[pick[p]].kept.base();
      }
      fits = load <= pr.cap.base();
    }
    if (fits) {
      for (std::size_t p = 0; p < n; ++p) extra += pr.items[p].candidates[pick[p]].extra.base();
      best = std::min(best, extra);
    }
    std::size_t p = 0;
    while (p < n && ++pick[p] == pr.items[p].candidates.size()) pick[p++] = 0;
    if (p == n) break;
  }
  return best;
}

}  // namespace

TEST_CASE("cost rules on one pair: keep, recompute, offload, and the deltas the simulator applies") {
  // Two chunks on rank 0 and 1; chunk 1's forward takes 2 ms, backward 4 ms (I = W = 2 ms),
  // keeps 1000 MB of activations and receives chunk 0's 100 MB output.
  const dip::layer_cost cost{2_ms, 2_ms, 2_ms, 1_GB, dip::gigabytes(0.1)};
  for (bool split : {false, true}) {
    CAPTURE(split);
    const auto g = chain_graph({0, 1}, 2, 1, cost, split);
    const dip::stage_id f1 = g->find(dip::stage_kind::forward, dip::chunk_id::from_index(1), 0);
    const dip::stage_id f0 = g->find(dip::stage_kind::forward, dip::chunk_id::from_index(0), 0);
    const dip::activation_pair pair = dip::pair_of(*g, f1);
    CHECK(g->at(pair.use).kind == (split ? dip::stage_kind::backward_input : dip::stage_kind::backward));
    CHECK(g->at(pair.release).kind == (split ? dip::stage_kind::backward_weight : dip::stage_kind::backward));
    CHECK(dip::forward_of(*g, pair.use) == f1);
    CHECK(dip::forward_of(*g, pair.release) == f1);
    CHECK(dip::forward_of(*g, f1) == f1);

    const dip::strategy_cost keep = dip::strategy_cost_of(*g, f1, memory_strategy::keep);
    CHECK(keep.extra() == dip::duration{});
    CHECK(keep.kept == 1_GB);
    const dip::strategy_cost re = dip::strategy_cost_of(*g, f1, memory_strategy::recompute);
    CHECK(re.forward_extra == dip::duration{});
    CHECK(re.backward_extra == 2_ms);
    CHECK(re.kept == dip::gigabytes(0.1));                                                  // its input edge
    CHECK(dip::strategy_cost_of(*g, f0, memory_strategy::recompute).kept == dip::bytes{});  // chain head
    // Offload at 50 GB/s: 1 GB takes 20 ms each way; F hides 2 ms, U (B 4 ms or I 2 ms) the rest.
    const dip::strategy_cost off = dip::strategy_cost_of(*g, f1, memory_strategy::offload);
    CHECK(off.kept == dip::bytes{});
    CHECK(nearly_equal(to_milliseconds(off.forward_extra), 18));
    CHECK(nearly_equal(to_milliseconds(off.backward_extra), split ? 18 : 16));
    // Fast link: copies hide completely.
    dip::memory_strategy_model fast;
    fast.host_link = dip::gigabytes_per_second(1000);
    CHECK(dip::strategy_cost_of(*g, f1, memory_strategy::offload, fast).extra() == dip::duration{});

    // Deltas: keep is the graph's; others move memory as the header says.
    CHECK(dip::strategy_memory_delta(*g, f1, memory_strategy::keep) == g->at(f1).memory_delta);
    CHECK(dip::strategy_memory_delta(*g, f1, memory_strategy::recompute) == dip::gigabytes(0.1));
    if (split) {
      CHECK(dip::strategy_memory_delta(*g, pair.use, memory_strategy::recompute) == 1_GB - dip::gigabytes(0.1));
      CHECK(dip::strategy_memory_delta(*g, pair.release, memory_strategy::offload) == -1_GB);
    } else {
      CHECK(dip::strategy_memory_delta(*g, pair.use, memory_strategy::recompute) == -dip::gigabytes(0.1));
      CHECK(dip::strategy_memory_delta(*g, pair.use, memory_strategy::offload) == dip::bytes{});
    }
    CHECK(dip::strategy_time(*g, pair.use, memory_strategy::recompute) == g->at(pair.use).time + 2_ms);
    CHECK(dip::strategy_time(*g, f1, memory_strategy::recompute) == g->at(f1).time);
    if (split) CHECK(dip::strategy_time(*g, pair.release, memory_strategy::offload) == g->at(pair.release).time);
    CHECK_THROWS_AS(dip::pair_of(*g, pair.use), dip::error);
    dip::memory_strategy_model broken;
    broken.host_link = dip::bandwidth(0);
    CHECK_THROWS_AS(dip::strategy_cost_of(*g, f1, memory_strategy::offload, broken), dip::error);
  }
}

TEST_CASE("candidate selection: non-dominated, kept ascending, at most S (fastest, smallest, buckets)") {
  using c = dip::strategy_candidate;
  const auto k = [](double mib, double ms, memory_strategy s = memory_strategy::keep) {
    return c{s, dip::milliseconds(ms), dip::mib(mib)};
  };
  // (100, 5) dominates (120, 6); a duplicate of (0, 10) goes too.
  const auto front = dip::select_candidates({k(1000, 0), k(100, 5), k(120, 6), k(0, 10), k(0, 10), k(500, 1)}, 10);
  REQUIRE(front.size() == 4);
  CHECK(front[0] == k(0, 10));
  CHECK(front[1] == k(100, 5));
  CHECK(front[2] == k(500, 1));
  CHECK(front[3] == k(1000, 0));
  const auto two = dip::select_candidates({k(1000, 0), k(100, 5), k(0, 10), k(500, 1)}, 2);
  REQUIRE(two.size() == 2);
  CHECK(two[0] == k(0, 10));
  CHECK(two[1] == k(1000, 0));
  const auto one = dip::select_candidates({k(1000, 0), k(0, 10)}, 1);
  REQUIRE(one.size() == 1);
  CHECK(one[0] == k(1000, 0));
  // S = 4: two buckets over [0, 1000): [0, 500) -> 400 (the fastest there), [500, 1000] -> 900.
  const auto four = dip::select_candidates({k(0, 10), k(100, 8), k(400, 4), k(600, 3), k(900, 1), k(1000, 0)}, 4);
  REQUIRE(four.size() == 4);
  CHECK(four[1] == k(400, 4));
  CHECK(four[2] == k(900, 1));
  CHECK_THROWS_AS(dip::select_candidates({k(0, 0)}, 0), dip::error);
  // Zero activations: only keep is left.
  const auto g = chain_graph({0}, 1, 1, {1_ms, 1_ms, 1_ms, dip::bytes{}, dip::bytes{}});
  const auto none = dip::candidates_for(*g, dip::stage_id::from_index(0));
  REQUIRE(none.size() == 1);
  CHECK(none[0].strategy == memory_strategy::keep);
}

namespace {

// The non-dominated front written as its definition: a candidate goes when another is no slower
// and no larger and either better in one or the same and earlier; the rest sorted by kept bytes.
std::vector<dip::strategy_candidate> front_plainly(const std::vector<dip::strategy_candidate>& all) {
  std::vector<dip::strategy_candidate> front;
  for (std::size_t i = 0; i < all.size(); ++i) {
    bool dominated = false;
    for (std::size_t j = 0; j < all.size() && !dominated; ++j) {
      const bool no_worse = all[j].extra <= all[i].extra && all[j].kept <= all[i].kept;
      const bool better = all[j].extra < all[i].extra || all[j].kept < all[i].kept;
      dominated = i != j && no_worse && (better || j < i);
    }
    if (!dominated) front.push_back(all[i]);
  }
  std::sort(front.begin(), front.end(),
            [](const dip::strategy_candidate& a, const dip::strategy_candidate& b) { return a.kept < b.kept; });
  return front;
}

}  // namespace

TEST_CASE("candidate selection keeps the front the definition gives, on random lists with ties") {
  std::mt19937_64 rng(0xf407);
  const memory_strategy kinds[] = {memory_strategy::keep, memory_strategy::recompute, memory_strategy::offload};
  for (int round = 0; round < 3000; ++round) {
    // Few distinct values, so that equal kept bytes, equal times and equal candidates are common;
    // the strategy tells equal candidates apart (the first must stay). Up to 24 items: the
    // insertion sort and the stable sort behind it.
    std::vector<dip::strategy_candidate> all(1 + rng() % 24);
    for (auto& c : all) c = {kinds[rng() % 3], dip::milliseconds(double(rng() % 6)), dip::mib(double(rng() % 6))};
    CAPTURE(round);
    const std::vector<dip::strategy_candidate> expected = front_plainly(all);
    CHECK(dip::select_candidates(all, all.size()) == expected);
    // Selecting fewer keeps the fastest and the smallest of that front.
    const std::vector<dip::strategy_candidate> two = dip::select_candidates(all, 2);
    REQUIRE(!two.empty());
    CHECK(two.front() == expected.front());
    CHECK(two.back() == expected.back());
    // The inline list phase 3 uses selects the same, for every count (1: the fastest alone).
    for (std::size_t count = 1; count <= all.size(); ++count) {
      const std::vector<dip::strategy_candidate> as_vector = dip::select_candidates(all, count);
      const dip::candidate_list as_list = dip::select_candidates(dip::candidate_list(all.begin(), all.end()), count);
      CHECK(std::vector<dip::strategy_candidate>(as_list.begin(), as_list.end()) == as_vector);
    }
  }
}

TEST_CASE("the solver matches brute force on thousands of small abstract problems") {
  problem_generator gen{std::mt19937_64(0x5eed)};
  int solved = 0, infeasible = 0;
  for (int round = 0; round < 4000; ++round) {
    const dip::memory_problem pr = gen.small();
    CAPTURE(round);
    const double expected = brute_force_optimum(pr);
    if (std::isinf(expected)) {
      CHECK(dip::first_infeasible_point(pr).has_value());
      CHECK_THROWS_AS(dip::solve_memory_problem(pr), dip::error);
      ++infeasible;
      continue;
    }
    const dip::memory_solution s = dip::solve_memory_problem(pr);
    REQUIRE(s.choice.size() == pr.items.size());
    CHECK(s.optimal);
    CHECK(s.peak <= pr.cap);
    CHECK(nearly_equal(s.extra.base(), expected, 1e-9));
    CHECK(s.lower_bound == s.extra);
    CHECK(s.gap() == 0.0);
    ++solved;
  }
  CHECK(solved > 3000);
  CHECK(infeasible > 50);
}

TEST_CASE("the chooser matches brute force per rank on random stage graphs (<= 10 pairs per rank)") {
  graph_generator gen(20250611);
  int cases = 0, tight = 0;
  for (int round = 0; cases < 1500 && round < 20000; ++round) {
    const auto g = gen.make_graph();
    bool small = true;
    for (int r = 0; r < g->ranks(); ++r) small = small && forwards_on(*g, std::size_t(r)) <= 10;
    if (!small) continue;
    ++cases;
    CAPTURE(round);
    const auto order = dip_test::random_order(*g, gen.rng());
    dip::memory_choice_options options;
    options.model.allow_recompute = gen.coin(0.8);
    options.model.allow_offload = gen.coin(0.8);
    options.model.max_candidates = std::size_t(gen.integer(2, 3));
    options.model.host_link = dip::gigabytes_per_second(gen.uniform(10, 200));
    for (int r = 0; r < g->ranks(); ++r) options.weight_memory.push_back(dip::gib(gen.uniform(0, 4)));
    // A cap between the smallest possible peak and the keep-everything peak of the busiest rank.
    double lo = 0, hi = 0;
    for (std::size_t r = 0; r < order.size(); ++r) {
      std::vector<memory_strategy> smallest(g->size(), memory_strategy::keep);
      for (dip::stage_id id : order[r]) {
        if (g->at(id).kind != dip::stage_kind::forward) continue;
        const auto c = dip::candidates_for(*g, id, options.model);
        const dip::activation_pair pair = dip::pair_of(*g, id);
        smallest[pair.forward.index()] = smallest[pair.use.index()] = smallest[pair.release.index()] =
            c.front().strategy;
      }
      lo = std::max(lo, dip::predicted_peak(*g, order[r], options.weight_memory[r], smallest).base());
      hi = std::max(hi, dip::predicted_peak(*g, order[r], options.weight_memory[r], {}).base());
    }
    // (A hair above the smallest peak: a cap equal to a peak no choice changes is a tie that
    // sums in different orders may break either way.)
    options.memory_cap = dip::bytes(lo * (1 + 1e-7) + gen.uniform(0, 1) * (hi - lo));
    const dip::memory_choice choice = dip::choose_memory_strategies(*g, order, options);
    dip::plan p = dip::make_plan(g, order);
    dip::apply_memory_choice(p, choice);
    CHECK_FALSE(dip::first_violation(p, {options.memory_cap, options.weight_memory}).has_value());
    dip::simulation_options so;
    so.weight_memory = options.weight_memory;
    so.memory_strategies = options.model;
    const dip::simulation_result sim = dip::simulate(p, so);
    for (std::size_t r = 0; r < order.size(); ++r) {
      CAPTURE(r);
      const dip::rank_memory_choice& rc = choice.ranks[r];
      const double expected =
          brute_force_rank(*g, order[r], options.weight_memory[r], options.memory_cap, options.model);
      CHECK(rc.optimal);
      CHECK(nearly_equal(rc.extra_time.base(), expected, 1e-9));
      CHECK(rc.peak_memory <= options.memory_cap);
      CHECK(sim.ranks[r].peak_memory == rc.peak_memory);  // the same arithmetic, bit for bit
      CHECK(nearly_equal(sim.ranks[r].strategy_time.base(), rc.extra_time.base(), 1e-9));
      tight += expected > 0;
    }
  }
  CHECK(cases == 1500);
  CHECK(tight > 300);  // many instances really need a strategy other than keep
}

TEST_CASE("large pipeline-like ranks: within the cap, bound below the choice, fast enough") {
  problem_generator gen{std::mt19937_64(78)};
  for (std::size_t pairs : {100u, 1000u, 5000u}) {
    for (int window : {4, 16, 32}) {
      for (double tightness : {0.2, 0.8}) {
        const dip::memory_problem pr = gen.pipeline(pairs, window, tightness);
        const auto t0 = std::chrono::steady_clock::now();
        const dip::memory_solution s = dip::solve_memory_problem(pr);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        CAPTURE(pairs);
        CAPTURE(window);
        CHECK(s.peak <= pr.cap);
        CHECK(s.lower_bound <= s.extra);
        CHECK(s.lower_bound > dip::duration{});
        CHECK(ms < 20000);  // generous for sanitizer builds; at most about 600 ms in release
      }
    }
  }
}

// The 5% target holds on every instance with at most 4 pairs in flight (solved exactly:
// the decision diagram stays narrow) and on most others, not on all: measured mean 2.5%, worst
// 18% of the extra time (not of the iteration). Against HiGHS's exact optimum on the 100- and
// 500-pair instances the chosen extra time is within 2.3%: what remains is the bound's (the LP
// relaxation alone is 2-24% below the optimum). What is asserted is what holds, with a margin.
TEST_CASE("large pipeline-like ranks: gap against the proven bound, mean <= 3.5%, worst <= 25%") {
  problem_generator gen{std::mt19937_64(77)};
  double worst_gap = 0, total_gap = 0, worst_ms = 0;
  int instances = 0, proven = 0;
  for (std::size_t pairs : {100u, 500u, 1000u, 2000u, 5000u}) {
    for (int window : {4, 8, 16, 32}) {
      for (double tightness : {0.2, 0.5, 0.8, 0.95}) {
        const dip::memory_problem pr = gen.pipeline(pairs, window, tightness);
        const auto t0 = std::chrono::steady_clock::now();
        const dip::memory_solution s = dip::solve_memory_problem(pr);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        CAPTURE(pairs);
        CAPTURE(window);
        CAPTURE(tightness);
        CHECK(s.peak <= pr.cap);
        CHECK(s.lower_bound <= s.extra);
        CHECK(s.gap() <= 0.25);
        if (window == 4) CHECK(s.optimal);
        worst_gap = std::max(worst_gap, s.gap());
        total_gap += s.gap();
        worst_ms = std::max(worst_ms, ms);
        proven += s.optimal;
        ++instances;
      }
    }
  }
  std::printf("memory chooser, %d pipeline-like instances of 100-5000 pairs: worst gap %.3f%%, mean gap %.3f%%, "
              "%d proven optimal, slowest %.2f ms\n",
              instances, 100 * worst_gap, 100 * total_gap / instances, proven, worst_ms);
  CHECK(worst_ms < 20000);  // generous for sanitizer and debug builds; about 400 ms in release
  CHECK(total_gap / instances <= 0.035);
  CHECK(proven >= 45);
}

// The bounds alone (branch and bound cut off at once, a diagram two states wide so that it
// merges): never above the optimum, and the choice never below it.
TEST_CASE("bounds without the search: below brute force on thousands of small problems") {
  problem_generator gen{std::mt19937_64(0xb0u)};
  dip::memory_solver_options options;
  options.exact_items = 0;
  options.node_limit = 1;
  options.dd_width = 2;
  int checked = 0, open = 0;
  for (int round = 0; round < 4000; ++round) {
    const dip::memory_problem pr = gen.small();
    const double expected = brute_force_optimum(pr);
    if (std::isinf(expected)) continue;
    CAPTURE(round);
    const dip::memory_solution s = dip::solve_memory_problem(pr, options);
    CHECK(s.peak <= pr.cap);
    CHECK(s.lower_bound.base() <= expected * (1 + 1e-9) + 1e-15);
    CHECK(s.extra.base() >= expected * (1 - 1e-9) - 1e-15);
    if (s.optimal) CHECK(nearly_equal(s.extra.base(), expected, 1e-9));
    open += !s.optimal;
    ++checked;
  }
  CHECK(checked > 3000);
  CHECK(open > 0);  // the cut-off search really leaves some open
}

// The exchange moves (make one item faster and others smaller, or one smaller and others
// faster) only ever improve a feasible choice; with the search cut off they find strictly better
// choices than repair alone on some instances, and never leave the cap.
TEST_CASE("local search by exchange: feasible, never worse, sometimes better") {
  problem_generator gen{std::mt19937_64(0xe8u)};
  dip::memory_solver_options without;
  without.exact_items = 0;
  without.node_limit = 1;
  without.dd_width = 0;
  without.local_search = false;
  dip::memory_solver_options with = without;
  with.local_search = true;
  int better = 0, checked = 0;
  for (int round = 0; round < 300; ++round) {
    CAPTURE(round);
    const dip::memory_problem pr =
        gen.pipeline(std::size_t(40 + round % 200), 4 + round % 29, 0.1 + 0.8 * (round % 7) / 6.0);
    const dip::memory_solution a = dip::solve_memory_problem(pr, without);
    const dip::memory_solution b = dip::solve_memory_problem(pr, with);
    CHECK(b.peak <= pr.cap);
    CHECK(b.extra.base() <= a.extra.base() * (1 + 1e-12));
    CHECK(b.lower_bound.base() <= b.extra.base() * (1 + 1e-12));
    better += b.extra.base() < a.extra.base() * (1 - 1e-9);
    ++checked;
  }
  CHECK(checked == 300);
  CHECK(better > 10);
  MESSAGE("exchange improved " << better << " of " << checked << " cut-off solutions");
}

namespace {

// The shape of random_exchange_component's components.
struct exchange_component_shape {
  std::uint32_t segments = 60;      // 2 to 1 + this many segments
  std::uint32_t items = 80;         // 2 to 1 + this many items
  std::uint32_t slack = 1000;       // per segment, 0 to this - 1 bytes
  std::uint32_t range_divisor = 4;  // an item spans 1 to 1 + segments / this segments
  std::uint32_t candidates = 5;     // 1 to this many per item
  bool real_times = false;          // times drawn as reals (no ties) rather than from integers
};

// A random component for the exchange search: items over random segment ranges (by start),
// candidates by bytes up (1-300 each step) and time down (x 0.2-0.9 each step).
dip::detail::memory_component random_exchange_component(std::mt19937_64& rng, const exchange_component_shape& shape) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  dip::detail::memory_component c;
  const std::uint32_t segments = 2 + std::uint32_t(rng() % shape.segments),
                      items = 2 + std::uint32_t(rng() % shape.items);
  c.slack.resize(segments);
  for (double& s : c.slack) s = double(rng() % shape.slack);
  std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges(items);
  for (auto& [a, b] : ranges) {
    a = std::uint32_t(rng() % segments);
    b = a + 1 + std::uint32_t(rng() % std::min<std::uint32_t>(segments - a, 1 + segments / shape.range_divisor));
  }
  std::sort(ranges.begin(), ranges.end());
  c.cand_begin.push_back(0);
  for (std::uint32_t i = 0; i < items; ++i) {
    c.item.push_back(i);
    c.sa.push_back(ranges[i].first);
    c.sb.push_back(ranges[i].second);
    const std::uint32_t count = 1 + std::uint32_t(rng() % shape.candidates);
    double time = shape.real_times ? 1 + 100 * unit(rng) : 1 + double(rng() % 100), kept = 0;
    for (std::uint32_t k = 0; k < count; ++k) {
      c.time.push_back(time);
      c.dk.push_back(kept);
      c.origin.push_back(k);
      time *= 0.2 + 0.7 * (shape.real_times ? unit(rng) : double(rng() % 1000) / 1000.0);
      kept += 1 + double(rng() % 300);
    }
    c.cand_begin.push_back(std::uint32_t(c.time.size()));
  }
  return c;
}

}  // namespace

// improve_by_exchange tries an item again only once a kept move has changed something within its
// reach (the segments of every item it shares one with). Run to convergence, the choice it
// returns must then be a local optimum: a fresh search finds no improving move for any item
// (a wrongly skipped item would show up here). Random components: items over random segment
// ranges, 1-5 candidates each (bytes up, time down), slack that the smallest choice fits.
TEST_CASE("local search by exchange: converged choices admit no improving move") {
  std::mt19937_64 rng(0x5eedu);
  int moved_somewhere = 0;
  for (int round = 0; round < 400; ++round) {
    CAPTURE(round);
    const dip::detail::memory_component c = random_exchange_component(rng, {});
    const auto segments = std::uint32_t(c.slack.size()), items = std::uint32_t(c.size());
    std::vector<std::uint32_t> x(items, 0);
    double start = 0;
    for (std::uint32_t i = 0; i < items; ++i) start += c.t(i, 0);
    const double total = dip::detail::improve_by_exchange(c, x, 1000);
    CHECK(total <= start);
    moved_somewhere += total < start;
    // Within the slack everywhere.
    for (std::uint32_t s = 0; s < segments; ++s) {
      double load = 0;
      for (std::uint32_t i = 0; i < items; ++i) load += (c.sa[i] <= s && s < c.sb[i]) ? c.k(i, x[i]) : 0.0;
      CHECK(load <= c.slack[s] + 1e-9);
    }
    std::vector<std::uint32_t> y = x;
    dip::detail::exchange_search fresh(c, y);
    for (std::uint32_t i = 0; i < items; ++i) {
      CAPTURE(i);
      CHECK_FALSE(fresh.make_faster(i));
      CHECK_FALSE(fresh.make_smaller(i));
    }
    CHECK(y == x);  // a failed move leaves the choice as it was
  }
  CHECK(moved_somewhere > 300);
}

// The reverse move answers "does this step fit?" from bounds it keeps between range queries
// (headroom only falls while a move spends bytes). It must take the steps that a plain scan takes,
// one asking the loads of every segment for every step: from random feasible choices of random
// components, make_smaller(i) and the scan below end on the same choice, item by item. Times are
// random reals, so no two steps tie (the scan need not break ties as the search does).
TEST_CASE("local search by exchange: the reverse move takes the steps a plain scan takes") {
  std::mt19937_64 rng(0xbeefu);
  int moves = 0, compared = 0;
  for (int round = 0; round < 300; ++round) {
    CAPTURE(round);
    const dip::detail::memory_component c = random_exchange_component(
        rng, {.segments = 40, .items = 60, .slack = 1500, .range_divisor = 3, .candidates = 6, .real_times = true});
    const auto segments = std::uint32_t(c.slack.size()), items = std::uint32_t(c.size());
    const auto fits = [&](const std::vector<std::uint32_t>& y) {
      for (std::uint32_t s = 0; s < segments; ++s) {
        double load = 0;
        for (std::uint32_t i = 0; i < items; ++i) load += (c.sa[i] <= s && s < c.sb[i]) ? c.k(i, y[i]) : 0.0;
        if (load > c.slack[s]) return false;
      }
      return true;
    };
    // A random feasible choice: random candidates, lowered at random until everything fits.
    std::vector<std::uint32_t> x(items);
    for (std::uint32_t i = 0; i < items; ++i) x[i] = std::uint32_t(rng() % c.count(i));
    while (!fits(x)) {
      const std::uint32_t i = std::uint32_t(rng() % items);
      if (x[i] > 0) --x[i];
    }
    // The plain scan: for each smaller candidate of i, spend the freed bytes step by step on the
    // largest time saved per byte that fits, over every other item sharing a segment with i.
    const auto scan = [&](std::vector<std::uint32_t> y, std::uint32_t i) {
      for (std::uint32_t to = 0; to < y[i]; ++to) {
        std::vector<std::uint32_t> z = y;
        z[i] = to;
        const double cost = c.t(i, to) - c.t(i, y[i]);
        double gain = 0;
        while (true) {
          double best_ratio = 0;
          std::uint32_t best_item = 0, best_to = 0;
          for (std::uint32_t j = 0; j < items; ++j) {
            if (j == i || !(c.sa[j] < c.sb[i] && c.sa[i] < c.sb[j])) continue;
            for (std::uint32_t up = z[j] + 1; up < c.count(j); ++up) {
              const double ratio = (c.t(j, z[j]) - c.t(j, up)) / std::max(c.k(j, up) - c.k(j, z[j]), 1.0);
              if (ratio <= best_ratio) continue;
              std::vector<std::uint32_t> w = z;
              w[j] = up;
              if (!fits(w)) continue;
              best_ratio = ratio;
              best_item = j;
              best_to = up;
            }
          }
          if (best_ratio <= 0) break;
          gain += c.t(best_item, z[best_item]) - c.t(best_item, best_to);
          z[best_item] = best_to;
        }
        if (gain > cost + 1e-12 * std::max(cost, 1e-300)) return z;
      }
      return y;
    };
    for (std::uint32_t i = 0; i < items; ++i) {
      CAPTURE(i);
      std::vector<std::uint32_t> y = x;
      dip::detail::exchange_search search(c, y);
      const bool moved = search.make_smaller(i);
      const std::vector<std::uint32_t> expected = scan(x, i);
      CHECK(moved == (expected != x));
      CHECK(y == expected);
      moves += moved;
      ++compared;
    }
  }
  CHECK(compared > 5000);
  CHECK(moves > 300);
}

// Two items on one point, cap 100 over base 0: keep both (60 + 60) does not fit; stepping one
// down costs 3 ms (to 40) or 5 ms (to 0). Optimum: 60 + 40 at 3 ms. The diagram two states wide
// finds it exactly (two items, at most three distinct states per layer, merged or not).
TEST_CASE("a tiny problem: the hand-computed optimum, proven") {
  using c = dip::strategy_candidate;
  dip::memory_problem pr;
  pr.cap = dip::mib(100);
  pr.base = {dip::bytes{}};
  for (int i = 0; i < 2; ++i) {
    pr.items.push_back({0,
                        1,
                        {c{memory_strategy::offload, 5_ms, dip::bytes{}},
                         c{memory_strategy::recompute, 3_ms, dip::mib(40)}, c{memory_strategy::keep, {}, dip::mib(60)}},
                        {}});
  }
  for (std::size_t width : {0u, 2u, 64u}) {
    CAPTURE(width);
    dip::memory_solver_options options;
    options.dd_width = width;
    const dip::memory_solution s = dip::solve_memory_problem(pr, options);
    CHECK(s.optimal);
    CHECK(nearly_equal(s.extra.base(), dip::milliseconds(3).base()));
    CHECK(s.lower_bound == s.extra);
    CHECK(s.peak == dip::mib(100));
  }
}

TEST_CASE("infeasible caps name the rank, the stage and the bytes") {
  // One rank, GPipe-like order of 3 microbatches on one chunk: F0 F1 F2 B0 B1 B2, 1 GB each,
  // recompute keeps nothing (the chain's head), offload keeps nothing: only the weights stay.
  const auto g = chain_graph({0}, 1, 3, {1_ms, 1_ms, 1_ms, 1_GB, dip::bytes{}});
  const dip::plan p = dip::plan_baseline("gpipe", g);
  dip::memory_choice_options options;
  options.weight_memory = {10_GB};
  options.memory_cap = 9_GB;
  try {
    dip::choose_memory_strategies(p, options);
    FAIL("no error");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::infeasible);
    CHECK(e.where() == "rank 0");
    CHECK(std::string(e.detail()).find("weights") != std::string::npos);
  }
  // Recompute and offload off: keep everything, 3 GB over 10 GB of weights.
  options.memory_cap = dip::gigabytes(12.5);
  options.model.allow_recompute = options.model.allow_offload = false;
  try {
    dip::choose_memory_strategies(p, options);
    FAIL("no error");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::infeasible);
    CHECK(e.where() == "rank 0");
    const std::string what = e.detail();
    CHECK(what.find("after F2@c0") != std::string::npos);
    CHECK(what.find("needs") != std::string::npos);
    CHECK(what.find(dip::to_string(13_GB)) != std::string::npos);
    CHECK(what.find(dip::to_string(options.memory_cap)) != std::string::npos);
  }
  // With strategies allowed the same cap fits: two of the three pairs must not keep.
  options.model = {};
  const dip::memory_choice choice = dip::choose_memory_strategies(p, options);
  CHECK(choice.ranks[0].optimal);
  CHECK(choice.ranks[0].peak_memory <= options.memory_cap);
  // Recompute costs F's 1 ms; offload (20 - 1) + (20 - 2) ms at 50 GB/s: recomputing one is cheapest.
  CHECK(nearly_equal(to_milliseconds(choice.ranks[0].extra_time), 1));
  // Bad arguments.
  options.memory_cap = dip::bytes{};
  CHECK_THROWS_AS(dip::choose_memory_strategies(p, options), dip::error);
  options.memory_cap = 100_GB;
  options.weight_memory = {1_GB, 2_GB};
  CHECK_THROWS_AS(dip::choose_memory_strategies(p, options), dip::error);
}

TEST_CASE("simulator and validator honour the strategies, and keep-only plans are unchanged") {
  // Interleaved 1F1B, 4 ranks x 2 chunks, 256 microbatches, split and not (512 pairs per rank): the chosen
  // strategies' simulated peaks equal the chooser's, the extra busy time is the chooser's, and
  // the makespan grows by at most the total extra time.
  for (bool split : {false, true}) {
    CAPTURE(split);
    std::vector<int> ranks_of;
    for (int c = 0; c < 8; ++c) ranks_of.push_back(c % 4);
    const auto g = chain_graph(ranks_of, 4, 256, {2_ms, 2_ms, 2_ms, 2_GB, dip::gigabytes(0.2)}, split);
    const dip::plan keep_plan = dip::plan_baseline("interleaved", g);
    dip::simulation_options so;
    so.weight_memory.assign(4, 20_GB);
    const dip::simulation_result keep_sim = dip::simulate(keep_plan, so);
    double keep_peak = 0;
    for (const auto& r : keep_sim.ranks) keep_peak = std::max(keep_peak, r.peak_memory.base());

    dip::memory_choice_options options;
    options.weight_memory = so.weight_memory;
    options.memory_cap = dip::bytes(20e9 + (keep_peak - 20e9) * 0.6);
    const auto t0 = std::chrono::steady_clock::now();
    const dip::memory_choice choice = dip::choose_memory_strategies(keep_plan, options);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("memory chooser on %s (4 ranks, %zu pairs each): %.2f ms, worst gap %.3f%%\n",
                split ? "interleaved, split backward" : "interleaved", choice.ranks[0].pairs, ms,
                100 * choice.worst_gap());
    CHECK(choice.worst_gap() <= 0.10);  // measured 2.5% (fused B) and 7.0% (split)

    dip::plan p = keep_plan;
    dip::apply_memory_choice(p, choice);
    CHECK_FALSE(dip::first_violation(p, {options.memory_cap, options.weight_memory}).has_value());
    CHECK(dip::first_violation(keep_plan, {options.memory_cap, options.weight_memory}).has_value());
    const dip::simulation_result sim = dip::simulate(p, so);
    double total_extra = 0;
    for (std::size_t r = 0; r < 4; ++r) {
      CHECK(sim.ranks[r].peak_memory == choice.ranks[r].peak_memory);
      CHECK(sim.ranks[r].peak_memory <= options.memory_cap);
      CHECK(nearly_equal(sim.ranks[r].busy.base(), keep_sim.ranks[r].busy.base() + choice.ranks[r].extra_time.base(),
                         1e-9));
      CHECK(nearly_equal(sim.ranks[r].strategy_time.base(), choice.ranks[r].extra_time.base(), 1e-9));
      CHECK(keep_sim.ranks[r].strategy_time == dip::duration{});
      total_extra += choice.ranks[r].extra_time.base();
    }
    CHECK(total_extra > 0);
    CHECK(sim.makespan >= keep_sim.makespan);
    CHECK(sim.makespan.base() <= keep_sim.makespan.base() + total_extra * (1 + 1e-9));
    CHECK(sim.bounds.classic() == keep_sim.bounds.classic());  // bounds stay the graph's

    // An all-keep choice reproduces the keep plan and its simulation exactly.
    dip::memory_choice all_keep = choice;
    std::fill(all_keep.strategy.begin(), all_keep.strategy.end(), memory_strategy::keep);
    dip::plan same = p;
    dip::apply_memory_choice(same, all_keep);
    CHECK(same.ranks == keep_plan.ranks);
    const dip::simulation_result again = dip::simulate(same, so);
    CHECK(again.makespan == keep_sim.makespan);
    for (std::size_t r = 0; r < 4; ++r) {
      CHECK(again.ranks[r].peak_memory == keep_sim.ranks[r].peak_memory);
      CHECK(again.ranks[r].busy == keep_sim.ranks[r].busy);
    }
  }
}

TEST_CASE("predicted peaks equal the simulator's for random strategies on random plans") {
  graph_generator gen(99);
  for (int round = 0; round < 500; ++round) {
    CAPTURE(round);
    const auto g = gen.make_graph();
    dip::plan p = dip::make_plan(g, dip_test::random_order(*g, gen.rng()));
    dip::memory_choice choice;
    choice.strategy.assign(g->size(), memory_strategy::keep);
    for (std::size_t id = 0; id < g->size(); ++id) {
      if (g->at(dip::stage_id::from_index(id)).kind != dip::stage_kind::forward) continue;
      const memory_strategy s = memory_strategy(gen.integer(0, 2));
      const dip::activation_pair pair = dip::pair_of(*g, dip::stage_id::from_index(id));
      choice.strategy[pair.forward.index()] = choice.strategy[pair.use.index()] =
          choice.strategy[pair.release.index()] = s;
    }
    dip::apply_memory_choice(p, choice);
    dip::simulation_options so;
    for (int r = 0; r < g->ranks(); ++r) so.weight_memory.push_back(dip::gib(gen.uniform(0, 4)));
    const dip::simulation_result sim = dip::simulate(p, so);
    const auto orders = dip::compute_orders(p);
    for (std::size_t r = 0; r < orders.size(); ++r) {
      CHECK(sim.ranks[r].peak_memory == dip::predicted_peak(*g, orders[r], so.weight_memory[r], choice.strategy));
      double extra = 0;
      for (dip::stage_id id : orders[r]) {
        if (g->at(id).kind == dip::stage_kind::forward) {
          extra += dip::strategy_cost_of(*g, id, choice.strategy[id.index()]).extra().base();
        }
      }
      CHECK(nearly_equal(sim.ranks[r].strategy_time.base(), extra, 1e-9));
    }
    // The validator's memory check uses the same totals: the highest peak fits, a hair less not.
    double highest = 0;
    for (const dip::rank_stats& r : sim.ranks) highest = std::max(highest, r.peak_memory.base());
    dip::validation_options vo{dip::bytes(highest), so.weight_memory};
    CHECK_FALSE(dip::first_violation(p, vo).has_value());
    vo.memory_cap = dip::bytes(highest * (1 - 1e-9));
    if (highest > 0) CHECK(dip::first_violation(p, vo).has_value());
  }
}

TEST_CASE("a strategy on a non-forward stage is an invalid plan") {
  const auto g = chain_graph({0}, 1, 1, {1_ms, 1_ms, 1_ms, 1_GB, dip::bytes{}});
  dip::plan p = dip::make_plan(g, {{dip::stage_id::from_index(0), dip::stage_id::from_index(1)}});
  p.ranks[0][1].strategy = memory_strategy::recompute;
  const auto v = dip::first_violation(p);
  REQUIRE(v.has_value());
  CHECK(*v == "rank 0 action 1: B0@c0 has memory strategy recompute; only forward stages take one");
  try {
    dip::simulate(p);
    FAIL("no error");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::invalid_plan);
    CHECK(e.where() == "rank 0 action 1");
  }
  // On the forward it is fine: recompute costs F's 1 ms at B, keeps nothing (the chain's head).
  p.ranks[0][1].strategy = memory_strategy::keep;
  p.ranks[0][0].strategy = memory_strategy::recompute;
  CHECK_FALSE(dip::first_violation(p, {dip::gigabytes(0.5), {}}).has_value());
  const dip::simulation_result sim = dip::simulate(p);
  CHECK(nearly_equal(to_milliseconds(sim.makespan), 4));
  CHECK(sim.ranks[0].peak_memory == dip::bytes{});
}

// The local searches ask the headroom tree what a plain array would answer: the least headroom over
// a range, and the first segment below a threshold, under random range additions.
TEST_CASE("the headroom tree answers like a plain array under thousands of random range additions") {
  std::mt19937_64 rng(0x7ee);
  for (int round = 0; round < 200; ++round) {
    CAPTURE(round);
    const std::size_t size = 1 + rng() % 70;
    std::vector<double> plain(size);
    for (double& v : plain) v = double(rng() % 200) - 50;
    dip::detail::headroom_tree tree(plain);
    REQUIRE(tree.size() == size);
    for (int op = 0; op < 60; ++op) {
      std::size_t from = rng() % (size + 1), to = rng() % (size + 1);
      if (from > to) std::swap(from, to);
      const double delta = double(rng() % 41) - 20;
      tree.add(from, to, delta);
      for (std::size_t s = from; s < to; ++s) plain[s] += delta;
      std::size_t a = rng() % (size + 1), b = rng() % (size + 1);
      if (a > b) std::swap(a, b);
      double least = std::numeric_limits<double>::infinity();
      for (std::size_t s = a; s < b; ++s) least = std::min(least, plain[s]);
      CHECK(tree.least(a, b) == least);
      const double threshold = double(rng() % 120) - 40;
      std::size_t first = b;
      for (std::size_t s = a; s < b && first == b; ++s) first = plain[s] < threshold ? s : b;
      CHECK(tree.first_below(a, b, threshold) == first);
      if (a < size) CHECK(tree.at(a) == plain[a]);
    }
  }
}

// Ranks are independent problems: solved on several threads, the choice is the one of a sequential
// run. A stopped solver (a planner's deadline) still returns a choice within the cap and a bound
// below it, and the bound stays below the full solver's choice.
TEST_CASE(
    "the chooser gives the same choice on any thread count, and a stopped solver stays feasible with a valid bound") {
  graph_generator gen(4242);
  int compared = 0;
  for (int round = 0; round < 200; ++round) {
    CAPTURE(round);
    const auto g = gen.make_graph();
    const auto order = dip_test::random_order(*g, gen.rng());
    dip::memory_choice_options options;
    double lo = 0, hi = 0;  // the busiest rank's smallest and keep-everything peaks
    for (std::size_t r = 0; r < order.size(); ++r) {
      std::vector<memory_strategy> smallest(g->size(), memory_strategy::keep);
      for (dip::stage_id id : order[r]) {
        if (g->at(id).kind != dip::stage_kind::forward) continue;
        const dip::activation_pair pair = dip::pair_of(*g, id);
        smallest[pair.forward.index()] = smallest[pair.use.index()] = smallest[pair.release.index()] =
            dip::candidates_for(*g, id).front().strategy;
      }
      lo = std::max(lo, dip::predicted_peak(*g, order[r], dip::bytes{}, smallest).base());
      hi = std::max(hi, dip::predicted_peak(*g, order[r], dip::bytes{}, {}).base());
    }
    if (!(hi > 0)) continue;
    options.memory_cap = dip::bytes(lo * (1 + 1e-7) + gen.uniform(0, 1) * (hi - lo));
    const dip::memory_choice one = dip::choose_memory_strategies(*g, order, options);
    options.threads = 4;
    const dip::memory_choice four = dip::choose_memory_strategies(*g, order, options);
    CHECK(four.strategy == one.strategy);
    CHECK(four.extra_time() == one.extra_time());
    ++compared;
  }
  CHECK(compared > 150);

  problem_generator problems{std::mt19937_64(99)};
  std::stop_source deadline;
  deadline.request_stop();
  dip::memory_solver_options stopped;
  stopped.stop = deadline.get_token();
  for (int round = 0; round < 100; ++round) {
    CAPTURE(round);
    const dip::memory_problem pr =
        problems.pipeline(std::size_t(40 + round * 7), 4 + round % 29, 0.1 + 0.8 * (round % 7) / 6.0);
    const dip::memory_solution full = dip::solve_memory_problem(pr);
    const dip::memory_solution cut = dip::solve_memory_problem(pr, stopped);
    CHECK(cut.peak <= pr.cap);
    CHECK(cut.lower_bound.base() <= cut.extra.base() * (1 + 1e-12));
    CHECK(cut.lower_bound.base() <= full.extra.base() * (1 + 1e-9));
    CHECK(cut.extra.base() >= full.lower_bound.base() * (1 - 1e-9));
    // Stopped, the solver does not build the components: it must give what each component,
    // built and stopped, would.
    const dip::detail::candidate_fronts fronts = dip::detail::nondominated_fronts(pr);
    const dip::detail::item_events events = dip::detail::index_item_events(pr, fronts);
    const double cap = dip::memory_cap_with_tolerance(pr.cap);
    dip::detail::binding_groups groups = dip::detail::group_binding_items(pr, events, cap);
    const auto components = dip::detail::build_components(pr, fronts, events, groups, cap);
    CHECK(cut.components == components.size());
    double lower = 0;
    bool optimal = true;
    for (std::size_t p = 0; p < pr.items.size(); ++p) {
      if (!groups.binding_item[p]) lower += pr.items[p].candidates[fronts.fastest(p)].extra.base();
    }
    for (const dip::detail::memory_component& c : components) {
      const dip::detail::component_result r = dip::detail::solve_component(c, stopped);
      for (std::size_t i = 0; i < c.size(); ++i) CHECK(cut.choice[c.item[i]] == c.origin[c.cand_begin[i] + r.x[i]]);
      lower += r.bound;
      optimal = optimal && r.optimal;
    }
    CHECK(cut.optimal == optimal);
    CHECK(cut.lower_bound.base() == doctest::Approx(std::min(lower, cut.extra.base())).epsilon(1e-12));
  }
}
