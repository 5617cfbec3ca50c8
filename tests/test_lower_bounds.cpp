// Lower bounds (dip/sim/lower_bounds.hpp): closed forms on uniform pipelines, the memory LP on
// hand-made pairs, every bound against brute-force optima of small graphs (memory free and
// under a cap, with and without recompute and offload), and thousands of random plans whose
// simulated makespan no bound may exceed.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include <dip/core/error.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/stage_graph.hpp>
#include <dip/schedule/strategy_cost.hpp>
#include <dip/sim/lower_bounds.hpp>
#include <dip/sim/simulator.hpp>

#include "plan_test_support.hpp"

namespace {

using dip::memory_strategy;
using dip_test::chain_graph;

constexpr double inf = std::numeric_limits<double>::infinity();

// --- brute force: the best semi-active schedule over every linear extension ------------------
// Every schedule's per-rank orders come from some linear extension, and starting each stage as
// early as its rank and inputs allow (semi-active) is never worse; a rank's memory depends only
// on its order. Depth-first, pruned by the best makespan found and by the budgets.
class schedule_enumeration {
 public:
  schedule_enumeration(const dip::stage_graph& g, std::vector<double> time, std::vector<double> delta,
                       std::optional<std::vector<double>> budget)
      : g_(g), time_(std::move(time)), delta_(std::move(delta)), budget_(std::move(budget)) {}

  double optimum() {
    const std::size_t n = g_.size(), ranks = std::size_t(g_.ranks());
    waiting_.assign(n, 0);
    for (std::size_t s = 0; s < n; ++s) waiting_[s] = g_.in_edges(dip::stage_id::from_index(s)).size();
    end_.assign(n, 0);
    done_.assign(n, 0);
    free_.assign(ranks, 0);
    memory_.assign(ranks, 0);
    best_ = inf;
    search(0, 0);
    return best_;
  }

 private:
  void search(std::size_t placed, double makespan) {
    if (makespan >= best_) return;
    if (placed == g_.size()) {
      best_ = makespan;
      return;
    }
    for (std::size_t s = 0; s < g_.size(); ++s) {
      if (done_[s] || waiting_[s] != 0) continue;
      const dip::stage_id id = dip::stage_id::from_index(s);
      const std::size_t r = g_.at(id).rank.index();
      const double memory = memory_[r] + delta_[s];
      if (budget_ && memory > (*budget_)[r] * (1 + 1e-12) + 1e-9) continue;
      double start = free_[r];
      for (std::uint32_t e : g_.in_edges(id)) start = std::max(start, end_[g_.edges()[e].from.index()]);
      const double saved_free = free_[r], saved_memory = memory_[r];
      end_[s] = start + time_[s];
      free_[r] = end_[s];
      memory_[r] = memory;
      done_[s] = 1;
      for (std::uint32_t e : g_.out_edges(id)) --waiting_[g_.edges()[e].to.index()];
      search(placed + 1, std::max(makespan, end_[s]));
      for (std::uint32_t e : g_.out_edges(id)) ++waiting_[g_.edges()[e].to.index()];
      done_[s] = 0;
      free_[r] = saved_free;
      memory_[r] = saved_memory;
    }
  }

  const dip::stage_graph& g_;
  std::vector<double> time_, delta_;
  std::optional<std::vector<double>> budget_;
  std::vector<std::size_t> waiting_;
  std::vector<double> end_, free_, memory_;
  std::vector<std::uint8_t> done_;
  double best_ = inf;
};

// The least makespan of any schedule of `g` whose activations stay within `budget` per rank
// (nullopt: memory free), each pair running one of `allowed` strategies (priced by the
// simulator's formulas); infinity when none fits.
double optimum(const dip::stage_graph& g, const std::vector<memory_strategy>& allowed,
               const std::optional<std::vector<double>>& budget) {
  std::vector<dip::stage_id> forwards;
  for (std::size_t s = 0; s < g.size(); ++s) {
    if (g.stages()[s].kind == dip::stage_kind::forward) forwards.push_back(dip::stage_id::from_index(s));
  }
  std::vector<std::size_t> pick(forwards.size(), 0);
  double best = inf;
  while (true) {
    std::vector<memory_strategy> table(g.size(), memory_strategy::keep);
    for (std::size_t p = 0; p < forwards.size(); ++p) {
      const dip::activation_pair pair = dip::pair_of(g, forwards[p]);
      table[pair.forward.index()] = table[pair.use.index()] = table[pair.release.index()] = allowed[pick[p]];
    }
    std::vector<double> time(g.size()), delta(g.size());
    for (std::size_t s = 0; s < g.size(); ++s) {
      const dip::stage_id id = dip::stage_id::from_index(s);
      time[s] = dip::strategy_time(g, id, table[s]).base();
      delta[s] = dip::strategy_memory_delta(g, id, table[s]).base();
    }
    best = std::min(best, schedule_enumeration(g, time, delta, budget).optimum());
    std::size_t p = 0;
    while (p < pick.size() && ++pick[p] == allowed.size()) pick[p++] = 0;
    if (p == pick.size()) break;
  }
  return best;
}

dip::memory_strategy_model only_keep() {
  dip::memory_strategy_model m;
  m.allow_recompute = m.allow_offload = false;
  return m;
}

std::vector<dip::bytes> as_bytes(const std::vector<double>& v) {
  std::vector<dip::bytes> out;
  for (double b : v) out.push_back(dip::bytes(b));
  return out;
}

}  // namespace

