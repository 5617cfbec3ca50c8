// How soon a deadline frees a planning worker: dip's asynchronous planner (one worker) on the
// paper's largest VLM configuration (bench/models/vit22b-gpt175b.json at PP 16, TP 8; 64 OBELICS
// microbatches), with get(i, deadline) t ms after submit. Two modes:
//   search  an unlimited search budget: the deadline lands in phase 1;
//   phase3  a two-rollout search: the deadline lands in phases 2 and 3 (the memory strategies at
//           several caps), where planning spends its time.
// Per mode and t, median and worst over the repeats: how late get() returned after its deadline
// (the target: 10 ms), and how long after the deadline the worker started the next
// batch's search (the target: 50 ms).
// --breakdown also times the parts of the quick fallback, the plan a deadline at submit waits
// for (static-dip's order under 1F1B's caps, phase 3 stopped at once, validation), made
// --repeats times in one process: median and 10th percentile of each.
//
//   build/bench/dip-cancel-latency --model bench/models/vit22b-gpt175b.json [--repeats 3] [--json]
//   build/bench/dip-cancel-latency --breakdown --repeats 41 --stop-after 0 10
// Times are wall-clock: run it on an otherwise idle machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include <dip/batch/source.hpp>
#include <dip/io/model_json.hpp>
#include <dip/planner/async_planner.hpp>
#include <dip/planner/dip_async.hpp>
#include <dip/planner/dip_planner.hpp>
#include <dip/planner/planner.hpp>
#include <dip/schedule/validate.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct latency {
  double get_late_ms = 0;     // get()'s return after its deadline
  double worker_free_ms = 0;  // the next batch's search start after the deadline
};

// Submits `graph` to a one-worker asynchronous planner, gets it `after_ms` later, then submits a
// batch whose search only notes when it starts.
latency measure(const std::shared_ptr<const dip::stage_graph>& graph, const dip::dip_planner_options& options,
                const dip::plan& placeholder, double after_ms) {
  dip::async_planner<dip::plan> planner({.workers = 1, .max_ahead = 2}, nullptr, nullptr);
  dip::submit_dip_batch(planner, 0, graph, options);
  const clock_type::time_point deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                                                  std::chrono::duration<double, std::milli>(after_ms));
  const dip::delivered_plan<dip::plan> delivered = planner.get(0, deadline);  // freed after the clock is read
  latency result;
  result.get_late_ms = std::max(0.0, ms_between(deadline, clock_type::now()));
  clock_type::time_point started{};
  planner.submit(
      1,
      [&](std::size_t, dip::planning_context<dip::plan>& ctx) {
        started = clock_type::now();
        ctx.offer(placeholder, 0.0);
      },
      [&](std::size_t) { return placeholder; });
  planner.get(1);
  result.worker_free_ms = std::max(0.0, ms_between(deadline, started));
  return result;
}

// Median and 10th percentile of `ms`.
std::pair<double, double> median_and_p10(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms[ms.size() / 10]};
}

