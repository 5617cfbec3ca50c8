// dip-plan: plans and simulates pipeline schedules for a model, a cluster and a batch stream.
//
//   model (preset | JSON) + cluster (--pp --tp --gpu) + batches (--data --microbatches)
//     --> dip::planner (dip/planner/planner.hpp): per batch and schedule, a validated,
//         simulated plan (or the reason it was refused)
//     --> table | --json, and --trace FILE (Chrome trace of the first iteration)
//
// run() reads as the steps: planner from the flags -> plan every iteration -> describe the
// placement -> summarise -> print.
//
// See docs/dip-plan.md for every flag and the JSON output.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <dip/batch/model_flops.hpp>
#include <dip/dip.hpp>
#include <dip/io/chrome_trace.hpp>
#include <dip/io/plan_export.hpp>
#include <dip/io/torch_schedule_csv.hpp>
#include <dip/partition/placement_report.hpp>

namespace {

struct cli_options {
  std::string model = "vlm-s";
  int pp = 0;  // 0: the preset's or the file's
  int tp = 0;
  std::string gpu;
  double memory_cap_gib = 0;  // 0: the GPU preset's memory
  int microbatches = 8;
  int iterations = 1;
  unsigned long long seed = 0;
  std::string data = "uniform";
  std::string schedules = "dip,static-dip,interleaved,1f1b,zb1p,gpipe";
  int chunks = 2;
  double latency_us = 0;
  double search_ms = 200;
  std::size_t search_rollouts = 0;  // 0: no rollout limit
  unsigned threads = 1;
  bool memory_strategies = true;
  bool fit_memory = true;
  int segments_per_rank = 0;    // 0: the partitioner's K per chain
  int sub_microbatch_size = 0;  // 0: the partitioner's B; else B of every image or clip chain
  bool tune_segments = true;    // tune K by planning sample batches (segment_tuning.hpp)
  std::string partition = "balanced";
  bool show_placement = false;
  bool show_batch = false;
  std::string trace;
  std::string export_file;   // --export: first iteration, first schedule (docs/plan-format.md)
  std::string export_dir;    // --export-dir: every iteration and schedule
  std::string export_torch;  // --export-torch: the same plan as torch.distributed.pipelining CSV
  bool json = false;
};

struct schedule_outcome {
  bool ok = false;
  std::string error;
  dip::duration makespan{};
  double bubble = 0;
  dip::duration lower_bound{};        // the classic bound (dip/sim/lower_bounds.hpp)
  dip::duration memory_free_bound{};  // with the rank window
  dip::duration cap_bound{};          // under the memory cap
  dip::bytes peak{};
  double plan_ms = 0;
};

// One placement as dip-plan prints it: per rank, its chunks' layer spans with the forward +
// backward time of each span for one unit of work (`work_of(module)`).
template <dip::cost_model_like Costs, class WorkOf>
nlohmann::json placement_json(const dip::multimodal_model& model, const dip::placement& place, const Costs& costs,
                              WorkOf&& work_of) {
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < place.ranks; ++r) {
    nlohmann::json chunks = nlohmann::json::array();
    for (dip::chunk_id c : place.chunks_on(dip::rank_id::from_index(std::size_t(r)))) {
      for (const dip::layer_span& span : place.chunk(c).spans) {
        const dip::module_spec& m = model.module(span.module);
        const dip::layer_cost cost = dip::chunk_cost(costs, m, span.first, span.last, work_of(m));
        chunks.push_back({{"chunk", c.index()},
                          {"chain", place.chunk(c).chain},
                          {"module", m.name},
                          {"first_layer", span.first},
                          {"last_layer", span.last - 1},
                          {"time_ms", dip::to_milliseconds(cost.forward + cost.backward())}});
      }
    }
    ranks.push_back({{"rank", r}, {"chunks", chunks}});
  }
  return ranks;
}

