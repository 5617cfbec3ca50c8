// The search benchmarks' workload: VLM-L (PP 8, TP 8, H800) on the modality-aware partition,
// OBELICS-like batches of 32 packed microbatches (preset_workload.hpp). Shared by
// bench_segment_search.cpp and search_curve.cpp so that both measure the same instances.
#pragma once

#include <cstddef>

#include "preset_workload.hpp"

namespace dip_bench {

class vlm_l_batches : public preset_batches {
 public:
  vlm_l_batches() : preset_batches("vlm-l", "obelics") {}
  search_workload next(std::size_t microbatches = 32) { return preset_batches::next(microbatches); }
};

}  // namespace dip_bench