// Times the quick fallback's parts (dip_async.hpp: static_dip_fallback with phase 3 stopped at
// once) `repeats` times and prints each part's median / 10th percentile.
void print_quick_plan_breakdown(const std::shared_ptr<const dip::stage_graph>& graph,
                                const dip::dip_planner_options& options, int repeats) {
  const dip::dip_planner_options stopped = dip::detail::stopped_at_once(options);
  std::vector<double> order_ms, fit_ms, validate_ms, total_ms;
  for (int r = 0; r < repeats; ++r) {
    const clock_type::time_point t0 = clock_type::now();
    dip::plan p = dip::detail::static_dip_unfitted(graph, stopped);
    const clock_type::time_point t1 = clock_type::now();
    if (stopped.memory_cap) {
      dip::fit_memory(p, *stopped.memory_cap, stopped.weight_memory, stopped.strategy_model,
                      dip::memory_solver_options_of(stopped), stopped.threads);
    }
    const clock_type::time_point t2 = clock_type::now();
    dip::validate(p, dip::validation_options_of(stopped));
    const clock_type::time_point t3 = clock_type::now();
    order_ms.push_back(ms_between(t0, t1));
    fit_ms.push_back(ms_between(t1, t2));
    validate_ms.push_back(ms_between(t2, t3));
    total_ms.push_back(ms_between(t0, t3));
  }
  std::printf("quick fallback, %d runs (median / 10th percentile):\n", repeats);
  const std::pair<const char*, const std::vector<double>*> parts[] = {{"order (interleaving, plan)", &order_ms},
                                                                      {"phase 3 stopped at once", &fit_ms},
                                                                      {"validation", &validate_ms},
                                                                      {"total", &total_ms}};
  for (const auto& [name, values] : parts) {
    const auto [median, p10] = median_and_p10(*values);
    std::printf("  %-28s %7.2f / %7.2f ms\n", name, median, p10);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("time from a stop request to dip::plan_dip's return at the paper's scale");
  std::string model_path = "bench/models/vit22b-gpt175b.json";
  int pp = 16, microbatches = 64, repeats = 3;
  unsigned threads = 1;
  std::vector<double> stop_after{20, 100, 500, 2000};
  bool json = false, breakdown = false;
  app.add_option("--model", model_path, "model JSON file");
  app.add_option("--pp", pp, "pipeline ranks")->check(CLI::Range(1, 1024));
  app.add_option("--microbatches", microbatches, "microbatches per batch")->check(CLI::Range(1, 4096));
  app.add_option("--repeats", repeats, "runs per mode and stop time")->check(CLI::Range(1, 100));
  app.add_option("--threads", threads, "planner threads")->check(CLI::Range(1, 256));
  app.add_option("--stop-after", stop_after, "ms of planning before the stop request");
  app.add_flag("--json", json, "print one JSON object instead of a table");
  app.add_flag("--breakdown", breakdown, "also time the quick fallback's parts, --repeats times (before the table)");
  CLI11_PARSE(app, argc, argv);

  try {
    const dip::model_file file = dip::read_model_file(model_path);
    const dip::gpu_spec gpu = dip::find_gpu(file.gpu.value_or("H100"));
    dip::cluster_spec cluster;
    cluster.pp = pp;
    cluster.tp = file.tp.value_or(8);
    cluster.gpu = gpu;
    dip::planner_options planning;
    planning.search_ms = 0;
    planning.search_rollouts = 1;
    planning.tune_segments = false;
    auto planner = dip::planner(file.model, dip::cost_model_for(file, cluster.gpu, cluster.tp), cluster, planning);
    dip::batch_source source = dip::make_batch_source("obelics", file.model, 1);
    const dip::planned_batch planned = planner.plan(source.next_batch(std::size_t(microbatches)));
    const std::shared_ptr<const dip::stage_graph> graph = planned.plan.graph;

    dip::dip_planner_options options;
    options.memory_cap = cluster.cap();
    options.weight_memory = planned.weight_memory;
    options.comm = cluster.comm();
    options.threads = threads;
    if (breakdown) print_quick_plan_breakdown(graph, options, repeats);
    const dip::pass_index passes(*graph);
    const std::vector<std::uint32_t> natural = dip::default_pass_priority(passes);

    const clock_type::time_point start = clock_type::now();
    const dip::plan unstopped = dip::plan_dip(graph, options, natural);
    const double fit_ms = ms_between(start, clock_type::now());

    struct row {
      std::string mode;
      double after_ms, get_median, get_worst, free_median, free_worst;
    };
    std::vector<row> rows;
    for (const std::string mode : {"search", "phase3"}) {
      dip::dip_planner_options o = options;
      if (mode == "search") {
        o.search_ms = 1e9;  // only the deadline ends it
      } else {
        o.search_ms = 0;
        o.search_rollouts = 2;
      }
      for (double after : stop_after) {
        std::vector<double> late, free;
        for (int r = 0; r < repeats; ++r) {
          const latency l = measure(graph, o, unstopped, after);
          late.push_back(l.get_late_ms);
          free.push_back(l.worker_free_ms);
        }
        std::sort(late.begin(), late.end());
        std::sort(free.begin(), free.end());
        rows.push_back({mode, after, late[late.size() / 2], late.back(), free[free.size() / 2], free.back()});
      }
    }
    if (json) {
      std::printf("{\"pp\": %d, \"microbatches\": %d, \"threads\": %u, \"unstopped_phases_2_3_ms\": %.3f, \"rows\": [",
                  pp, microbatches, threads, fit_ms);
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const row& r = rows[i];
        std::printf("%s{\"mode\": \"%s\", \"deadline_ms\": %.1f, \"get_late_median_ms\": %.3f, "
                    "\"get_late_worst_ms\": %.3f, \"worker_free_median_ms\": %.3f, \"worker_free_worst_ms\": %.3f}",
                    i ? ", " : "", r.mode.c_str(), r.after_ms, r.get_median, r.get_worst, r.free_median, r.free_worst);
      }
      std::printf("]}\n");
    } else {
      std::printf("PP %d, %d microbatches, %u thread(s); phases 2-3 without a deadline: %.0f ms\n", pp, microbatches,
                  threads, fit_ms);
      std::printf("%-7s %12s %26s %30s\n", "mode", "deadline ms", "get late (median / worst)",
                  "worker free (median / worst)");
      for (const row& r : rows) {
        std::printf("%-7s %12.0f %12.1f / %6.1f ms %16.1f / %6.1f ms\n", r.mode.c_str(), r.after_ms, r.get_median,
                    r.get_worst, r.free_median, r.free_worst);
      }
    }
  } catch (const dip::error& e) {
    std::fprintf(stderr, "dip-cancel-latency: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