// B, K and latency of each chain of a modality-aware partition.
// rule_segments: the partitioner's K per chain when tuning chose another (else empty).
nlohmann::json segments_json(const dip::multimodal_model& model, const dip::modality_partition& part,
                             const std::vector<std::size_t>& rule_segments) {
  nlohmann::json groups = nlohmann::json::array();
  for (std::size_t gi = 0; gi < part.groups.size(); ++gi) {
    const dip::chain_group& g = part.groups[gi];
    nlohmann::json modules = nlohmann::json::array();
    for (dip::module_id m : g.modules) modules.push_back(model.module(m).name);
    groups.push_back({{"modules", modules},
                      {"item", std::string(dip::to_string(g.kind))},
                      {"sub_microbatch_size", g.sub_microbatch_size},
                      {"efficiency", std::isnan(g.efficiency) ? nlohmann::json(nullptr) : nlohmann::json(g.efficiency)},
                      {"latency_ms", dip::to_milliseconds(g.latency)},
                      {"paper_segments", g.paper_segments},
                      {"segments_per_rank", g.segments_per_rank},
                      {"rule_segments", rule_segments.empty() ? g.segments_per_rank : rule_segments[gi]}});
  }
  return groups;
}

void print_placement(const std::string& title, const nlohmann::json& ranks) {
  std::printf("placement %s (per chunk: module[first-last layer] forward+backward ms for one unit of work)\n",
              title.c_str());
  for (const nlohmann::json& rank : ranks) {
    double total = 0;
    std::string line;
    for (const nlohmann::json& c : rank["chunks"]) {
      char text[160];
      std::snprintf(text, sizeof text, " %s[%d-%d] %.2f", c["module"].get<std::string>().c_str(),
                    c["first_layer"].get<int>(), c["last_layer"].get<int>(), c["time_ms"].get<double>());
      line += text;
      total += c["time_ms"].get<double>();
    }
    std::printf("  rank %2d (%.2f ms):%s\n", rank["rank"].get<int>(), total, line.c_str());
  }
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

// --export and --export-torch: the first iteration's plan of the first schedule, or an error
// naming the flag when that schedule failed or the CSV format cannot express its plan.
void write_first_plan_exports(const cli_options& opt, const std::optional<dip::exported_plan>& exported,
                              const std::string& schedule, const std::string& failure) {
  for (const std::string* flag : {&opt.export_file, &opt.export_torch}) {
    dip::require(flag->empty() || exported.has_value(), dip::errc::infeasible,
                 flag == &opt.export_file ? "--export" : "--export-torch",
                 "the first schedule, " + schedule + ", has no plan in iteration 0: " + failure);
  }
  if (!opt.export_file.empty()) dip::write_plan_file(opt.export_file, *exported);
  if (!opt.export_torch.empty()) {
    try {
      dip::write_torch_csv(opt.export_torch, dip::to_torch_schedule(exported->schedule));
    } catch (const dip::error& e) {
      throw dip::error(e.code(), "--export-torch",
                       "cannot write " + schedule + "'s plan as a torch schedule: " + e.detail());
    }
  }
}

// --schedules as a list of registered names ("none": an empty list).
std::vector<std::string> requested_schedules(const cli_options& opt, const dip::schedule_registry& registry) {
  if (opt.schedules == "none") return {};
  const std::vector<std::string> schedules = split_list(opt.schedules);
  dip::require(!schedules.empty(), dip::errc::invalid_argument, "--schedules",
               "lists no schedule (use 'none' to plan only the placement and the batches)");
  for (const std::string& s : schedules) {
    dip::require(registry.contains(s), dip::errc::not_found, "--schedules",
                 "unknown schedule '" + s + "' (known: " + registry.known() + ")");
  }
  return schedules;
}

// The planner's options from the flags. K is tuned on two sample batches from a differently
// seeded stream (a trace file: its first batches).
dip::planner_options planner_options_of(const cli_options& opt, const dip::multimodal_model& model) {
  dip::require(opt.partition == "balanced" || opt.partition == "megatron" || opt.partition == "dip",
               dip::errc::not_found, "--partition",
               "unknown partition '" + opt.partition + "' (known: balanced, megatron, dip)");
  dip::planner_options o;
  o.partition = opt.partition;
  o.interleaved_chunks = std::size_t(opt.chunks);
  o.segments_per_rank = std::size_t(opt.segments_per_rank);
  o.sub_microbatch_size = std::size_t(opt.sub_microbatch_size);
  o.tune_segments = opt.tune_segments;
  if (opt.tune_segments && opt.segments_per_rank == 0) {
    dip::batch_source samples = dip::make_batch_source(opt.data, model, opt.seed + 0x5eed);
    for (int i = 0; i < 2; ++i) o.tuning_batches.push_back(samples.next_batch(std::size_t(opt.microbatches)));
  }
  o.search_ms = opt.search_ms;
  o.search_rollouts = opt.search_rollouts;
  o.threads = opt.threads;
  o.seed = opt.seed;
  o.memory_strategies = opt.memory_strategies;
  o.fit_memory = opt.fit_memory;
  o.record_timeline = !opt.trace.empty();
  return o;
}

// Everything dip-plan learns from planning the iterations.
struct run_results {
  std::vector<std::vector<schedule_outcome>> outcomes;  // [iteration][schedule]
  std::vector<dip::model_flops_count> flops;            // per iteration
  std::vector<nlohmann::json> batch_summaries;          // per iteration, per microbatch
  nlohmann::json trace_events = nlohmann::json::array();
  dip::packing_stats packing;  // what packing cut from the samples
};

// How one batch's microbatches look (for --show-batch and --json), split as the classic
// schedules split them.
nlohmann::json batch_summary(const std::vector<dip::packed_microbatch>& packed,
                             const std::vector<dip::split_microbatch>& split, const dip::multimodal_model& model) {
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t j = 0; j < packed.size(); ++j) {
    nlohmann::json row = dip::to_json(dip::summarize(packed[j], split[j], model));
    std::int64_t latent_tokens = 0;  // the diffusion decoder's tokens (text-to-video)
    for (const dip::packed_clip& clip : packed[j].clips) latent_tokens += clip.latent_tokens;
    row["latent_tokens"] = latent_tokens;
    rows.push_back(std::move(row));
  }
  return rows;
}

