// From (model, cluster, packed batch, schedule name) to a validated, simulated plan: the steps
// dip-plan takes for one schedule and one iteration (tools/dip_plan.cpp, `run`), with the same
// defaults, so that the Python bindings and the command line agree on every number.
//
//   placement (balanced | megatron | modality-aware, tuned on sample batches)
//     -> split into sub-microbatches -> stage graph -> plan (dip planner | static-dip | optimus
//     | baseline, fitted to memory) -> validate -> simulate (with a timeline)
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <dip/batch/module_items.hpp>
#include <dip/batch/packing.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/batch/uniform.hpp>
#include <dip/core/error.hpp>
#include <dip/model/hardware.hpp>
#include <dip/partition/baseline_partitions.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/dip_planner.hpp>
#include <dip/schedule/modality_baselines.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/segment_tuning.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

#include "model_handle.hpp"

namespace dip::python {

// dip-plan's flags of the same names; 0 / empty means "the model's" or "the default".
struct plan_request {
  std::string schedule = "dip";
  int pp = 0;
  int tp = 0;
  std::string gpu;
  double memory_cap_gib = 0;  // 0: the GPU's memory
  std::string partition = "balanced";
  double search_ms = 200;
  std::size_t search_rollouts = 0;
  unsigned threads = 1;
  std::uint64_t seed = 0;
  int chunks = 2;  // chunks per rank of "interleaved"
  double p2p_latency_us = 0;
  bool memory_strategies = true;
  bool fit_memory = true;
  bool tune_segments = true;
  int segments_per_rank = 0;    // 0: the partitioner's (or tuned) K
  int sub_microbatch_size = 0;  // 0: the partitioner's B
};

struct planned_batch {
  std::string schedule;
  std::string partition;  // the placement it ran on: balanced, megatron, dip or optimus
  int pp = 0;
  int tp = 0;
  gpu_spec gpu;  // memory = the cap plans had to fit
  plan result;
  simulation_result simulation;
  std::vector<bytes> weight_memory;
  std::vector<split_microbatch> split;
  double plan_ms = 0;
};

inline std::vector<std::string> schedule_names() {
  std::vector<std::string> names{"dip", "static-dip", "optimus"};
  for (const std::string& b : baseline_names()) names.push_back(b);
  return names;
}

inline bool is_modality_schedule(const std::string& name) {
  return name == "dip" || name == "static-dip" || name == "optimus";
}

inline void check_request(const plan_request& r) {
  std::string known;
  bool found = false;
  for (const std::string& s : schedule_names()) {
    known += (known.empty() ? "" : ", ") + s;
    found = found || s == r.schedule;
  }
  require(found, errc::not_found, "schedule", "unknown schedule '" + r.schedule + "' (known: " + known + ")");
  require(r.partition == "balanced" || r.partition == "megatron" || r.partition == "dip", errc::not_found,
          "partition", "unknown partition '" + r.partition + "' (known: balanced, megatron, dip)");
  require(r.pp >= 0 && r.tp >= 0, errc::invalid_argument, "pp/tp", "must be >= 1");
  require(r.memory_cap_gib >= 0, errc::invalid_argument, "memory_cap_gib", "must be > 0");
  require(r.search_ms >= 0, errc::invalid_argument, "search_ms", "must be >= 0");
  require(r.chunks >= 1, errc::invalid_argument, "chunks", "must be >= 1");
  require(r.threads >= 1, errc::invalid_argument, "threads", "must be >= 1");
  require(r.p2p_latency_us >= 0, errc::invalid_argument, "p2p_latency_us", "must be >= 0");
  require(r.segments_per_rank >= 0, errc::invalid_argument, "segments_per_rank", "must be >= 0");
  require(r.sub_microbatch_size >= 0, errc::invalid_argument, "sub_microbatch_size", "must be >= 0");
}

// Plans `batch` with `request.schedule`. `tuning_batches` are the sample batches the segments per
// rank are tuned on (dip and static-dip; dip-plan draws two from the data stream); empty: the
// batch itself. Throws dip::error for anything dip-plan reports as an error.
inline planned_batch plan_packed_batch(const model_handle& handle, const std::vector<packed_microbatch>& batch,
                                       const plan_request& request,
                                       const std::vector<std::vector<packed_microbatch>>& tuning_batches = {}) {
  check_request(request);
  require(!batch.empty(), errc::invalid_argument, "batch", "has no microbatches");
  const multimodal_model& model = handle.model;
  const std::string& name = request.schedule;
  planned_batch out;
  out.schedule = name;
  out.pp = request.pp ? request.pp : handle.pp;
  out.tp = request.tp ? request.tp : handle.tp;
  out.gpu = find_gpu(!request.gpu.empty() ? request.gpu : handle.gpu);
  if (request.memory_cap_gib > 0) out.gpu.memory = gib(request.memory_cap_gib);
  const gpu_spec& gpu = out.gpu;
  const int pp = out.pp, tp = out.tp;
  const cost_model costs = handle.costs(gpu, tp);

  // Pipeline neighbours share a node when the whole pipeline fits in one (as dip-plan).
  const communication_model comm{microseconds(request.p2p_latency_us),
                                 tp * pp <= gpu.gpus_per_node ? gpu.nvlink : gpu.network};
  const weight_memory_rule memory{tp, 16.0, gpu.memory};
  const auto uniform_work = [&](const module_spec& m) { return uniform_module_work(model, m); };

  const auto modality_options_for = [&](bool one_chunk_per_rank) {
    partition_options options;
    options.ranks = pp;
    options.memory = memory;
    if (request.sub_microbatch_size > 0) {
      for (const module_spec& m : model.modules()) {
        const item_kind kind = module_item_kind(model, m.id);
        if (kind == item_kind::image || kind == item_kind::clip) {
          options.sub_microbatch_size[m.name] = std::size_t(request.sub_microbatch_size);
        }
      }
    }
    const int segments = one_chunk_per_rank ? 1 : request.segments_per_rank;
    if (segments > 0) {
      for (const module_spec& m : model.modules()) options.segments_per_rank[m.name] = std::size_t(segments);
    }
    return options;
  };

  // The placement and how microbatches are split for it.
  std::optional<modality_partition> modality;
  placement place;
  sub_microbatch_policy policy = unsplit_policy(model);
  if (name == "optimus") {
    // Optimus keeps the backbone a plain pipeline: one chunk per rank for every chain.
    modality = partition_modalities(model, costs, modality_options_for(true));
    out.partition = "optimus";
  } else if (is_modality_schedule(name) || request.partition == "dip") {
    if (request.segments_per_rank == 0 && request.tune_segments) {
      const std::vector<std::vector<packed_microbatch>> samples =
          tuning_batches.empty() ? std::vector<std::vector<packed_microbatch>>{batch} : tuning_batches;
      modality = std::move(tune_segments_per_rank(model, costs, modality_options_for(false), samples,
                                                  {.memory_cap = gpu.memory,
                                                   .weight_memory = {},
                                                   .comm = comm,
                                                   .memory_strategies = request.memory_strategies})
                               .partition);
    } else {
      modality = partition_modalities(model, costs, modality_options_for(false));
    }
    out.partition = "dip";
  }
  if (modality) {
    place = modality->placement;
    policy = modality->policy;
  } else {
    const int v = name == "interleaved" ? request.chunks : 1;
    place = request.partition == "megatron" ? megatron_partition(model, pp, v, memory)
                                            : balanced_partition(model, costs, uniform_work, pp, v, memory);
    out.partition = request.partition;
  }

  out.split = split_batch(batch, model, policy, costs);
  // Planning time as dip-plan reports it: graph, plan and memory fit, not the placement.
  const auto start = std::chrono::steady_clock::now();
  out.weight_memory = weight_bytes_per_rank(model, place, tp);
  auto graph = std::make_shared<const stage_graph>(
      build_stage_graph(model, place, to_batch_work(out.split), costs, {.split_backward = name == "zb1p"}));

  plan p;
  if (name == "static-dip" || name == "optimus") {
    // With fit_memory they fit the GPU by recompute/offload afterwards (below); without it, by
    // their in-flight limit alone (the cap lowers it).
    const dip_planner_options planner{.memory_cap = request.fit_memory ? std::nullopt : std::optional(gpu.memory),
                                      .weight_memory = out.weight_memory,
                                      .comm = comm};
    p = name == "optimus" ? plan_optimus(graph, planner) : plan_static_dip(graph, planner);
  } else if (name == "dip") {
    p = plan_dip_schedule(graph, {.memory_cap = gpu.memory,
                                  .weight_memory = out.weight_memory,
                                  .comm = comm,
                                  .search_ms = request.search_ms,
                                  .search_rollouts = request.search_rollouts,
                                  .threads = request.threads,
                                  .seed = request.seed,
                                  .memory_strategies = request.memory_strategies});
  } else {
    p = baseline_plan(name, graph);
  }
  if (name != "dip" && request.fit_memory) {
    // As a trainer would turn on activation recompute: the fastest recompute/offload choice that
    // fits the GPU, only where the plan does not fit as it is.
    try {
      fit_memory(p, gpu.memory, out.weight_memory);
    } catch (const error& e) {
      throw error(errc::infeasible, name,
                  "does not fit the GPU even with activation recompute or offload: " + e.detail());
    }
    validate(p, {.memory_cap = gpu.memory, .weight_memory = out.weight_memory});
  } else if (name != "dip") {
    validate(p, {.memory_cap = std::nullopt, .weight_memory = out.weight_memory});
  }
  out.plan_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  out.simulation = simulate(p, {.comm = comm, .weight_memory = out.weight_memory, .record_timeline = true});
  out.result = std::move(p);
  return out;
}

}  // namespace dip::python
