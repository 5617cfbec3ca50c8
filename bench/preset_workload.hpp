// A benchmark workload from a preset, as dip::planner (dip/planner/planner.hpp) prepares it for
// the DIP schedule: the model on its modality-aware partition (the partitioner's rule for
// segments per rank, no tuning), batches from a named stream packed into microbatches and split
// for that placement, each turned into a stage graph, with the interleaver's options at the
// GPU's memory cap over NVLink. Shared by the search and memory-solver benchmarks so that they
// measure the planner's own instances.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <dip/batch/source.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/planner/planner.hpp>
#include <dip/schedule/dual_queue.hpp>
#include <dip/schedule/stage_graph.hpp>

namespace dip_bench {

struct search_workload {
  std::shared_ptr<const dip::stage_graph> graph;
  dip::interleave_options interleave;
};

class preset_batches {
 public:
  // `preset` as dip::find_preset names it; `data` as dip::make_batch_source does; the preset's
  // GPU, PP and TP.
  preset_batches(const std::string& preset, const std::string& data, std::uint64_t seed = 1)
      : preset_(dip::find_preset(preset)),
        planner_(preset_.model, dip::analytic_cost_model(dip::find_gpu(preset_.gpu), preset_.parallel.tp),
                 cluster_of(preset_), options()),
        source_(dip::make_batch_source(data, preset_.model, seed)) {}

  // The next batch of `microbatches` as a search workload: the stage graph the planner builds
  // for DIP (static-dip plans on the same placement and graph, without a search) and the
  // options it gives DIP's interleaver.
  search_workload next(std::size_t microbatches) {
    const dip::planned_batch planned = planner_.plan(source_.next_batch(microbatches), "static-dip");
    const dip::cluster_spec& cluster = planner_.cluster();
    dip::dip_planner_options dip_options;  // what the planner gives dip for this batch
    dip_options.memory_cap = cluster.cap();
    dip_options.weight_memory = planned.weight_memory;
    dip_options.comm = cluster.comm();
    search_workload out;
    out.graph = planned.plan.graph;
    out.interleave = dip::interleave_options_of(*out.graph, dip_options);
    return out;
  }

  const dip::gpu_spec& gpu() const noexcept { return planner_.cluster().gpu; }

 private:
  // NVLink between pipeline neighbours whatever the cluster's size: the benchmarks' instances
  // (bench/RESULTS.md) were measured so.
  static dip::cluster_spec cluster_of(const dip::model_preset& preset) {
    dip::cluster_spec cluster = dip::cluster_of(preset);
    cluster.link = cluster.gpu.nvlink;
    return cluster;
  }

  // The partitioner's K; static-dip's plan is neither fitted to the cap nor memory-optimised,
  // only its graph is used.
  static dip::planner_options options() {
    dip::planner_options o;
    o.tune_segments = false;
    o.fit_memory = false;
    o.search_ms = 0;
    return o;
  }

  dip::model_preset preset_;
  dip::planner<dip::analytic_cost_model> planner_;
  dip::batch_source source_;
};

}  // namespace dip_bench