// Plans schedule `name` for batch `it`; a refusal becomes the outcome's error (and a line on stderr).
template <class Planner>
schedule_outcome plan_one(const Planner& planner, const cli_options& opt,
                          const std::vector<dip::packed_microbatch>& packed, const std::string& name, int it,
                          std::size_t si, run_results& results) {
  schedule_outcome out;
  std::optional<dip::exported_plan> exported;  // for --export, --export-dir, --export-torch
  try {
    const dip::planned_batch planned = planner.plan(packed, name, std::uint64_t(it));
    out.plan_ms = planned.times.plan_ms;
    if (!opt.trace.empty() && it == 0) {
      dip::append_chrome_trace(results.trace_events, planned.plan, planned.simulation, int(si), name);
    }
    if (!opt.export_dir.empty() || (it == 0 && si == 0 && (!opt.export_file.empty() || !opt.export_torch.empty()))) {
      exported = dip::export_plan(planned.plan, planner.model(), planned.work, planned.split, packed, name, it);
    }
    out.ok = true;
    out.makespan = planned.simulation.makespan;
    out.bubble = planned.simulation.bubble_ratio;
    out.lower_bound = planned.simulation.bounds.classic();
    out.memory_free_bound = planned.simulation.bounds.memory_free();
    out.cap_bound = planned.simulation.bounds.under_cap();
    for (const dip::rank_stats& r : planned.simulation.ranks) out.peak = std::max(out.peak, r.peak_memory);
  } catch (const dip::error& e) {
    out.error = e.what();
    std::fprintf(stderr, "dip-plan: %s refused in iteration %d: %s\n", name.c_str(), it, e.what());
  }
  if (it == 0 && si == 0) write_first_plan_exports(opt, exported, name, out.error);
  if (exported && !opt.export_dir.empty()) {
    dip::write_plan_file(std::filesystem::path(opt.export_dir) / (name + "-" + std::to_string(it) + ".json"),
                         *exported);
  }
  return out;
}

