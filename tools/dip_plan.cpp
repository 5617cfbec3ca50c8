// dip-plan: plans and simulates pipeline schedules for a model, a cluster and a batch stream.
//
//   model (preset | JSON) + cluster (--pp --tp --gpu) + batches (--data --microbatches)
//     --> per schedule: placement -> stage graph -> plan (validated) -> simulation
//     --> table | --json, and --trace FILE (Chrome trace of the first iteration)
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

#include <dip/batch/module_items.hpp>
#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/batch/uniform.hpp>
#include <dip/cost/model_flops.hpp>
#include <dip/dip.hpp>
#include <dip/io/chrome_trace.hpp>
#include <dip/io/plan_export.hpp>
#include <dip/io/torch_schedule_csv.hpp>
#include <dip/partition/baseline_partitions.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/partition/placement_report.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/dip_planner.hpp>
#include <dip/schedule/memory_strategy.hpp>
#include <dip/schedule/modality_baselines.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/segment_tuning.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

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
  int segments_per_rank = 0;  // 0: the partitioner's K per chain
  int sub_microbatch_size = 0;  // 0: the partitioner's B; else B of every image or clip chain
  bool tune_segments = true;  // tune K by planning sample batches (segment_tuning.hpp)
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
  dip::duration lower_bound{};
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
    const dip::segment_group& g = part.groups[gi];
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
      throw dip::error(e.code(), "--export-torch", "cannot write " + schedule + "'s plan as a torch schedule: " + e.detail());
    }
  }
}