TEST_CASE("uniform pipeline: the rank window is 1F1B's (m + p - 1)(F + B), which 1F1B attains") {
  const double f = 2e-3, bi = 1.5e-3, bw = 1e-3;
  for (int p = 1; p <= 4; ++p) {
    for (std::size_t m = 1; m <= 6; ++m) {
      std::vector<int> ranks(static_cast<std::size_t>(p));
      for (int r = 0; r < p; ++r) ranks[std::size_t(r)] = r;
      const auto g = chain_graph(ranks, p, m, {dip::seconds(f), dip::seconds(bi), dip::seconds(bw), dip::mib(1), {}});
      const dip::lower_bounds b = dip::memory_free_lower_bounds(*g);
      CAPTURE(p);
      CAPTURE(m);
      CHECK(b.rank_window.base() == doctest::Approx(double(m + std::size_t(p) - 1) * (f + bi + bw)));
      CHECK(b.classic().base() == doctest::Approx(double(std::max<std::size_t>(m, std::size_t(p))) * (f + bi + bw)));
      CHECK(b.critical_path.base() == doctest::Approx(g->critical_path().base()));
      const dip::simulation_result sim = dip::simulate(dip::plan_baseline("1f1b", g));
      CHECK(sim.makespan.base() == doctest::Approx(b.memory_free().base()));
    }
  }
}

TEST_CASE("memory LP: keep-only memory-time over the budget, then the cheapest savings first") {
  using dip::detail::pair_option;
  // Four pairs, each holding 3 MiB.ms when kept or nothing for 1 ms of recompute.
  const std::vector<std::vector<pair_option>> pairs(4, {{0, 3}, {1, 0}});
  CHECK(dip::detail::memory_capped_rank_bound(pairs, 8, 100) == doctest::Approx(8));  // memory free
  // Budget 1: 12 - 3 s <= 8 + s at s = 1, so T = 9.
  CHECK(dip::detail::memory_capped_rank_bound(pairs, 8, 1) == doctest::Approx(9));
  // Keep only: T >= 12 / 1.
  const std::vector<std::vector<pair_option>> kept(4, {{0, 3}});
  CHECK(dip::detail::memory_capped_rank_bound(kept, 8, 1) == doctest::Approx(12));
  // A dominated option (more time, more memory) and a point above the hull change nothing:
  // hull (0,3)-(1,0); (0.5, 2) lies above the segment (at 0.5 it is 1.5).
  const std::vector<std::vector<pair_option>> noisy(4, {{0, 3}, {1, 0}, {2, 1}, {0.5, 2}});
  CHECK(dip::detail::memory_capped_rank_bound(noisy, 8, 1) == doctest::Approx(9));
  // Nothing fits a zero budget when every option holds something.
  const std::vector<std::vector<pair_option>> always(1, {{0, 3}, {1, 1}});
  CHECK(dip::detail::memory_capped_rank_bound(always, 8, 0) == inf);
}

TEST_CASE("memory binds: one activation per rank serialises rank 0's round trip") {
  // Two ranks, F = B = 1 ms, 1 MiB kept per pair, a budget of 1 MiB each, m = 4: rank 0 holds
  // each pair for F1 + B1 + B0 = 3 ms, so T >= 4 x 3 ms; memory free the bound is (m + 1) 2 ms.
  const auto g = chain_graph({0, 1}, 2, 4,
                             {dip::milliseconds(1), dip::milliseconds(0.5), dip::milliseconds(0.5), dip::mib(1), {}});
  const std::vector<dip::bytes> budget{dip::mib(1), dip::mib(1)};
  const dip::lower_bounds keep = dip::capped_lower_bounds(*g, budget, only_keep());
  CHECK(keep.rank_window.base() == doctest::Approx(10e-3));
  CHECK(keep.memory.base() == doctest::Approx(12e-3));
  CHECK(keep.under_cap().base() == doctest::Approx(12e-3));
  // The true optimum runs each microbatch alone: 16 ms.
  CHECK(optimum(*g, {memory_strategy::keep}, std::vector<double>{dip::mib(1).base(), dip::mib(1).base()}) ==
        doctest::Approx(16e-3));
  // Recompute keeps nothing of rank 0's first chunk (its input is the batch) for 1 ms each:
  // rank 0 needs T >= 9 ms, rank 1 stays at its window h + work + t = 1 + 8 + 1 ms.
  dip::memory_strategy_model recompute = only_keep();
  recompute.allow_recompute = true;
  CHECK(dip::capped_lower_bounds(*g, budget, recompute).memory.base() == doctest::Approx(10e-3));
  // Memory to spare: the memory bound is the rank's own window.
  const std::vector<dip::bytes> roomy{dip::mib(100), dip::mib(100)};
  CHECK(dip::capped_lower_bounds(*g, roomy, only_keep()).under_cap().base() == doctest::Approx(10e-3));
}