// Every iteration: the next batch, its summary and FLOPs, and each schedule's plan.
template <class Planner>
run_results plan_iterations(const Planner& planner, const cli_options& opt, const std::vector<std::string>& schedules) {
  const dip::multimodal_model& model = planner.model();
  // Batches are summarised as the classic schedules split them (by the DIP partition's rule
  // under --partition dip, whole otherwise).
  const dip::sub_microbatch_policy classic_split = opt.partition == "dip" ? planner.policy_of("dip")
                                                                          : dip::unsplit_policy(model);
  dip::batch_source source = dip::make_batch_source(opt.data, model, opt.seed);
  run_results results;
  for (int it = 0; it < opt.iterations; ++it) {
    const std::vector<dip::packed_microbatch> packed = source.next_batch(std::size_t(opt.microbatches));
    const std::vector<dip::split_microbatch> split = dip::split_batch(packed, model, classic_split, planner.costs());
    // Useful work of the batch, whatever the schedule (no recompute): what MFU divides by.
    results.flops.push_back(dip::batch_model_flops(model, dip::to_batch_work(split)));
    results.batch_summaries.push_back(batch_summary(packed, split, model));
    std::vector<schedule_outcome>& row = results.outcomes.emplace_back();
    for (std::size_t si = 0; si < schedules.size(); ++si) {
      row.push_back(plan_one(planner, opt, packed, schedules[si], it, si, results));
    }
  }
  results.packing = source.stats();
  return results;
}

// Summaries per schedule over the iterations it succeeded in.
struct summary {
  double makespan_ms = 0, bubble = 0, plan_ms = 0;
  double gap = 0, memory_free_gap = 0, cap_gap = 0;  // mean makespan / bound - 1, per bound
  dip::bytes peak{};
  int count = 0;
  std::string error;
};

std::vector<summary> summarize_outcomes(const run_results& results, std::size_t schedule_count) {
  std::vector<summary> sums(schedule_count);
  for (const auto& iteration : results.outcomes) {
    for (std::size_t si = 0; si < schedule_count; ++si) {
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
      s.memory_free_gap += o.makespan / o.memory_free_bound - 1.0;
      s.cap_gap += o.makespan / o.cap_bound - 1.0;
      s.peak = std::max(s.peak, o.peak);
    }
  }
  for (summary& s : sums) {
    if (s.count == 0) continue;
    s.makespan_ms /= s.count;
    s.bubble /= s.count;
    s.plan_ms /= s.count;
    s.gap /= s.count;
    s.memory_free_gap /= s.count;
    s.cap_gap /= s.count;
  }
  return sums;
}

// The placement of the first schedule (all share it under --partition dip) and its balance.
struct placement_section {
  nlohmann::json ranks;
  double balance = 0;
};

template <class Planner>
placement_section describe_placement(const Planner& planner, const std::vector<std::string>& schedules) {
  const dip::multimodal_model& model = planner.model();
  placement_section out;
  try {
    const std::string shown_schedule = schedules.empty() ? "1f1b" : schedules.front();
    const dip::placement& shown = planner.placement_of(shown_schedule);
    const dip::modality_partition* modality = planner.modality_partition_if_built();
    const bool shown_is_dip = modality && &shown == &modality->placement;
    const auto uniform_work = [&](const dip::module_spec& m) { return dip::uniform_module_work(model, m); };
    // One unit of work per module, as placements report chunk times: a sub-microbatch of B
    // items under a modality-aware partition, a whole uniform microbatch otherwise.
    const dip::sub_microbatch_policy& split = planner.policy_of(shown_schedule);
    const auto unit_work = [&](const dip::module_spec& m) {
      const std::size_t b = split.items_per_sub[m.id.index()];
      if (b == 0) return uniform_work(m);
      return dip::repeat(dip::default_item_profile(model, m.id).item, double(b));
    };
    out.ranks = placement_json(model, shown, planner.costs(), unit_work);
    out.balance = shown_is_dip ? modality->balance()
                               : dip::max_over_mean(dip::rank_totals(
                                     shown, dip::chunk_times(model, shown, planner.costs(), uniform_work),
                                     [](const dip::chunk_spec&) { return 1.0; }));
  } catch (const dip::error& e) {
    out.ranks = {{"error", e.what()}};
  }
  return out;
}

