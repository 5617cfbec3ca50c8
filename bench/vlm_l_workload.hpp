// The search benchmarks' workload: VLM-L (PP 8, TP 8, H800) on the modality-aware partition,
// OBELICS-like batches of 32 packed microbatches, each a stage graph with the interleaver's
// options (the GPU's memory cap, NVLink). Shared by bench_segment_search.cpp and
// search_curve.cpp so that both measure the same instances.
#pragma once

#include <cstddef>
#include <memory>

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

class vlm_l_batches {
 public:
  vlm_l_batches()
      : preset_(dip::find_preset("vlm-l")),
        gpu_(dip::find_gpu("H800")),
        costs_(gpu_, preset_.parallel.tp),
        part_(dip::partition_modalities(preset_.model, costs_, options())),
        source_(dip::make_batch_source("obelics", preset_.model, 1)) {}

  // The next batch of `microbatches` as a search workload.
  search_workload next(std::size_t microbatches = 32) {
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
