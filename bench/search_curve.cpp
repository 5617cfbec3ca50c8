// The segment search's quality against its time budget: VLM-L (PP 8, TP 8, H800), 32 packed
// OBELICS microbatches per batch, several batches, budgets from 10 ms to 10 s, 1 and 2 threads.
// For each batch and thread count the reference is the 10 s search; a row gives the best order's
// estimated iteration time over the reference's (mean and worst over the batches) and the
// rollouts; an order over the memory cap counts as none found. The target: after at most 1 s on 2 cores, within
// 1% of what a 10x longer search finds. Also writes the curve as CSV (for bench/plots).
//
//   build/bench/dip-search-curve [--batches 5] [--csv FILE]
// Times are wall-clock: run it on an otherwise idle machine.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "vlm_l_workload.hpp"

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/pass_search.hpp>
#include <dip/schedule/stage_graph.hpp>

int main(int argc, char** argv) {
  CLI::App app("quality of the DIP segment search against its time budget (VLM-L, 32 microbatches)");
  int batches = 5;
  std::string csv_path;
  std::vector<double> budgets{10, 30, 100, 300, 1000, 3000, 10000};
  std::vector<unsigned> thread_counts{1, 2};
  app.add_option("--batches", batches, "batches (seeds) to average over")->check(CLI::Range(1, 100));
  app.add_option("--budgets", budgets, "time budgets in ms; the largest is the reference");
  app.add_option("--threads", thread_counts, "thread counts");
  app.add_option("--csv", csv_path, "also write the curve as CSV");
  CLI11_PARSE(app, argc, argv);
  std::sort(budgets.begin(), budgets.end());

  dip_bench::vlm_l_batches source;

  // found[b][t][k]: makespan (ms) of batch b, thread count t, budget k; rollouts likewise.
  std::vector<std::vector<std::vector<double>>> found(static_cast<std::size_t>(batches)),
      rollouts(static_cast<std::size_t>(batches));
  std::vector<double> natural(static_cast<std::size_t>(batches));
  for (int b = 0; b < batches; ++b) {
    const dip_bench::search_workload w = source.next(32);
    const dip::stage_graph& graph = *w.graph;
    dip::pass_search_options search;
    search.interleave = w.interleave;
    search.seed = std::uint64_t(b) + 1;
    const dip::pass_index segments(graph);
    natural[std::size_t(b)] = dip::to_milliseconds(
        dip::interleave_stages(graph, segments, dip::default_pass_priority(segments), search.interleave)
            .estimated_makespan);
    for (unsigned threads : thread_counts) {
      search.threads = threads;
      std::vector<double> per_budget, per_rollouts;
      for (double budget : budgets) {
        search.time_budget_ms = budget;
        const dip::pass_search_result r = dip::search_pass_order(graph, search);
        // An order over the memory cap is no plan at all: infinitely slow here.
        per_budget.push_back(r.within_cap ? dip::to_milliseconds(r.makespan) : INFINITY);
        per_rollouts.push_back(double(r.rollouts));
        std::fprintf(stderr, "batch %d, %u thread(s), %6.0f ms: %.1f ms (%zu rollouts)\n", b, threads, budget,
                     per_budget.back(), r.rollouts);
      }
      found[std::size_t(b)].push_back(per_budget);
      rollouts[std::size_t(b)].push_back(per_rollouts);
    }
  }

  std::printf(
      "VLM-L, 32 OBELICS microbatches, %d batches; ratio = found / the %.0f ms search's, same batch and threads\n",
      batches, budgets.back());
  std::printf(
      "| threads | budget ms | within the cap | mean ratio | worst ratio | mean vs natural order | mean rollouts |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::ofstream csv;
  if (!csv_path.empty()) {
    csv.open(csv_path);
    csv << "threads,budget_ms,batch,makespan_ms,reference_ms,natural_ms,rollouts\n";
  }
  for (std::size_t t = 0; t < thread_counts.size(); ++t) {
    for (std::size_t k = 0; k < budgets.size(); ++k) {
      // Means over the batches where the budget found an order within the cap.
      double mean = 0, worst = 0, vs_natural = 0, mean_rollouts = 0;
      int feasible = 0;
      for (std::size_t b = 0; b < std::size_t(batches); ++b) {
        mean_rollouts += rollouts[b][t][k] / batches;
        if (!std::isfinite(found[b][t][k])) continue;
        ++feasible;
        const double ratio = found[b][t][k] / found[b][t].back();
        mean += ratio;
        worst = std::max(worst, ratio);
        vs_natural += found[b][t][k] / natural[b];
        if (csv.is_open()) {
          csv << thread_counts[t] << ',' << budgets[k] << ',' << b << ',' << found[b][t][k] << ',' << found[b][t].back()
              << ',' << natural[b] << ',' << rollouts[b][t][k] << '\n';
        }
      }
      if (feasible > 0) {
        mean /= feasible;
        vs_natural /= feasible;
      }
      std::printf("| %u | %.0f | %d of %d | %.4f | %.4f | %.4f | %.0f |\n", thread_counts[t], budgets[k], feasible,
                  batches, mean, worst, vs_natural, mean_rollouts);
    }
  }
  return EXIT_SUCCESS;
}