// What packing cut to make samples fit a microbatch: reported, never silent.
nlohmann::json packing_json(const dip::packing_stats& s) {
  return {{"samples", s.samples},
          {"truncated_samples", s.truncated_samples},
          {"truncated_text_tokens", s.truncated_text_tokens},
          {"truncated_images", s.truncated_images},
          {"truncated_seconds", s.truncated_seconds},
          {"dropped_samples", s.dropped_samples},
          {"cut_clips", s.cut_clips},
          {"clip_pieces", s.clip_pieces}};
}

void report_truncation(const dip::packing_stats& s) {
  if (s.truncated_samples == 0 && s.dropped_samples == 0) return;
  std::fprintf(stderr,
               "dip-plan: packing truncated %llu of %llu samples to fit a microbatch (cut: %lld text tokens, %llu "
               "images, %.1f clip seconds) and dropped %llu with nothing left to train on\n",
               static_cast<unsigned long long>(s.truncated_samples), static_cast<unsigned long long>(s.samples),
               static_cast<long long>(s.truncated_text_tokens), static_cast<unsigned long long>(s.truncated_images),
               s.truncated_seconds, static_cast<unsigned long long>(s.dropped_samples));
}

template <class Planner>
void print_json(const Planner& planner, const cli_options& opt, const std::vector<std::string>& schedules,
                const run_results& results, const std::vector<summary>& sums, const placement_section& shown) {
  const dip::cluster_spec& cluster = planner.cluster();
  nlohmann::json doc = {{"model", planner.model().name()},
                        {"pp", cluster.pp},
                        {"tp", cluster.tp},
                        {"gpu", cluster.gpu.name},
                        {"microbatches", opt.microbatches},
                        {"data", opt.data},
                        {"partition", opt.partition},
                        {"gpus", cluster.pp * cluster.tp},
                        {"peak_flops_per_gpu", cluster.gpu.peak_bf16.base()},
                        {"placement", shown.ranks},
                        {"placement_balance", shown.balance},
                        {"packing", packing_json(results.packing)}};
  if (const dip::modality_partition* modality = planner.modality_partition_if_built()) {
    doc["segments"] = segments_json(planner.model(), *modality, planner.rule_segments());
  }
  nlohmann::json iterations = nlohmann::json::array();
  for (int it = 0; it < opt.iterations; ++it) {
    nlohmann::json per = nlohmann::json::object();
    double lower = 0;
    for (std::size_t si = 0; si < schedules.size(); ++si) {
      const schedule_outcome& o = results.outcomes[std::size_t(it)][si];
      if (!o.ok) {
        per[schedules[si]] = {{"error", o.error}};
        continue;
      }
      const double bound = dip::to_milliseconds(o.lower_bound);
      lower = lower == 0 ? bound : std::min(lower, bound);
      per[schedules[si]] = {{"makespan_ms", dip::to_milliseconds(o.makespan)},
                            {"bubble_ratio", o.bubble},
                            {"lower_bound_ms", bound},
                            {"memory_free_bound_ms", dip::to_milliseconds(o.memory_free_bound)},
                            {"cap_bound_ms", dip::to_milliseconds(o.cap_bound)},
                            {"peak_memory_bytes", o.peak.base()},
                            {"plan_ms", o.plan_ms}};
    }
    const dip::model_flops_count& flops = results.flops[std::size_t(it)];
    iterations.push_back({{"index", it},
                          {"lower_bound_ms", lower},
                          {"model_flops", flops.flops},
                          {"model_flops_opaque_layers", flops.opaque_layers},
                          {"microbatches", results.batch_summaries[std::size_t(it)]},
                          {"schedules", per}});
  }
  doc["iterations"] = iterations;
  nlohmann::json summary_json = nlohmann::json::object();
  for (std::size_t si = 0; si < schedules.size(); ++si) {
    const summary& s = sums[si];
    if (s.count == 0) {
      summary_json[schedules[si]] = {{"error", s.error}};
      continue;
    }
    summary_json[schedules[si]] = {
        {"mean_makespan_ms", s.makespan_ms}, {"mean_bubble_ratio", s.bubble},
        {"mean_lower_bound_gap", s.gap},     {"mean_memory_free_bound_gap", s.memory_free_gap},
        {"mean_cap_bound_gap", s.cap_gap},   {"max_peak_memory_bytes", s.peak.base()},
        {"mean_plan_ms", s.plan_ms}};
  }
  doc["summary"] = summary_json;
  std::cout << doc.dump(2) << '\n';
}

