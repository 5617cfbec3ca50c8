// dip-exec: plans a batch, runs the plan on the reference executor and prints the measured
// iteration time against the simulated one.
//
//   model (preset | JSON) + ranks (--pp) + batches (--data --microbatches) + one --schedule
//   -> (optionally) calibrate: time every layer on the backend, fit a profiled cost model
//   -> dip::planner with that model (or the analytic one): a validated, simulated plan per batch
//   -> execute the plan on the executable batch it was made for (the packed microbatches split
//      into sub-microbatches as the planner split them) -> measured vs simulated
//   -> --verify: the sequential reference, gradients compared (exit 1 if any differs)
//   --plan FILE.json instead runs an exported executable plan (version 2, with its batch) once.
//
// The CPU backend runs one thread per rank; with fewer cores than ranks the threads share them,
// so the measured time exceeds the simulated one (which gives every rank its own device): the
// report says so.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <dip/dip.hpp>
#include <dip/exec/calibration.hpp>
#include <dip/exec/executor.hpp>
#include <dip/exec/reference.hpp>
#include <dip/io/plan_export.hpp>
#include <dip/schedule/build_stage_graph.hpp>

#if DIP_EXEC_HAVE_CUDA
#include "cuda_compute.hpp"
#include "cuda_executor.hpp"
#endif

namespace {

struct options {
  std::string model = "tiny-vlm";
  int pp = 0;
  std::string data;  // default: obelics for image models, video for video models
  int microbatches = 8;
  int iterations = 1;
  std::uint64_t seed = 1;
  std::string schedule = "dip";
  int chunks = 2;
  double search_ms = 50;
  std::string backend = "cpu";
  bool calibrate = true;
  bool verify = false;
  double memory_cap_mib = 0;  // 0: none
  int timeout_ms = 60000;
  bool json = false;
  // Packing limits scaled to a CPU run (a trainer's are 8192 tokens and 48 images).
  std::int64_t max_tokens = 512;
  std::size_t max_images = 8;
  std::size_t max_clips = 4;
  std::string plan_file;  // --plan: run this exported plan instead of planning
};

// Runs the plan on the chosen backend.
dip::exec::step_result run_backend(const options& opt, const dip::plan& plan, const dip::multimodal_model& model,
                                   const dip::exported_batch& batch,
                                   const std::vector<std::vector<dip::message_tensor>>& tensors = {}) {
  const auto timeout = std::chrono::milliseconds(opt.timeout_ms);
  if (opt.backend == "cpu") {
    return dip::exec::execute(std::make_shared<const dip::plan>(plan), model, batch,
                              {.timeout = timeout, .before_action = {}}, tensors);
  }
#if DIP_EXEC_HAVE_CUDA
  namespace cu = dip::exec::cuda;
  dip::require(cu::device_count() > 0, dip::errc::not_found, "--backend " + opt.backend,
               "no CUDA device is usable here");
  const cu::cuda_mode mode = opt.backend == "cuda-single" ? cu::cuda_mode::single_gpu : cu::cuda_mode::nccl;
  dip::require(mode == cu::cuda_mode::single_gpu || cu::have_nccl(), dip::errc::not_found, "--backend cuda",
               "this build has no NCCL (use --backend cuda-single)");
  return cu::execute_cuda(std::make_shared<const dip::plan>(plan), model, batch,
                          {.mode = mode, .timeout = timeout, .before_action = {}});
#else
  throw dip::error(dip::errc::invalid_argument, "--backend " + opt.backend,
                   "this dip-exec was built without CUDA (nvcc was not found at configure time)");
#endif
}

// The largest difference allowed per gradient tensor, relative to its norm: 0 on the CPU (the
// backend is bitwise exact), bf16's precision on the GPU.
double gradient_tolerance(const options& opt) {
#if DIP_EXEC_HAVE_CUDA
  if (opt.backend != "cpu") return dip::exec::cuda::gradient_tolerance;
#endif
  (void)opt;
  return 0.0;
}

// Per tensor: the largest |difference| over the reference's largest |value| (0 when equal).
// Counts the tensors compared and those bitwise identical; +infinity when the shapes differ.
double max_gradient_difference(const dip::exec::step_result& a, const dip::exec::step_result& b, std::size_t& compared,
                               std::size_t& identical) {
  double worst = 0;
  compared = identical = 0;
  for (const auto& [key, grads] : a.gradients) {
    const auto other = b.gradients.find(key);
    if (other == b.gradients.end() || other->second.size() != grads.size()) return INFINITY;
    for (std::size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].rows() != other->second[i].rows() || grads[i].cols() != other->second[i].cols()) return INFINITY;
      const double d = grads[i].size() ? (grads[i] - other->second[i]).cwiseAbs().maxCoeff() : 0.0;
      const double scale = other->second[i].size() ? other->second[i].cwiseAbs().maxCoeff() : 0.0;
      worst = std::max(worst, d == 0 ? 0.0 : d / std::max(scale, 1e-300));
      ++compared;
      identical += d == 0;
    }
  }
  return b.gradients.size() == a.gradients.size() ? worst : INFINITY;
}