// Everything a run needs once the model and its cost model are known.
template <dip::cost_model_like Costs>
int run(const cli_options& opt, const dip::multimodal_model& model, const Costs& costs, int pp, int tp,
        const dip::gpu_spec& gpu) {
  // "none": only the placement and the batches (--show-placement, --show-batch, --json).
  const std::vector<std::string> schedules = opt.schedules == "none" ? std::vector<std::string>{} : split_list(opt.schedules);
  dip::require(opt.schedules == "none" || !schedules.empty(), dip::errc::invalid_argument, "--schedules",
               "lists no schedule (use 'none' to plan only the placement and the batches)");
  for (const std::string& s : schedules) {
    bool known = s == "dip" || s == "static-dip" || s == "optimus";
    for (const std::string& b : dip::baseline_names()) known = known || b == s;
    std::string all = "dip, static-dip, optimus";
    for (const std::string& b : dip::baseline_names()) all += ", " + b;
    dip::require(known, dip::errc::not_found, "--schedules", "unknown schedule '" + s + "' (known: " + all + ")");
  }
  dip::require(opt.partition == "balanced" || opt.partition == "megatron" || opt.partition == "dip",
               dip::errc::not_found, "--partition",
               "unknown partition '" + opt.partition + "' (known: balanced, megatron, dip)");
  const auto uniform_work = [&](const dip::module_spec& m) { return dip::uniform_module_work(model, m); };
  // Pipeline neighbours share a node when the whole pipeline fits in one; otherwise the slowest
  // link they may cross is the network.
  const dip::communication_model comm{dip::microseconds(opt.latency_us),
                                      tp * pp <= gpu.gpus_per_node ? gpu.nvlink : gpu.network};
  const dip::weight_memory_rule memory{tp, 16.0, gpu.memory};

  // The modality-aware partition is fixed for the run; the classic ones depend on the chunks
  // per rank (v) of each schedule.
  // The "dip" schedule always runs on it, whatever --partition says.
  const auto is_modality_schedule = [](const std::string& name) {
    return name == "dip" || name == "static-dip" || name == "optimus";
  };
  const bool dip_scheduled =
      std::any_of(schedules.begin(), schedules.end(), [&](const std::string& s) { return s == "dip" || s == "static-dip"; });
  const bool optimus_scheduled = std::find(schedules.begin(), schedules.end(), "optimus") != schedules.end();
  const auto modality_options_for = [&](bool one_chunk_per_rank) {
    dip::partition_options options;
    options.ranks = pp;
    options.memory = memory;
    if (opt.sub_microbatch_size > 0) {
      // B counts images (or clips) per sub-microbatch: it is fixed for the chains that split
      // those; text chains keep the partitioner's choice.
      for (const dip::module_spec& m : model.modules()) {
        const dip::item_kind kind = dip::module_item_kind(model, m.id);
        if (kind == dip::item_kind::image || kind == dip::item_kind::clip) {
          options.sub_microbatch_size[m.name] = std::size_t(opt.sub_microbatch_size);
        }
      }
    }
    const int segments = one_chunk_per_rank ? 1 : opt.segments_per_rank;
    if (segments > 0) {
      for (const dip::module_spec& m : model.modules()) options.segments_per_rank[m.name] = std::size_t(segments);
    }
    return options;
  };
  const auto modality_partition_for = [&](bool one_chunk_per_rank) {
    return dip::partition_modalities(model, costs, modality_options_for(one_chunk_per_rank));
  };
  std::optional<dip::modality_partition> modality;
  std::vector<std::size_t> rule_segments;  // the partitioner's K per chain, when tuning changed it
  if ((opt.partition == "dip" || dip_scheduled) && opt.segments_per_rank == 0 && opt.tune_segments) {
    // Two sample batches from a differently seeded stream (a trace file: its first batches).
    dip::batch_source sample_source = dip::make_batch_source(opt.data, model, opt.seed + 0x5eed);
    std::vector<std::vector<dip::packed_microbatch>> samples;
    for (int i = 0; i < 2; ++i) samples.push_back(sample_source.next_batch(std::size_t(opt.microbatches)));
    dip::segment_tuning tuned = dip::tune_segments_per_rank(
        model, costs, modality_options_for(false), samples,
        {.memory_cap = gpu.memory, .weight_memory = {}, .comm = comm, .memory_strategies = opt.memory_strategies});
    modality = std::move(tuned.partition);
    std::vector<std::size_t> chosen;
    for (const dip::segment_group& g : modality->groups) chosen.push_back(g.segments_per_rank);
    if (chosen != tuned.trials.front().segments_per_rank) rule_segments = tuned.trials.front().segments_per_rank;
  } else if (opt.partition == "dip" || dip_scheduled) {
    modality = modality_partition_for(false);
  }
  // Optimus keeps the backbone a plain pipeline: one chunk per rank for every chain.
  std::optional<dip::modality_partition> optimus;
  if (optimus_scheduled) optimus = modality_partition_for(true);
  const dip::sub_microbatch_policy policy = opt.partition == "dip" ? modality->policy : dip::unsplit_policy(model);
  // Both modality-aware partitions split microbatches alike (B and the chains do not depend on
  // the segments per rank), so one split serves dip, static-dip and optimus.
  const dip::sub_microbatch_policy* modality_policy =
      modality ? &modality->policy : optimus ? &optimus->policy : nullptr;
  // One unit of work per module, as placements report chunk times: a sub-microbatch of B items
  // under the DIP partition, a whole uniform microbatch otherwise.
  const auto unit_work_under = [&](const dip::sub_microbatch_policy& split) {
    return [&](const dip::module_spec& m) {
    const std::size_t b = split.items_per_sub[m.id.index()];
    if (b == 0) return uniform_work(m);
    return dip::repeat(dip::default_item_profile(model, m.id).item, double(b));
    };
  };
  std::map<int, dip::placement> placements;  // classic partitions, by chunks per rank
  const auto placement_for = [&](const std::string& schedule) -> const dip::placement& {
    if (schedule == "optimus") return optimus->placement;
    if (opt.partition == "dip" || is_modality_schedule(schedule)) return modality->placement;
    const int v = schedule == "interleaved" ? opt.chunks : 1;
    auto found = placements.find(v);
    if (found == placements.end()) {
      found = placements
                  .emplace(v, opt.partition == "megatron"
                                  ? dip::megatron_partition(model, pp, v, memory)
                                  : dip::balanced_partition(model, costs, uniform_work, pp, v, memory))
                  .first;
    }
    return found->second;
  };

  dip::batch_source source = dip::make_batch_source(opt.data, model, opt.seed);
  std::vector<std::vector<schedule_outcome>> outcomes(std::size_t(opt.iterations));
  std::vector<dip::model_flops_count> iteration_flops(std::size_t(opt.iterations));
  std::vector<nlohmann::json> batch_summaries(std::size_t(opt.iterations), nlohmann::json::array());
  nlohmann::json trace_events = nlohmann::json::array();

  for (int it = 0; it < opt.iterations; ++it) {
    const std::vector<dip::packed_microbatch> packed = source.next_batch(std::size_t(opt.microbatches));
    const std::vector<dip::split_microbatch> split = dip::split_batch(packed, model, policy, costs);
    const dip::batch_work batch = dip::to_batch_work(split);
    const dip::batch_work modality_batch =
        !modality_policy || opt.partition == "dip"
            ? batch
            : dip::to_batch_work(dip::split_batch(packed, model, *modality_policy, costs));
    // Useful work of the batch, whatever the schedule (no recompute): what MFU divides by.
    iteration_flops[std::size_t(it)] = dip::batch_model_flops(model, batch);
    for (std::size_t j = 0; j < packed.size(); ++j) {
      nlohmann::json row = dip::to_json(dip::summarize(packed[j], split[j], model));
      std::int64_t latent_tokens = 0;  // the diffusion decoder's tokens (text-to-video)
      for (const dip::packed_clip& clip : packed[j].clips) latent_tokens += clip.latent_tokens;
      row["latent_tokens"] = latent_tokens;
      batch_summaries[std::size_t(it)].push_back(std::move(row));
    }
    for (std::size_t si = 0; si < schedules.size(); ++si) {
      const std::string& name = schedules[si];
      schedule_outcome& out = outcomes[std::size_t(it)].emplace_back();
      std::optional<dip::exported_plan> exported;  // for --export, --export-dir, --export-torch
      try {
        const auto start = std::chrono::steady_clock::now();
        const dip::placement& place = placement_for(name);
        const std::vector<dip::bytes> weights = dip::weight_bytes_per_rank(model, place, tp);
        auto graph = std::make_shared<const dip::stage_graph>(dip::build_stage_graph(
            model, place, is_modality_schedule(name) ? modality_batch : batch, costs,
            {.split_backward = name == "zb1p"}));
        dip::plan plan;
        if (name == "static-dip" || name == "optimus") {
          // With --fit-memory they fit the GPU by recompute/offload afterwards (below); without it,
          // by their in-flight limit alone (the cap lowers it).
          const dip::dip_planner_options planner{
              .memory_cap = opt.fit_memory ? std::nullopt : std::optional(gpu.memory), .weight_memory = weights, .comm = comm};
          plan = name == "optimus" ? dip::plan_optimus(graph, planner) : dip::plan_static_dip(graph, planner);
        } else if (name == "dip") {
          plan = dip::plan_dip_schedule(graph, {.memory_cap = gpu.memory,
                                                .weight_memory = weights,
                                                .comm = comm,
                                                .search_ms = opt.search_ms,
                                                .search_rollouts = opt.search_rollouts,
                                                .threads = opt.threads,
                                                .seed = opt.seed + std::uint64_t(it),
                                                .memory_strategies = opt.memory_strategies});
        } else {
          plan = dip::baseline_plan(name, graph);
        }
        if (name != "dip" && opt.fit_memory) {
          // As a trainer would turn on activation recompute: the fastest recompute/offload choice
          // that fits the GPU (phase 3's chooser), only where the plan does not fit as it is.
          try {
            dip::fit_memory(plan, gpu.memory, weights);
          } catch (const dip::error& e) {
            throw dip::error(dip::errc::infeasible, name,
                             "does not fit the GPU even with activation recompute or offload: " + e.detail());
          }
          dip::validate(plan, {.memory_cap = gpu.memory, .weight_memory = weights});
        } else if (name != "dip") {
          dip::validate(plan, {.memory_cap = std::nullopt, .weight_memory = weights});
        }
        out.plan_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        const bool traced = !opt.trace.empty() && it == 0;
        const dip::simulation_result result =
            dip::simulate(plan, {.comm = comm, .weight_memory = weights, .record_timeline = traced});
        if (traced) dip::append_chrome_trace(trace_events, plan, result, int(si), name);
        if (!opt.export_dir.empty() || (it == 0 && si == 0 && (!opt.export_file.empty() || !opt.export_torch.empty()))) {
          exported = dip::export_plan(plan, model, is_modality_schedule(name) ? modality_batch : batch, name, it);
        }
        out.ok = true;
        out.makespan = result.makespan;
        out.bubble = result.bubble_ratio;
        out.lower_bound = result.bounds.best();
        for (const dip::rank_stats& r : result.ranks) out.peak = std::max(out.peak, r.peak_memory);
      } catch (const dip::error& e) {
        out.error = e.what();
      }
      if (it == 0 && si == 0) write_first_plan_exports(opt, exported, name, out.error);
      if (exported && !opt.export_dir.empty()) {
        dip::write_plan_file(std::filesystem::path(opt.export_dir) / (name + "-" + std::to_string(it) + ".json"), *exported);
      }
    }
  }

  // The placement of the first schedule (all share it under --partition dip).
  nlohmann::json placement_doc;
  double balance = 0;
  try {
    const dip::placement& shown = placement_for(schedules.empty() ? "1f1b" : schedules.front());
    const bool shown_is_dip = modality && &shown == &modality->placement;
    placement_doc = placement_json(model, shown, costs, unit_work_under(shown_is_dip ? modality->policy : policy));
    balance = shown_is_dip ? modality->balance()
                       : dip::max_over_mean(dip::rank_totals(shown, dip::chunk_times(model, shown, costs, uniform_work),
                                                             [](const dip::chunk_spec&) { return 1.0; }));
  } catch (const dip::error& e) {
    placement_doc = {{"error", e.what()}};
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
                          {"microbatches", opt.microbatches}, {"data", opt.data}, {"partition", opt.partition},
                          {"gpus", pp * tp}, {"peak_flops_per_gpu", gpu.peak_bf16.base()},
                          {"placement", placement_doc}, {"placement_balance", balance}};
    if (modality) doc["segments"] = segments_json(model, *modality, rule_segments);
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
      const dip::model_flops_count& flops = iteration_flops[std::size_t(it)];
      iterations.push_back({{"index", it},
                            {"lower_bound_ms", lower},
                            {"model_flops", flops.flops},
                            {"model_flops_opaque_layers", flops.opaque_layers},
                            {"microbatches", batch_summaries[std::size_t(it)]},
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
      summary_json[schedules[si]] = {{"mean_makespan_ms", s.makespan_ms},
                                     {"mean_bubble_ratio", s.bubble},
                                     {"mean_lower_bound_gap", s.gap},
                                     {"max_peak_memory_bytes", s.peak.base()},
                                     {"mean_plan_ms", s.plan_ms}};
    }
    doc["summary"] = summary_json;
    std::cout << doc.dump(2) << '\n';
  } else {
    std::printf("model %s, pp %d, tp %d, %s, %d microbatches x %d iterations, data %s, partition %s\n",
                model.name().c_str(), pp, tp, gpu.name.c_str(), opt.microbatches, opt.iterations, opt.data.c_str(),
                opt.partition.c_str());
    if (modality) {
      for (const nlohmann::json& g : segments_json(model, *modality, rule_segments)) {
        std::printf("  chain %-24s B = %zu %ss per sub-microbatch, K = %zu segments per rank (rule: %zu, paper rule: "
                    "%zu), T = %.2f ms\n",
                    g["modules"].dump().c_str(), g["sub_microbatch_size"].get<std::size_t>(),
                    g["item"].get<std::string>().c_str(), g["segments_per_rank"].get<std::size_t>(),
                    g["rule_segments"].get<std::size_t>(), g["paper_segments"].get<std::size_t>(),
                    g["latency_ms"].get<double>());
      }
    }
    if (opt.show_placement && placement_doc.is_array()) {
      print_placement(opt.partition + (schedules.empty() ? "" : " for " + schedules.front()), placement_doc);
      std::printf("  rank work max/mean: %.4f\n", balance);
    }
    if (opt.show_batch) {
      for (int it = 0; it < opt.iterations; ++it) {
        std::printf("iteration %d batch:\n", it);
        for (std::size_t j = 0; j < batch_summaries[std::size_t(it)].size(); ++j) {
          const nlohmann::json& b = batch_summaries[std::size_t(it)][j];
          std::printf("  microbatch %2zu: %3d samples, %5d text + %5d image tokens, %2d images, %d clips, %4d frames; "
                      "sub-microbatches %s\n",
                      j, b["samples"].get<int>(), b["text_tokens"].get<int>(), b["image_tokens"].get<int>(),
                      b["images"].get<int>(), b["clips"].get<int>(), b["frames"].get<int>(),
                      b["sub_microbatches"].dump().c_str());
        }
      }
    }
    if (!schedules.empty()) std::printf("%-12s %14s %8s %10s %12s %10s\n", "schedule", "iteration ms", "bubble", "vs bound", "peak memory",
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
  bool any_ok = schedules.empty();
  for (const summary& s : sums) any_ok = any_ok || s.count > 0;
  return any_ok ? 0 : 1;
}

// The GPU with the memory cap the user asked for (--memory-cap-gib), else as the preset has it.
dip::gpu_spec with_memory_cap(dip::gpu_spec gpu, const cli_options& opt) {
  if (opt.memory_cap_gib > 0) gpu.memory = dip::gib(opt.memory_cap_gib);
  return gpu;
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
  app.add_option("--search-rollouts", opt.search_rollouts,
                 "rollout budget of the dip schedule's segment search per batch (0: none; with --search-ms 0 and "
                 "--threads 1 the plan is reproducible)")
      ->capture_default_str();
  app.add_option("--search-ms", opt.search_ms, "time budget of the dip schedule's segment search per batch (0: none)")
      ->check(CLI::Range(0.0, 1e7))
      ->capture_default_str();
  app.add_option("--threads", opt.threads, "search threads for the dip schedule")
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
  app.add_flag("--show-batch", opt.show_batch, "print each microbatch's samples, tokens, images, frames and sub-microbatches");
  app.add_option("--schedules", opt.schedules, "comma-separated: dip, static-dip, optimus, gpipe, 1f1b, interleaved, zb1p, or none")
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
      const int tp = opt.tp ? opt.tp : file.tp.value_or(1);
      const int pp = opt.pp ? opt.pp : file.pp.value_or(1);
      const dip::gpu_spec gpu = with_memory_cap(dip::find_gpu(!opt.gpu.empty() ? opt.gpu : file.gpu.value_or("H800")), opt);
      return run(opt, file.model, dip::cost_model_for(file, gpu, tp), pp, tp, gpu);
    }
    const dip::model_preset preset = dip::find_preset(opt.model);
    const int tp = opt.tp ? opt.tp : preset.parallel.tp;
    const int pp = opt.pp ? opt.pp : preset.parallel.pp;
    const dip::gpu_spec gpu = with_memory_cap(dip::find_gpu(!opt.gpu.empty() ? opt.gpu : preset.gpu), opt);
    return run(opt, preset.model, dip::analytic_cost_model(gpu, tp), pp, tp, gpu);
  } catch (const dip::error& e) {
    std::fprintf(stderr, "dip-plan: error: %s\n", e.what());
    return 2;
  }
}
