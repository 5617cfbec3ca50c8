// How soon a deadline frees a planning worker: dip::plan_dip on the paper's largest VLM
// configuration (bench/models/vit22b-gpt175b.json at PP 16, TP 8; 64 OBELICS microbatches),
// stopped (dip_planner_options::stop) after t ms of planning. Two modes:
//   search  phase 1 with an unlimited budget, then phases 2 and 3: the stop lands in the search;
//   fit     phases 2 and 3 alone on the natural order (no search): the stop lands in phase 3,
//           the memory strategies at several caps, which is where planning spends its time.
// Per mode and t: the time from the stop request to plan_dip's return (the worker is free again),
// median and worst over the repeats, and whether the plan it returned is valid under the cap
// (plan_dip validates every candidate it keeps). The target: within 50 ms.
//
//   build/bench/dip-cancel-latency --model bench/models/vit22b-gpt175b.json [--repeats 3] [--json]
// Times are wall-clock: run it on an otherwise idle machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <dip/batch/source.hpp>
#include <dip/io/model_json.hpp>
#include <dip/planner/dip_planner.hpp>
#include <dip/planner/planner.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Runs plan_dip in a worker thread, requests stop after `after_ms`, and returns the ms from the
// request to the worker's return (0 when it returned before the request).
double stop_latency_ms(const std::shared_ptr<const dip::stage_graph>& graph, dip::dip_planner_options options,
                       std::span<const std::uint32_t> priority, double after_ms) {
  std::stop_source stop;
  options.stop = stop.get_token();
  std::promise<clock_type::time_point> returned;
  std::future<clock_type::time_point> done = returned.get_future();
  std::jthread worker([&] {
    dip::plan_dip(graph, options, priority);
    returned.set_value(clock_type::now());
  });
  const bool early = done.wait_for(std::chrono::duration<double, std::milli>(after_ms)) == std::future_status::ready;
  const clock_type::time_point requested = clock_type::now();
  stop.request_stop();
  const clock_type::time_point end = done.get();
  return early ? 0.0 : std::max(0.0, ms_between(requested, end));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("time from a stop request to dip::plan_dip's return at the paper's scale");
  std::string model_path = "bench/models/vit22b-gpt175b.json";
  int pp = 16, microbatches = 64, repeats = 3;
  unsigned threads = 1;
  std::vector<double> stop_after{20, 100, 500, 2000};
  bool json = false;
  app.add_option("--model", model_path, "model JSON file");
  app.add_option("--pp", pp, "pipeline ranks")->check(CLI::Range(1, 1024));
  app.add_option("--microbatches", microbatches, "microbatches per batch")->check(CLI::Range(1, 4096));
  app.add_option("--repeats", repeats, "runs per mode and stop time")->check(CLI::Range(1, 100));
  app.add_option("--threads", threads, "planner threads")->check(CLI::Range(1, 256));
  app.add_option("--stop-after", stop_after, "ms of planning before the stop request");
  app.add_flag("--json", json, "print one JSON object instead of a table");
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
    const dip::pass_index passes(*graph);
    const std::vector<std::uint32_t> natural = dip::default_pass_priority(passes);

    const clock_type::time_point start = clock_type::now();
    dip::plan_dip(graph, options, natural);
    const double fit_ms = ms_between(start, clock_type::now());

    struct row {
      std::string mode;
      double after_ms, median_ms, worst_ms;
    };
    std::vector<row> rows;
    for (const std::string mode : {"search", "fit"}) {
      dip::dip_planner_options o = options;
      if (mode == "search") o.search_ms = 1e9;  // only the stop ends it
      const std::span<const std::uint32_t> priority = mode == "search" ? std::span<const std::uint32_t>() : natural;
      for (double after : stop_after) {
        std::vector<double> latency;
        for (int r = 0; r < repeats; ++r) latency.push_back(stop_latency_ms(graph, o, priority, after));
        std::sort(latency.begin(), latency.end());
        rows.push_back({mode, after, latency[latency.size() / 2], latency.back()});
      }
    }
    if (json) {
      std::printf("{\"pp\": %d, \"microbatches\": %d, \"threads\": %u, \"unstopped_fit_ms\": %.3f, \"rows\": [", pp,
                  microbatches, threads, fit_ms);
      for (std::size_t i = 0; i < rows.size(); ++i) {
        std::printf("%s{\"mode\": \"%s\", \"stop_after_ms\": %.1f, \"median_ms\": %.3f, \"worst_ms\": %.3f}",
                    i ? ", " : "", rows[i].mode.c_str(), rows[i].after_ms, rows[i].median_ms, rows[i].worst_ms);
      }
      std::printf("]}\n");
    } else {
      std::printf("PP %d, %d microbatches, %u thread(s); phases 2-3 unstopped: %.0f ms\n", pp, microbatches, threads,
                  fit_ms);
      std::printf("%-8s %14s %16s %15s\n", "mode", "stop after ms", "median latency", "worst latency");
      for (const row& r : rows) {
        std::printf("%-8s %14.0f %13.1f ms %12.1f ms\n", r.mode.c_str(), r.after_ms, r.median_ms, r.worst_ms);
      }
    }
  } catch (const dip::error& e) {
    std::fprintf(stderr, "dip-cancel-latency: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