template <class Planner>
void print_table(const Planner& planner, const cli_options& opt, const std::vector<std::string>& schedules,
                 const run_results& results, const std::vector<summary>& sums, const placement_section& shown) {
  const dip::cluster_spec& cluster = planner.cluster();
  std::printf("model %s, pp %d, tp %d, %s, %d microbatches x %d iterations, data %s, partition %s\n",
              planner.model().name().c_str(), cluster.pp, cluster.tp, cluster.gpu.name.c_str(), opt.microbatches,
              opt.iterations, opt.data.c_str(), opt.partition.c_str());
  if (const dip::modality_partition* modality = planner.modality_partition_if_built()) {
    for (const nlohmann::json& g : segments_json(planner.model(), *modality, planner.rule_segments())) {
      std::printf("  chain %-24s B = %zu %ss per sub-microbatch, K = %zu segments per rank (rule: %zu, paper rule: "
                  "%zu), T = %.2f ms\n",
                  g["modules"].dump().c_str(), g["sub_microbatch_size"].get<std::size_t>(),
                  g["item"].get<std::string>().c_str(), g["segments_per_rank"].get<std::size_t>(),
                  g["rule_segments"].get<std::size_t>(), g["paper_segments"].get<std::size_t>(),
                  g["latency_ms"].get<double>());
    }
  }
  if (opt.show_placement && shown.ranks.is_array()) {
    print_placement(opt.partition + (schedules.empty() ? "" : " for " + schedules.front()), shown.ranks);
    std::printf("  rank work max/mean: %.4f\n", shown.balance);
  }
  if (opt.show_batch) {
    for (int it = 0; it < opt.iterations; ++it) {
      std::printf("iteration %d batch:\n", it);
      for (std::size_t j = 0; j < results.batch_summaries[std::size_t(it)].size(); ++j) {
        const nlohmann::json& b = results.batch_summaries[std::size_t(it)][j];
        std::printf("  microbatch %2zu: %3d samples, %5d text + %5d image tokens, %2d images, %d clips, %4d frames; "
                    "sub-microbatches %s\n",
                    j, b["samples"].get<int>(), b["text_tokens"].get<int>(), b["image_tokens"].get<int>(),
                    b["images"].get<int>(), b["clips"].get<int>(), b["frames"].get<int>(),
                    b["sub_microbatches"].dump().c_str());
      }
    }
  }
  if (!schedules.empty()) {
    // Three bounds (dip/sim/lower_bounds.hpp): the classic one, with each rank's head and tail
    // (memory free), and under the memory cap.
    std::printf("%-12s %14s %8s %10s %10s %10s %12s %10s\n", "schedule", "iteration ms", "bubble", "vs bound",
                "vs tight", "vs cap", "peak memory", "plan ms");
  }
  for (std::size_t si = 0; si < schedules.size(); ++si) {
    const summary& s = sums[si];
    if (s.count == 0) {
      std::printf("%-12s failed: %s\n", schedules[si].c_str(), s.error.c_str());
      continue;
    }
    std::printf("%-12s %14.3f %8.4f %9.1f%% %9.1f%% %9.1f%% %12s %10.2f\n", schedules[si].c_str(), s.makespan_ms,
                s.bubble, 100.0 * s.gap, 100.0 * s.memory_free_gap, 100.0 * s.cap_gap, dip::to_string(s.peak).c_str(),
                s.plan_ms);
  }
}

