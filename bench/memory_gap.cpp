// dip-memory-gap: how far phase 3's memory-strategy choices are from the optimum, measured
// against an exact solver. The chooser's own proven bound is weak on large ranks (its LP and
// Lagrangian relaxations sit 2-24% under the optimum), so the gap it can certify is not the gap
// it has. Here COIN-OR CBC's branch and cut (Debian: coinor-libcbc-dev) solves the same problems
// as 0/1 programs, to proven optimality where it can within a time limit, and otherwise gives a
// proven lower bound: the table gives the chooser's extra time over the best bound, a gap that
// holds for certain and is the exact excess wherever CBC proved the optimum.
//
// Instances:
//  - the planner's own: for each preset and data stream, batches planned by phase 2 at the
//    looser caps the planner tries (1.25x, 1.5x, 2x the activation budget, and none), then each
//    rank's problem at the real cap (memory_problem_for_rank), as plan_dip's
//    fit_memory poses it; ranks that already fit are skipped (nothing to choose);
//  - synthetic pipeline-like ranks (memory_instances.hpp) of 100 to 1000 pairs.
// Two chooser settings: the planner's (no decision diagram) and the library default.
//
//   build/bench/dip-memory-gap [--quick] [--time-limit-s 60] [--csv FILE] [--fail-above-pct 5]
#include <coin/Cbc_C_Interface.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "memory_instances.hpp"
#include "preset_workload.hpp"

#include <dip/schedule/dual_queue.hpp>
#include <dip/schedule/memory_chooser.hpp>
#include <dip/schedule/memory_solver.hpp>
#include <dip/schedule/plan.hpp>

