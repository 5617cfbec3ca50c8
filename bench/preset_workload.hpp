// A benchmark workload from a preset: the model on its modality-aware partition (the
// partitioner's rule for segments per rank), batches from a named stream packed into
// microbatches, each turned into a stage graph with the interleaver's options (the GPU's memory
// cap, NVLink). Shared by the search and memory-solver benchmarks so that they measure the
// planner's own instances.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/dual_queue.hpp>
#include <dip/schedule/stage_graph.hpp>

namespace dip_bench {

struct search_workload {
  std::shared_ptr<const dip::stage_graph> graph;
  dip::interleave_options interleave;
};

class preset_batches {
 public:
  // `preset` as dip::find_preset names it; `data` as dip::make_batch_source does; the preset's GPU.
  preset_batches(const std::string& preset, const std::string& data, std::uint64_t seed = 1)
      : preset_(dip::find_preset(preset)),
        gpu_(dip::find_gpu(preset_.gpu)),
        costs_(gpu_, preset_.parallel.tp),
        part_(dip::partition_modalities(preset_.model, costs_, options())),
        source_(dip::make_batch_source(data, preset_.model, seed)) {}

  // The next batch of `microbatches` as a search workload.
  search_workload next(std::size_t microbatches) {
    const auto packed = source_.next_batch(microbatches);
    const dip::batch_work batch = dip::to_batch_work(dip::split_batch(packed, preset_.model, part_.policy, costs_));
    search_workload out;
    out.graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(preset_.model, part_.placement, batch, costs_));
    out.interleave.weight_memory = part_.weight_memory;
    out.interleave.memory_cap.assign(std::size_t(preset_.parallel.pp), gpu_.memory);
    out.interleave.comm = {{}, gpu_.nvlink};
    return out;
  }

  const dip::gpu_spec& gpu() const noexcept { return gpu_; }

 private:
  dip::partition_options options() const {
    dip::partition_options o;
    o.ranks = preset_.parallel.pp;
    o.memory = {preset_.parallel.tp, 16.0, gpu_.memory};
    return o;
  }

  dip::model_preset preset_;
  dip::gpu_spec gpu_;
  dip::analytic_cost_model costs_;
  dip::modality_partition part_;
  dip::batch_source source_;
};

}  // namespace dip_bench