// Exit status (docs/dip-plan.md): 0 every schedule planned every iteration; 3 some were
// refused (each refusal on stderr); 1 none planned; 2 bad input (main).
int exit_status(const run_results& results, std::size_t schedule_count) {
  std::size_t planned = 0, refused = 0;
  for (const auto& iteration : results.outcomes) {
    for (const schedule_outcome& o : iteration) (o.ok ? planned : refused) += 1;
  }
  if (schedule_count == 0 || refused == 0) return 0;
  return planned > 0 ? 3 : 1;
}

// Everything a run needs once the model, its cost model and the cluster are known.
template <dip::cost_model_like Costs>
int run(const cli_options& opt, const dip::multimodal_model& model, const Costs& costs,
        const dip::cluster_spec& cluster) {
  const dip::planner<Costs> planner(model, costs, cluster, planner_options_of(opt, model));
  const std::vector<std::string> schedules = requested_schedules(opt, planner.schedules());
  const run_results results = plan_iterations(planner, opt, schedules);
  const placement_section shown = describe_placement(planner, schedules);
  if (!opt.trace.empty()) {
    std::ofstream file(opt.trace);
    dip::require(bool(file), dip::errc::not_found, "--trace", "cannot write '" + opt.trace + "'");
    file << nlohmann::json{{"traceEvents", results.trace_events}, {"displayTimeUnit", "ms"}}.dump() << '\n';
  }
  const std::vector<summary> sums = summarize_outcomes(results, schedules.size());
  report_truncation(results.packing);
  if (opt.json) {
    print_json(planner, opt, schedules, results, sums, shown);
  } else {
    print_table(planner, opt, schedules, results, sums, shown);
  }
  return exit_status(results, schedules.size());
}