// The cluster of a run on the executor: `pp` ranks without tensor parallelism, weights in
// double precision, transfers through in-process channels (free next to compute), and the cap
// of --memory-cap-mib (none: the H800's memory, which a tiny model never reaches).
dip::cluster_spec executor_cluster(const options& opt, int pp) {
  dip::cluster_spec cluster{.pp = pp,
                            .tp = 1,
                            .gpu = dip::find_gpu("H800"),
                            .memory_cap = {},
                            .p2p_latency = {},
                            .link = dip::bandwidth{},
                            .bytes_per_parameter = 8.0};
  if (opt.memory_cap_mib > 0) cluster.memory_cap = dip::mib(opt.memory_cap_mib);
  return cluster;
}

template <class Costs>
int run(const options& opt, const dip::multimodal_model& model, const Costs& costs, int pp, const char* cost_name,
        double calibration_seconds) {
  const std::string data = !opt.data.empty() ? opt.data
                           : std::any_of(model.modules().begin(), model.modules().end(),
                                         [](const dip::module_spec& m) { return m.video.has_value(); })
                               ? "video"
                               : "obelics";
  dip::planner_options planning;
  planning.interleaved_chunks = std::size_t(opt.chunks);
  planning.search_ms = opt.search_ms;
  planning.seed = opt.seed;  // batch i: opt.seed + i
  const dip::planner<Costs> planner(model, costs, executor_cluster(opt, pp), std::move(planning));

  dip::batch_source source = dip::make_batch_source(
      data, model, opt.seed,
      {.max_tokens = opt.max_tokens, .max_images = opt.max_images, .max_clips = opt.max_clips, .max_seconds = 16});
  nlohmann::json iterations = nlohmann::json::array();
  bool all_verified = true;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (!opt.json) {
    std::printf("model %s, %d ranks, schedule %s, %d microbatches, data %s, backend %s, costs %s", model.name().c_str(),
                pp, opt.schedule.c_str(), opt.microbatches, data.c_str(), opt.backend.c_str(), cost_name);
    if (calibration_seconds > 0) std::printf(" (calibrated in %.2f s)", calibration_seconds);
    std::printf("\n");
    if (opt.backend == "cpu" && cores < unsigned(pp)) {
      std::printf("note: %u cores for %d rank threads: ranks share cores, so measured exceeds simulated\n", cores, pp);
    }
  }
  for (int it = 0; it < opt.iterations; ++it) {
    const std::vector<dip::packed_microbatch> packed = source.next_batch(std::size_t(opt.microbatches));
    const dip::planned_batch planned = planner.plan(packed, opt.schedule, std::uint64_t(it));
    const dip::plan& plan = planned.plan;
    // The items and rows of the sub-microbatches the plan's stages run, as the planner split them.
    const dip::exported_batch batch = dip::exec::executable_batch(planned, packed, model);
    const dip::simulation_result& simulated = planned.simulation;
    const std::vector<dip::bytes>& weights = planned.weight_memory;

    const auto start = std::chrono::steady_clock::now();
    const dip::exec::step_result measured = run_backend(opt, plan, model, batch);
    const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

    nlohmann::json entry = {{"iteration", it},
                            {"simulated_ms", dip::to_milliseconds(simulated.makespan)},
                            {"measured_ms", wall_ms},
                            {"loss", measured.loss}};
    nlohmann::json ranks = nlohmann::json::array();
    for (std::size_t r = 0; r < measured.rank_seconds.size(); ++r) {
      ranks.push_back({{"measured_ms", measured.rank_seconds[r] * 1e3},
                       {"simulated_busy_ms", dip::to_milliseconds(simulated.ranks[r].busy)},
                       {"peak_activation_bytes", measured.peak_activation_bytes[r]},
                       {"peak_offloaded_bytes", measured.peak_offloaded_bytes[r]},
                       {"simulated_peak_bytes", simulated.ranks[r].peak_memory.base() - weights[r].base()}});
    }
    entry["ranks"] = ranks;
    if (opt.verify) {
      const dip::exec::step_result reference = dip::exec::run_sequential(model, batch);
      std::size_t compared = 0, identical = 0;
      const double diff = max_gradient_difference(measured, reference, compared, identical);
      const double tolerance = gradient_tolerance(opt);
      const bool ok = diff <= tolerance &&
                      std::fabs(measured.loss - reference.loss) <= tolerance * std::fabs(reference.loss);
      all_verified = all_verified && ok;
      entry["verify"] = {
          {"max_relative_gradient_difference", std::isfinite(diff) ? nlohmann::json(diff) : nlohmann::json("mismatch")},
          {"tolerance", tolerance},
          {"tensors", compared},
          {"bitwise_identical", identical},
          {"loss_reference", reference.loss},
          {"ok", ok}};
    }
    if (!opt.json) {
      std::printf("iteration %d: simulated %.2f ms, measured %.2f ms (measured / simulated %.2f), loss %.9g\n", it,
                  dip::to_milliseconds(simulated.makespan), wall_ms, wall_ms / dip::to_milliseconds(simulated.makespan),
                  measured.loss);
      for (std::size_t r = 0; r < ranks.size(); ++r) {
        std::printf(
            "  rank %zu: measured %.2f ms, simulated busy %.2f ms, peak activations %.1f KiB (simulated %.1f KiB)", r,
            ranks[r]["measured_ms"].get<double>(), ranks[r]["simulated_busy_ms"].get<double>(),
            ranks[r]["peak_activation_bytes"].get<double>() / 1024,
            ranks[r]["simulated_peak_bytes"].get<double>() / 1024);
        if (measured.peak_offloaded_bytes[r] > 0) {
          std::printf(", offloaded %.1f KiB", double(measured.peak_offloaded_bytes[r]) / 1024);
        }
        std::printf("\n");
      }
      if (opt.verify) {
        const nlohmann::json& v = entry["verify"];
        std::printf("  verify: %zu of %zu gradient tensors bitwise identical, max relative difference %s (tolerance "
                    "%g): %s\n",
                    v["bitwise_identical"].get<std::size_t>(), v["tensors"].get<std::size_t>(),
                    v["max_relative_gradient_difference"].dump().c_str(), v["tolerance"].get<double>(),
                    v["ok"].get<bool>() ? "ok" : "DIFFERS");
      }
    }
    iterations.push_back(std::move(entry));
  }
  if (opt.json) {
    std::cout << nlohmann::json{{"model", model.name()},    {"ranks", pp},
                                {"schedule", opt.schedule}, {"backend", opt.backend},
                                {"costs", cost_name},       {"calibration_seconds", calibration_seconds},
                                {"cores", cores},           {"iterations", iterations}}
                     .dump(2)
              << '\n';
  }
  if (!all_verified) {
    std::fprintf(stderr, "dip-exec: gradients differ from the sequential reference\n");
    return 1;
  }
  return 0;
}