namespace {

struct instance {
  std::string family;  // e.g. "vlm-s obelics" or "synthetic 300"
  dip::memory_problem problem;
};

// Everything that defines a problem, as text: equal problems have equal signatures.
std::string signature(const dip::memory_problem& pr) {
  std::string s = std::to_string(pr.cap.base());
  for (const dip::bytes& b : pr.base) s += ',' + std::to_string(b.base());
  for (const dip::memory_item& item : pr.items) {
    s += ';' + std::to_string(item.first) + '-' + std::to_string(item.last);
    for (const dip::strategy_candidate& c : item.candidates) {
      s += ':' + std::to_string(c.kept.base()) + '/' + std::to_string(dip::to_milliseconds(c.extra));
    }
  }
  return s;
}

// The planner's phase-3 problems for `batches` batches of `microbatches` of preset x data.
std::vector<instance> planner_instances(const std::string& preset, const std::string& data, int batches,
                                        std::size_t microbatches) {
  std::vector<instance> out;
  std::set<std::string> seen;
  dip_bench::preset_batches source(preset, data);
  const dip::bytes cap = source.gpu().memory;
  for (int b = 0; b < batches; ++b) {
    const dip_bench::search_workload w = source.next(microbatches);
    const dip::pass_index segments(*w.graph);
    const std::vector<std::uint32_t> natural = dip::default_pass_priority(segments);
    for (double factor : {1.25, 1.5, 2.0, 0.0}) {
      dip::interleave_options loose = w.interleave;
      for (std::size_t r = 0; r < loose.memory_cap.size(); ++r) {
        const dip::bytes weights = w.interleave.weight_memory[r];
        loose.memory_cap[r] = weights + (cap - weights) * factor;
      }
      if (factor == 0.0) loose.memory_cap.clear();
      const dip::plan p = dip::make_plan(w.graph, dip::interleave_stages(*w.graph, segments, natural, loose).order);
      const std::vector<std::vector<dip::stage_id>> orders = dip::compute_orders(p);
      for (std::size_t r = 0; r < orders.size(); ++r) {
        dip::memory_problem problem =
            dip::memory_problem_for_rank(*w.graph, r, orders[r], w.interleave.weight_memory[r], cap);
        if (problem.items.empty() || dip::first_infeasible_point(problem)) continue;
        if (dip::solve_memory_problem(problem).extra <= dip::duration{}) continue;  // fits as it is
        if (!seen.insert(signature(problem)).second) continue;                      // several caps can give one order
        out.push_back({preset + " " + data, std::move(problem)});
      }
    }
  }
  return out;
}

struct exact_result {
  bool optimal = false;  // CBC proved it
  bool found = false;    // CBC has a feasible choice (its incumbent)
  double extra_ms = 0;   // the incumbent's extra time
  double bound_ms = 0;   // CBC's proven lower bound (the optimum when optimal)
  double seconds = 0;
};

// The problem as a 0/1 program: x[i][j] = item i takes candidate j; one candidate per item;
// at every point where the largest candidates could exceed the cap, the kept bytes of the items
// alive there fit in cap - base. Bytes in GiB and times in ms keep the coefficients near 1.
exact_result solve_exactly(const dip::memory_problem& pr, double time_limit_s) {
  Cbc_Model* model = Cbc_newModel();
  Cbc_setLogLevel(model, 0);
  std::vector<int> first_column(pr.items.size());
  int columns = 0;
  for (std::size_t i = 0; i < pr.items.size(); ++i) {
    first_column[i] = columns;
    for (const dip::strategy_candidate& candidate : pr.items[i].candidates) {
      Cbc_addCol(model, "", 0.0, 1.0, dip::to_milliseconds(candidate.extra), 1, 0, nullptr, nullptr);
      ++columns;
    }
  }
  std::vector<int> cols;
  std::vector<double> coefs;
  for (std::size_t i = 0; i < pr.items.size(); ++i) {
    cols.clear();
    coefs.clear();
    for (std::size_t j = 0; j < pr.items[i].candidates.size(); ++j) {
      cols.push_back(first_column[i] + int(j));
      coefs.push_back(1.0);
    }
    Cbc_addRow(model, "", int(cols.size()), cols.data(), coefs.data(), 'E', 1.0);
  }
  constexpr double gib = 1024.0 * 1024.0 * 1024.0;
  for (std::size_t point = 0; point < pr.base.size(); ++point) {
    cols.clear();
    coefs.clear();
    double largest = 0;
    for (std::size_t i = 0; i < pr.items.size(); ++i) {
      const dip::memory_item& item = pr.items[i];
      if (point < item.first || point >= item.last) continue;
      for (std::size_t j = 0; j < item.candidates.size(); ++j) {
        cols.push_back(first_column[i] + int(j));
        coefs.push_back(item.candidates[j].kept.base() / gib);
      }
      largest += item.candidates.back().kept.base() / gib;
    }
    const double room = (pr.cap - pr.base[point]).base() / gib;
    if (cols.empty() || largest <= room) continue;  // cannot bind
    Cbc_addRow(model, "", int(cols.size()), cols.data(), coefs.data(), 'L', room);
  }
  Cbc_setMaximumSeconds(model, time_limit_s);
  Cbc_setAllowableFractionGap(model, 1e-7);
  Cbc_setAllowableGap(model, 1e-6);
  const auto start = std::chrono::steady_clock::now();
  Cbc_solve(model);
  exact_result result;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.optimal = Cbc_isProvenOptimal(model) != 0;
  result.found = Cbc_bestSolution(model) != nullptr;
  if (result.found) result.extra_ms = Cbc_getObjValue(model);
  result.bound_ms = result.optimal ? result.extra_ms : Cbc_getBestPossibleObjValue(model);
  Cbc_deleteModel(model);
  return result;
}

struct measured {
  double extra_ms = 0, bound_ms = 0, ms = 0;
};

measured run_chooser(const dip::memory_problem& pr, const dip::memory_solver_options& options) {
  const auto start = std::chrono::steady_clock::now();
  const dip::memory_solution s = dip::solve_memory_problem(pr, options);
  measured m;
  m.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  m.extra_ms = dip::to_milliseconds(s.extra);
  m.bound_ms = dip::to_milliseconds(s.lower_bound);
  return m;
}

// Relative excess of `ms` over the optimum; 0 over a zero optimum only when equal.
double over(double ms, double optimum) {
  if (optimum <= 0) return ms <= 1e-9 ? 0.0 : INFINITY;
  return std::max(0.0, ms / optimum - 1.0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("phase 3's memory-strategy choices against an exact 0/1 solver (CBC)");
  bool quick = false;
  double time_limit_s = 60;
  int batches = 2;
  std::string csv_path;
  app.add_flag("--quick", quick, "fewer and smaller instances (a smoke run)");
  app.add_option("--time-limit-s", time_limit_s, "CBC's time limit per instance")->check(CLI::PositiveNumber);
  app.add_option("--batches", batches, "batches per preset and data stream")->check(CLI::Range(1, 100));
  app.add_option("--csv", csv_path, "also write one row per instance as CSV");
  double fail_above_pct = INFINITY;
  app.add_option("--fail-above-pct", fail_above_pct, "exit 1 when a choice's gap exceeds this (the issue's target: 5)");
  CLI11_PARSE(app, argc, argv);

  std::vector<instance> all;
  const std::vector<std::pair<std::string, std::string>> streams =
      quick ? std::vector<std::pair<std::string, std::string>>{{"vlm-s", "obelics"}}
            : std::vector<std::pair<std::string, std::string>>{
                  {"vlm-s", "obelics"}, {"vlm-s", "laion"}, {"vlm-l", "obelics"}, {"t2v-s", "video"}};
  for (const auto& [preset, data] : streams) {
    std::vector<instance> more = planner_instances(preset, data, quick ? 1 : batches, 16);
    std::move(more.begin(), more.end(), std::back_inserter(all));
  }
  const std::vector<std::size_t> sizes = quick ? std::vector<std::size_t>{100}
                                               : std::vector<std::size_t>{100, 300, 1000};
  for (std::size_t pairs : sizes) {
    for (int k = 0; k < (quick ? 2 : 6); ++k) {
      const int window = k % 2 == 0 ? 8 : 32;
      const double tightness = k / 2 == 0 ? 0.2 : (k / 2 == 1 ? 0.5 : 0.8);
      all.push_back({"synthetic " + std::to_string(pairs),
                     dip_bench::pipeline_rank(pairs, window, tightness, 7000 + pairs + std::size_t(k))});
    }
  }

  dip::memory_solver_options planner_setting;  // as dip_planner_options prices candidates
  planner_setting.dd_width = 0;
  const dip::memory_solver_options default_setting;

  std::ofstream csv;
  if (!csv_path.empty()) {
    csv.open(csv_path);
    csv << "family,pairs,cbc_optimal,cbc_best_ms,cbc_bound_ms,cbc_s,planner_ms,planner_time_ms,default_ms,"
           "default_bound_ms,default_time_ms\n";
  }
  // Per family: the excess of each setting's choice over the best proven lower bound (CBC's or
  // the chooser's own), which is the exact excess over the optimum where CBC proved it.
  struct family_stats {
    std::string name;
    int instances = 0, solved = 0;
    double pairs = 0, sum_planner = 0, worst_planner = 0, sum_default = 0, worst_default = 0, worst_own_bound = 0;
    double chooser_ms = 0, exact_s = 0;
  };
  std::vector<family_stats> families;
  std::fprintf(stderr, "%zu instances\n", all.size());
  for (std::size_t n = 0; n < all.size(); ++n) {
    const instance& in = all[n];
    const measured planner = run_chooser(in.problem, planner_setting);
    const measured dflt = run_chooser(in.problem, default_setting);
    const exact_result exact = solve_exactly(in.problem, time_limit_s);
    if (families.empty() || families.back().name != in.family) families.push_back({in.family});
    family_stats& f = families.back();
    ++f.instances;
    f.solved += exact.optimal ? 1 : 0;
    f.pairs += double(in.problem.items.size());
    f.chooser_ms = std::max({f.chooser_ms, planner.ms, dflt.ms});
    f.exact_s = std::max(f.exact_s, exact.seconds);
    // CBC's tolerances may land its optimum a hair above our choice: the bound never exceeds
    // the best choice known.
    const double bound = std::min({std::max(exact.bound_ms, dflt.bound_ms), planner.extra_ms, dflt.extra_ms,
                                   exact.found ? exact.extra_ms : INFINITY});
    f.sum_planner += over(planner.extra_ms, bound);
    f.worst_planner = std::max(f.worst_planner, over(planner.extra_ms, bound));
    f.sum_default += over(dflt.extra_ms, bound);
    f.worst_default = std::max(f.worst_default, over(dflt.extra_ms, bound));
    f.worst_own_bound = std::max(f.worst_own_bound, over(dflt.extra_ms, dflt.bound_ms));
    if (csv.is_open()) {
      csv << '"' << in.family << "\"," << in.problem.items.size() << ',' << (exact.optimal ? 1 : 0) << ','
          << (exact.found ? exact.extra_ms : NAN) << ',' << exact.bound_ms << ',' << exact.seconds << ','
          << planner.extra_ms << ',' << planner.ms << ',' << dflt.extra_ms << ',' << dflt.bound_ms << ',' << dflt.ms
          << '\n';
    }
    std::fprintf(stderr, "\r%zu/%zu", n + 1, all.size());
  }
  std::fprintf(stderr, "\n");

  std::printf("| instances | count | mean pairs | CBC proved optimal | planner's choice: gap, mean / worst | "
              "default choice: gap, mean / worst | default's own proven gap, worst | slowest choice | "
              "slowest CBC |\n|---|---|---|---|---|---|---|---|---|\n");
  int solved = 0, count = 0;
  double worst_planner = 0, worst_default = 0;
  for (const family_stats& f : families) {
    std::printf("| %s | %d | %.0f | %d | %.2f%% / %.2f%% | %.2f%% / %.2f%% | %.0f%% | %.1f ms | %.1f s |\n",
                f.name.c_str(), f.instances, f.pairs / f.instances, f.solved, 100 * f.sum_planner / f.instances,
                100 * f.worst_planner, 100 * f.sum_default / f.instances, 100 * f.worst_default,
                100 * f.worst_own_bound, f.chooser_ms, f.exact_s);
    solved += f.solved;
    count += f.instances;
    worst_planner = std::max(worst_planner, f.worst_planner);
    worst_default = std::max(worst_default, f.worst_default);
  }
  std::printf("\nGap: extra time over the best proven lower bound (CBC's, time limit %.0f s, or the chooser's own); "
              "the exact excess over the optimum on the %d of %d instances CBC solved. Worst gap of the planner's "
              "choice %.2f%%, of the default choice %.2f%%.\n",
              time_limit_s, solved, count, 100 * worst_planner, 100 * worst_default);
  if (100 * std::max(worst_planner, worst_default) > fail_above_pct) {
    std::fprintf(stderr, "dip-memory-gap: a gap exceeds %.2f%%\n", fail_above_pct);
    return 1;
  }
  return 0;
}