// The cluster from the flags, else as the model (preset or file) has it.
dip::cluster_spec cluster_from(const cli_options& opt, int pp, int tp, const std::string& gpu) {
  dip::cluster_spec cluster;
  cluster.pp = opt.pp ? opt.pp : pp;
  cluster.tp = opt.tp ? opt.tp : tp;
  cluster.gpu = dip::find_gpu(!opt.gpu.empty() ? opt.gpu : gpu);
  if (opt.memory_cap_gib > 0) cluster.memory_cap = dip::gib(opt.memory_cap_gib);
  cluster.p2p_latency = dip::microseconds(opt.latency_us);
  return cluster;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dip-plan: plan and simulate pipeline schedules for multimodal model training"};
  cli_options opt;
  app.add_option("--model,-m", opt.model,
                 "a model preset (vlm-s, vlm-m, vlm-l, t2v-s, t2v-l, llama3-8b, "
                 "qwen2-32b, qwen2-72b) or a model JSON file")
      ->capture_default_str();
  app.add_option("--pp", opt.pp, "pipeline-parallel ranks (default: the model's)")->check(CLI::Range(1, 4096));
  app.add_option("--tp", opt.tp, "tensor-parallel degree (default: the model's)")->check(CLI::Range(1, 4096));
  app.add_option("--gpu", opt.gpu, "GPU preset: H800, H100, H200, H20 (default: the model's, else H800)");
  app.add_option("--memory-cap-gib", opt.memory_cap_gib,
                 "memory per GPU that plans may use, GiB (default: the GPU preset's; e.g. less to leave room for "
                 "the framework)")
      ->check(CLI::Range(0.001, 1e6));
  app.add_option("--microbatches", opt.microbatches, "microbatches per iteration")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--iterations", opt.iterations, "iterations (batches) to plan")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--seed", opt.seed, "seed of the batch stream")->capture_default_str();
  app.add_option("--data", opt.data,
                 "batch stream: uniform, laion, obelics, scienceqa, video, mixed, dynamic, or a .jsonl trace file")
      ->capture_default_str();
  app.add_option("--partition", opt.partition,
                 "balanced (best contiguous split by time), megatron (by parameters) or dip (modality-aware)")
      ->capture_default_str();
  app.add_option(
         "--search-rollouts", opt.search_rollouts,
         "rollout budget of the dip schedule's segment search per batch (0: none; with --search-ms 0 the plan is "
         "reproducible for a given --threads)")
      ->capture_default_str();
  app.add_option("--search-ms", opt.search_ms, "time budget of the dip schedule's segment search per batch (0: none)")
      ->check(CLI::Range(0.0, 1e7))
      ->capture_default_str();
  app.add_option("--threads", opt.threads,
                 "threads of the dip schedule: its search and its memory phase (phase 3, one rank per thread; the same "
                 "plan on any count)")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--memory-strategies", opt.memory_strategies,
                 "let the dip schedule recompute or offload activations to fit more in flight (true/false)")
      ->capture_default_str();
  app.add_option("--fit-memory", opt.fit_memory,
                 "make every other schedule fit the GPU's memory with the cheapest activation recompute/offload, as a "
                 "trainer would (true), or report its peak as it is (false)")
      ->capture_default_str();
  app.add_option("--segments-per-rank", opt.segments_per_rank,
                 "segments (chunks) per rank of every chain in the modality-aware partition (default: the "
                 "partitioner's K per chain; optimus always uses 1)")
      ->check(CLI::Range(0, 64));
  app.add_option("--sub-microbatch-size", opt.sub_microbatch_size,
                 "images (or clips) per sub-microbatch B of the modality-aware partition's image and video chains "
                 "(default: the partitioner's choice, the smallest B within 95% of peak throughput)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--tune-segments", opt.tune_segments,
                 "choose each chain's segments per rank by planning two sample batches (around the partitioner's "
                 "rule) rather than by the rule alone")
      ->capture_default_str();
  app.add_flag("--show-placement", opt.show_placement, "print which layers of which module sit on which rank");
  app.add_flag("--show-batch", opt.show_batch,
               "print each microbatch's samples, tokens, images, frames and sub-microbatches");
  app.add_option("--schedules", opt.schedules,
                 "comma-separated: dip, static-dip, optimus, gpipe, 1f1b, interleaved, zb1p, zbv, dualpipev, or none")
      ->capture_default_str();
  app.add_option("--chunks", opt.chunks, "model chunks per rank for 'interleaved'")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--p2p-latency-us", opt.latency_us, "latency of one pipeline transfer, microseconds")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  app.add_option("--trace", opt.trace, "write the first iteration's simulated timeline as Chrome trace JSON");
  app.add_option("--export", opt.export_file,
                 "write the first iteration's plan of the first schedule as an action-list JSON file "
                 "(docs/plan-format.md)");
  app.add_option("--export-dir", opt.export_dir,
                 "write every iteration's plan of every schedule to DIR/<schedule>-<iteration>.json (DIR must exist)");
  app.add_option("--export-torch", opt.export_torch,
                 "write the first iteration's plan of the first schedule as a torch.distributed.pipelining "
                 "compute_only CSV (uniform microbatches, one chain, no recompute/offload)");
  app.add_flag("--json", opt.json, "print one JSON object instead of a table");
  CLI11_PARSE(app, argc, argv);

  try {
    const bool is_file = opt.model.ends_with(".json") || std::filesystem::exists(opt.model);
    if (is_file) {
      const dip::model_file file = dip::read_model_file(opt.model);
      const dip::cluster_spec cluster =
          cluster_from(opt, file.pp.value_or(1), file.tp.value_or(1), file.gpu.value_or("H800"));
      return run(opt, file.model, dip::cost_model_for(file, cluster.gpu, cluster.tp), cluster);
    }
    const dip::model_preset preset = dip::find_preset(opt.model);
    const dip::cluster_spec cluster = cluster_from(opt, preset.parallel.pp, preset.parallel.tp, preset.gpu);
    return run(opt, preset.model, dip::analytic_cost_model(cluster.gpu, cluster.tp), cluster);
  } catch (const dip::error& e) {
    std::fprintf(stderr, "dip-plan: error: %s\n", e.what());
    return 2;
  }
}