TEST_CASE("bad input: budgets must be one per rank") {
  const auto g = chain_graph({0, 1}, 2, 2, {dip::milliseconds(1), dip::milliseconds(1), {}, dip::mib(1), {}});
  const std::vector<dip::bytes> one{dip::mib(1)};
  CHECK_THROWS_WITH_AS(dip::capped_lower_bounds(*g, one), doctest::Contains("one activation budget per rank"),
                       dip::error);
}

TEST_CASE("no bound exceeds the brute-force optimum of small graphs, memory free or capped") {
  dip_test::graph_generator gen(20261206);
  const std::vector<memory_strategy> all{memory_strategy::keep, memory_strategy::recompute, memory_strategy::offload};
  int free_cases = 0, capped_cases = 0, tight_free = 0, binding = 0;
  while (capped_cases < 60) {
    const auto g = gen.make_graph();
    std::size_t forwards = 0;
    for (const dip::stage& s : g->stages()) forwards += s.kind == dip::stage_kind::forward;
    if (g->size() > 10 || forwards > 4) continue;
    const dip::lower_bounds free = dip::memory_free_lower_bounds(*g);
    const double best_free = optimum(*g, {memory_strategy::keep}, std::nullopt);
    CHECK(free.memory_free().base() <= best_free * (1 + 1e-9));
    CHECK(free.rank_window.base() >= free.busiest_rank.base() * (1 - 1e-12));
    tight_free += free.memory_free().base() >= best_free * (1 - 1e-9);
    ++free_cases;

    // A budget per rank between none and everything the rank's forwards keep.
    std::vector<double> budget(std::size_t(g->ranks()), 0.0);
    for (const dip::stage& s : g->stages()) {
      if (s.kind == dip::stage_kind::forward) budget[s.rank.index()] += s.memory_delta.base();
    }
    for (double& b : budget) b *= gen.uniform(0.2, 1.0);
    const bool strategies = gen.coin();
    const dip::memory_strategy_model model = strategies ? dip::memory_strategy_model{} : only_keep();
    const double best = optimum(*g, strategies ? all : std::vector<memory_strategy>{memory_strategy::keep}, budget);
    const dip::lower_bounds capped = dip::capped_lower_bounds(*g, as_bytes(budget), model);
    CAPTURE(g->size());
    CAPTURE(strategies);
    CHECK(capped.memory_free().base() == doctest::Approx(free.memory_free().base()));
    if (best == inf) continue;  // nothing fits: any bound is valid
    CHECK(capped.under_cap().base() <= best * (1 + 1e-9));
    binding += capped.memory.base() > capped.memory_free().base() * (1 + 1e-9);
    ++capped_cases;
  }
  MESSAGE(free_cases << " graphs: the memory-free bound is the optimum on " << tight_free << "; under a cap the "
                     << "memory bound is above it on " << binding << " of " << capped_cases);
  CHECK(binding > 0);  // the cases exercise the memory bound, not only the window
}

TEST_CASE("random plans: no simulated makespan is below a bound, capped at the plan's own peaks") {
  dip_test::graph_generator gen(7);
  const std::vector<memory_strategy> all{memory_strategy::keep, memory_strategy::recompute, memory_strategy::offload};
  for (int trial = 0; trial < 2000; ++trial) {
    const auto g = gen.make_graph();
    dip::plan p = dip::make_plan(g, dip_test::random_order(*g, gen.rng()));
    for (auto& list : p.ranks) {
      for (dip::action& a : list) {
        if (a.kind == dip::action_kind::compute && g->at(a.stage).kind == dip::stage_kind::forward && gen.coin(0.4)) {
          a.strategy = all[std::size_t(gen.integer(0, 2))];
        }
      }
    }
    dip::simulation_options o;
    if (gen.coin()) o.comm.latency = dip::milliseconds(gen.uniform(0, 1));
    if (gen.coin()) o.comm.link = dip::gigabytes_per_second(gen.uniform(1, 100));
    const dip::simulation_result sim = dip::simulate(p, o);
    std::vector<dip::bytes> budget;
    for (const dip::rank_stats& r : sim.ranks) budget.push_back(r.peak_memory);
    const dip::lower_bounds b = dip::capped_lower_bounds(*g, budget);
    CAPTURE(trial);
    CHECK(sim.makespan.base() >= b.under_cap().base() * (1 - 1e-9));
    CHECK(b.under_cap() >= b.memory_free());
    CHECK(b.memory_free() >= b.classic());
    CHECK(b.busiest_rank.base() == doctest::Approx(sim.bounds.busiest_rank.base()));
    CHECK(b.critical_path.base() == doctest::Approx(sim.bounds.critical_path.base()));
  }
}
