// dip::batch_work: what one batch asks of each module, the input of a stage graph: per
// microbatch, per module (indexed by module id), the work units of its sub-microbatches. The
// splitter (dip/batch/splitter.hpp) produces it from packed microbatches; tests and benches build
// uniform ones with uniform_batch.
#pragma once

#include <cstddef>
#include <vector>

#include "dip/cost/work.hpp"
#include "dip/model/model.hpp"

namespace dip {

// The work of one microbatch: for every module (indexed by module id), its sub-microbatches.
// A module that the microbatch does not use may have no entries... but every module must have
// at least one (possibly empty) work unit so that the stages exist; see `uniform_batch`.
struct microbatch_work {
  std::vector<std::vector<work_unit>> modules;
};

struct batch_work {
  std::vector<microbatch_work> microbatches;
};

// The same batch with every module's sub-microbatches summed into one: what a classic pipeline,
// which never splits a microbatch, runs.
inline batch_work merge_sub_microbatches(const batch_work& batch) {
  batch_work merged;
  for (const microbatch_work& mb : batch.microbatches) {
    microbatch_work whole;
    for (const std::vector<work_unit>& subs : mb.modules) {
      work_unit total;
      for (const work_unit& w : subs) total += w;
      whole.modules.push_back({total});
    }
    merged.microbatches.push_back(std::move(whole));
  }
  return merged;
}

// A batch of `microbatches` identical microbatches, one sub-microbatch per module, each module
// doing `work_of(module)`.
template <class WorkOf>
batch_work uniform_batch(const multimodal_model& model, std::size_t microbatches, WorkOf&& work_of) {
  microbatch_work mb;
  for (const module_spec& m : model.modules()) mb.modules.push_back({work_of(m)});
  return batch_work{std::vector<microbatch_work>(microbatches, mb)};
}

}  // namespace dip
