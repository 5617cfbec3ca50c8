// dip-plan: plans and simulates pipeline schedules for a model, a cluster and a batch stream.
//
//   model (preset | JSON) + cluster (--pp --tp --gpu) + batches (--data --microbatches)
//     --> per schedule: placement -> stage graph -> plan (validated) -> simulation
//     --> table | --json, and --trace FILE (Chrome trace of the first iteration)
//
// See docs/dip-plan.md for every flag and the JSON output.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <dip/batch/uniform.hpp>
#include <dip/dip.hpp>
#include <dip/io/chrome_trace.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

namespace {

struct cli_options {
  std::string model = "vlm-s";
  int pp = 0;  // 0: the preset's or the file's
  int tp = 0;
  std::string gpu;
  int microbatches = 8;
  int iterations = 1;
  unsigned long long seed = 0;
  std::string data = "uniform";
  std::string schedules = "gpipe,1f1b,interleaved,zb1p";
  int chunks = 2;
  double latency_us = 0;
  std::string trace;
  bool json = false;
};

struct schedule_outcome {
  bool ok = false;
  std::string error;
  dip::duration makespan{};
  double bubble = 0;
  dip::duration lower_bound{};
  dip::bytes peak{};
  double plan_ms = 0;
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

// Everything a run needs once the model and its cost model are known.
template <dip::cost_model_like Costs>
int run(const cli_options& opt, const dip::multimodal_model& model, const Costs& costs, int pp, int tp,
        const dip::gpu_spec& gpu) {
  dip::require(opt.data == "uniform", dip::errc::not_found, "--data",
               "unknown data '" + opt.data + "' (this version knows: uniform)");
  const std::vector<std::string> schedules = split_list(opt.schedules);
  dip::require(!schedules.empty(), dip::errc::invalid_argument, "--schedules", "lists no schedule");
  for (const std::string& s : schedules) {
    bool known = false;
    for (const std::string& b : dip::baseline_names()) known = known || b == s;
    std::string all;
    for (const std::string& b : dip::baseline_names()) all += (all.empty() ? "" : ", ") + b;
    dip::require(known, dip::errc::not_found, "--schedules", "unknown schedule '" + s + "' (known: " + all + ")");
  }
  const auto work_of = [&](const dip::module_spec& m) { return dip::uniform_module_work(model, m); };
  // Pipeline neighbours share a node when the whole pipeline fits in one; otherwise the slowest
  // link they may cross is the network.
  const dip::communication_model comm{dip::microseconds(opt.latency_us),
                                      tp * pp <= gpu.gpus_per_node ? gpu.nvlink : gpu.network};

  std::map<int, dip::placement> placements;  // by chunks per rank
  std::vector<std::vector<schedule_outcome>> outcomes(std::size_t(opt.iterations));
  nlohmann::json trace_events = nlohmann::json::array();

  for (int it = 0; it < opt.iterations; ++it) {
    const dip::batch_work batch = dip::uniform_batch(model, std::size_t(opt.microbatches), work_of);
    for (std::size_t si = 0; si < schedules.size(); ++si) {
      const std::string& name = schedules[si];
      schedule_outcome& out = outcomes[std::size_t(it)].emplace_back();
      try {
        const auto start = std::chrono::steady_clock::now();
        const int v = name == "interleaved" ? opt.chunks : 1;
        auto found = placements.find(v);
        if (found == placements.end()) {
          found = placements.emplace(v, dip::sequential_placement(model, costs, work_of, pp, v)).first;
        }
        const dip::placement& place = found->second;
        auto graph = std::make_shared<const dip::stage_graph>(
            dip::build_stage_graph(model, place, batch, costs, {.split_backward = name == "zb1p"}));
        const dip::plan plan = dip::baseline_plan(name, graph);
        const std::vector<dip::bytes> weights = dip::weight_bytes_per_rank(model, place, tp);
        dip::validate(plan, {.memory_cap = std::nullopt, .weight_memory = weights});
        out.plan_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        const bool traced = !opt.trace.empty() && it == 0;
        const dip::simulation_result result =
            dip::simulate(plan, {.comm = comm, .weight_memory = weights, .record_timeline = traced});
        if (traced) dip::append_chrome_trace(trace_events, plan, result, int(si), name);
        out.ok = true;
        out.makespan = result.makespan;
        out.bubble = result.bubble_ratio;
        out.lower_bound = result.bounds.best();
        for (const dip::rank_stats& r : result.ranks) out.peak = std::max(out.peak, r.peak_memory);
      } catch (const dip::error& e) {
        out.error = e.what();
      }
    }
  }

  if (!opt.trace.empty()) {
    std::ofstream file(opt.trace);
    dip::require(bool(file), dip::errc::not_found, "--trace", "cannot write '" + opt.trace + "'");
    file << nlohmann::json{{"traceEvents", trace_events}, {"displayTimeUnit", "ms"}}.dump() << '\n';
  }

  // Summaries per schedule over the iterations it succeeded in.
  struct summary {
    double makespan_ms = 0, bubble = 0, plan_ms = 0, gap = 0;
    dip::bytes peak{};
    int count = 0;
    std::string error;
  };
  std::vector<summary> sums(schedules.size());
  for (const auto& iteration : outcomes) {
    for (std::size_t si = 0; si < schedules.size(); ++si) {
      const schedule_outcome& o = iteration[si];
      summary& s = sums[si];
      if (!o.ok) {
        s.error = o.error;
        continue;
      }
      ++s.count;
      s.makespan_ms += dip::to_milliseconds(o.makespan);
      s.bubble += o.bubble;
      s.plan_ms += o.plan_ms;
      s.gap += o.makespan / o.lower_bound - 1.0;
      s.peak = std::max(s.peak, o.peak);
    }
  }
  for (summary& s : sums) {
    if (s.count == 0) continue;
    s.makespan_ms /= s.count;
    s.bubble /= s.count;
    s.plan_ms /= s.count;
    s.gap /= s.count;
  }

  if (opt.json) {
    nlohmann::json doc = {{"model", model.name()}, {"pp", pp}, {"tp", tp}, {"gpu", gpu.name},
                          {"microbatches", opt.microbatches}, {"data", opt.data}};
    nlohmann::json iterations = nlohmann::json::array();
    for (int it = 0; it < opt.iterations; ++it) {
      nlohmann::json per = nlohmann::json::object();
      double lower = 0;
      for (std::size_t si = 0; si < schedules.size(); ++si) {
        const schedule_outcome& o = outcomes[std::size_t(it)][si];
        if (!o.ok) {
          per[schedules[si]] = {{"error", o.error}};
          continue;
        }
        const double bound = dip::to_milliseconds(o.lower_bound);
        lower = lower == 0 ? bound : std::min(lower, bound);
        per[schedules[si]] = {{"makespan_ms", dip::to_milliseconds(o.makespan)},
                              {"bubble_ratio", o.bubble},
                              {"lower_bound_ms", bound},
                              {"peak_memory_bytes", o.peak.base()},
                              {"plan_ms", o.plan_ms}};
      }
      iterations.push_back({{"index", it}, {"lower_bound_ms", lower}, {"schedules", per}});
    }
    doc["iterations"] = iterations;
    nlohmann::json summary_json = nlohmann::json::object();
    for (std::size_t si = 0; si < schedules.size(); ++si) {
      const summary& s = sums[si];
      if (s.count == 0) {
        summary_json[schedules[si]] = {{"error", s.error}};
        continue;
      }
      summary_json[schedules[si]] = {{"mean_makespan_ms", s.makespan_ms},
                                     {"mean_bubble_ratio", s.bubble},
                                     {"mean_lower_bound_gap", s.gap},
                                     {"max_peak_memory_bytes", s.peak.base()},
                                     {"mean_plan_ms", s.plan_ms}};
    }
    doc["summary"] = summary_json;
    std::cout << doc.dump(2) << '\n';
  } else {
    std::printf("model %s, pp %d, tp %d, %s, %d microbatches x %d iterations, data %s\n", model.name().c_str(),
                pp, tp, gpu.name.c_str(), opt.microbatches, opt.iterations, opt.data.c_str());
    std::printf("%-12s %14s %8s %10s %12s %10s\n", "schedule", "iteration ms", "bubble", "vs bound", "peak memory",
                "plan ms");
    for (std::size_t si = 0; si < schedules.size(); ++si) {
      const summary& s = sums[si];
      if (s.count == 0) {
        std::printf("%-12s failed: %s\n", schedules[si].c_str(), s.error.c_str());
        continue;
      }
      std::printf("%-12s %14.3f %8.4f %9.1f%% %12s %10.2f\n", schedules[si].c_str(), s.makespan_ms, s.bubble,
                  100.0 * s.gap, dip::to_string(s.peak).c_str(), s.plan_ms);
    }
  }
  bool any_ok = false;
  for (const summary& s : sums) any_ok = any_ok || s.count > 0;
  return any_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dip-plan: plan and simulate pipeline schedules for multimodal model training"};
  cli_options opt;
  app.add_option("--model,-m", opt.model, "a model preset (vlm-s, vlm-m, vlm-l, t2v-s, t2v-l, llama3-8b, "
                                           "qwen2-32b, qwen2-72b) or a model JSON file")
      ->capture_default_str();
  app.add_option("--pp", opt.pp, "pipeline-parallel ranks (default: the model's)")->check(CLI::Range(1, 4096));
  app.add_option("--tp", opt.tp, "tensor-parallel degree (default: the model's)")->check(CLI::Range(1, 4096));
  app.add_option("--gpu", opt.gpu, "GPU preset: H800, H100, H200, H20 (default: the model's, else H800)");
  app.add_option("--microbatches", opt.microbatches, "microbatches per iteration")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--iterations", opt.iterations, "iterations (batches) to plan")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--seed", opt.seed, "seed of the batch stream")->capture_default_str();
  app.add_option("--data", opt.data, "batch stream: uniform")->capture_default_str();
  app.add_option("--schedules", opt.schedules, "comma-separated: gpipe, 1f1b, interleaved, zb1p")
      ->capture_default_str();
  app.add_option("--chunks", opt.chunks, "model chunks per rank for 'interleaved'")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--p2p-latency-us", opt.latency_us, "latency of one pipeline transfer, microseconds")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  app.add_option("--trace", opt.trace, "write the first iteration's simulated timeline as Chrome trace JSON");
  app.add_flag("--json", opt.json, "print one JSON object instead of a table");
  CLI11_PARSE(app, argc, argv);

  try {
    const bool is_file = opt.model.ends_with(".json") || std::filesystem::exists(opt.model);
    if (is_file) {
      const dip::model_file file = dip::read_model_file(opt.model);
      const int tp = opt.tp ? opt.tp : file.tp.value_or(1);
      const int pp = opt.pp ? opt.pp : file.pp.value_or(1);
      const dip::gpu_spec gpu = dip::find_gpu(!opt.gpu.empty() ? opt.gpu : file.gpu.value_or("H800"));
      return run(opt, file.model, dip::cost_model_for(file, gpu, tp), pp, tp, gpu);
    }
    const dip::model_preset preset = dip::find_preset(opt.model);
    const int tp = opt.tp ? opt.tp : preset.parallel.tp;
    const int pp = opt.pp ? opt.pp : preset.parallel.pp;
    const dip::gpu_spec gpu = dip::find_gpu(!opt.gpu.empty() ? opt.gpu : preset.gpu);
    return run(opt, preset.model, dip::analytic_cost_model(gpu, tp), pp, tp, gpu);
  } catch (const dip::error& e) {
    std::fprintf(stderr, "dip-plan: error: %s\n", e.what());
    return 2;
  }
}