// --plan FILE: runs an exported executable plan (with its batch) of `model` once on the backend.
int run_plan_file(const options& opt, const dip::multimodal_model& model) {
  const dip::exported_plan file = dip::read_plan_file(opt.plan_file);
  dip::require(file.batch.has_value(), dip::errc::invalid_argument, "--plan " + opt.plan_file,
               "has no batch (exported from bare work): the executor needs each sub-microbatch's items");
  dip::require(file.model == dip::describe_model(model), dip::errc::invalid_argument, "--plan " + opt.plan_file,
               "was made for model '" + file.model.name + "', not for --model " + opt.model);
  const auto start = std::chrono::steady_clock::now();
  const dip::exec::step_result measured = run_backend(opt, file.schedule, model, *file.batch, file.tensors);
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json entry = {{"plan", opt.plan_file},
                          {"schedule", file.schedule_name},
                          {"ranks", file.schedule.ranks.size()},
                          {"measured_ms", wall_ms},
                          {"loss", measured.loss}};
  bool ok = true;
  if (opt.verify) {
    const dip::exec::step_result reference = dip::exec::run_sequential(model, *file.batch);
    std::size_t compared = 0, identical = 0;
    const double diff = max_gradient_difference(measured, reference, compared, identical);
    const double tolerance = gradient_tolerance(opt);
    ok = diff <= tolerance && std::fabs(measured.loss - reference.loss) <= tolerance * std::fabs(reference.loss);
    entry["verify"] = {
        {"max_relative_gradient_difference", std::isfinite(diff) ? nlohmann::json(diff) : nlohmann::json("mismatch")},
        {"tensors", compared},
        {"bitwise_identical", identical},
        {"ok", ok}};
  }
  if (opt.json) {
    std::cout << entry.dump(2) << '\n';
  } else {
    std::printf("plan %s (%s, %zu ranks): measured %.2f ms, loss %.9g\n", opt.plan_file.c_str(),
                file.schedule_name.c_str(), file.schedule.ranks.size(), wall_ms, measured.loss);
    if (opt.verify) {
      std::printf("  verify: %zu of %zu gradient tensors bitwise identical: %s\n",
                  entry["verify"]["bitwise_identical"].get<std::size_t>(),
                  entry["verify"]["tensors"].get<std::size_t>(), ok ? "ok" : "DIFFERS");
    }
  }
  if (!ok) {
    std::fprintf(stderr, "dip-exec: gradients differ from the sequential reference\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("dip-exec: plan a batch, run it on the reference executor, compare measured with simulated time");
  options opt;
  app.add_option("--model,-m", opt.model,
                 "a model preset (tiny-vlm, tiny-t2v, or any preset whose layers the executor "
                 "runs) or a model JSON file")
      ->capture_default_str();
  app.add_option("--pp", opt.pp, "pipeline-parallel ranks (default: the model's)")->check(CLI::Range(1, 64));
  app.add_option("--data", opt.data,
                 "laion, obelics, scienceqa, video, mixed or a JSONL trace (default: obelics, or "
                 "video for a text-to-video model)");
  app.add_option("--microbatches", opt.microbatches, "microbatches per iteration")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--iterations", opt.iterations, "iterations (batches) to run")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--seed", opt.seed, "seed of the batch stream")->capture_default_str();
  const dip::schedule_registry schedules = dip::schedule_registry::builtin();
  app.add_option("--schedule", opt.schedule, "the schedule to plan and run (dip::planner's built-in registry)")
      ->check(CLI::IsMember(schedules.names()))
      ->capture_default_str();
  app.add_option("--chunks", opt.chunks, "model chunks per rank for 'interleaved'")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--search-ms", opt.search_ms, "dip's segment search budget per batch")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--backend", opt.backend,
                 "cpu; cuda-single (every rank on GPU 0) or cuda (one GPU per rank, NCCL) where built with CUDA")
      ->check(CLI::IsMember({"cpu", "cuda", "cuda-single"}))
      ->capture_default_str();
  app.add_option("--calibrate", opt.calibrate,
                 "time every layer on the backend and plan with the fitted cost model (false: the analytic H800 model, "
                 "whose times are a GPU's)")
      ->capture_default_str();
  app.add_flag("--verify", opt.verify, "also run the sequential reference; exit 1 if any gradient differs");
  app.add_option("--memory-cap-mib", opt.memory_cap_mib,
                 "per-rank memory cap for planning (weights + activations; 0: none); a tight cap makes dip recompute "
                 "or offload")
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--timeout-ms", opt.timeout_ms, "longest a receive may wait before the step fails")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  app.add_option("--max-tokens", opt.max_tokens, "LLM tokens per packed microbatch")
      ->check(CLI::Range(std::int64_t(1), std::int64_t(1) << 40))
      ->capture_default_str();
  app.add_option("--max-images", opt.max_images, "images per packed microbatch")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--max-clips", opt.max_clips, "video clips per packed microbatch")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_flag("--json", opt.json, "print one JSON object instead of text");
  app.add_option("--plan", opt.plan_file,
                 "run this executable plan file (dip-plan's JSON, version 2, with its batch) of --model once, "
                 "instead of planning batches");
  CLI11_PARSE(app, argc, argv);

  try {
    const std::vector<std::string> names = dip::preset_names();
    const bool preset = std::find(names.begin(), names.end(), opt.model) != names.end();
    const dip::multimodal_model model = preset ? dip::find_preset(opt.model).model
                                               : dip::read_model_file(opt.model).model;
    const int pp = opt.pp   ? opt.pp
                   : preset ? dip::find_preset(opt.model).parallel.pp
                            : dip::read_model_file(opt.model).pp.value_or(4);
    if (!opt.plan_file.empty()) return run_plan_file(opt, model);
    if (opt.calibrate && opt.backend != "cpu") {
      // Layers are timed on the CPU backend only so far; a GPU run plans with the analytic model.
      std::fprintf(stderr,
                   "dip-exec: note: calibration times the CPU backend; planning the %s run with the analytic "
                   "H800 model\n",
                   opt.backend.c_str());
    }
    if (opt.calibrate && opt.backend == "cpu") {
      const dip::exec::executable_model executable(model);
      const dip::exec::calibration fitted = dip::exec::calibrate_cpu(executable);
      return run(opt, model, fitted.costs, pp, "calibrated on the CPU backend", fitted.seconds);
    }
    return run(opt, model, dip::analytic_cost_model(dip::find_gpu("H800"), 1), pp, "analytic (H800)", 0.0);
  } catch (const dip::error& e) {
    std::fprintf(stderr, "dip-exec: error: %s\n", e.what());
    return 2;
  }
}
