// Fuzz target: model JSON files (dip/io/model_json.hpp).
//
//   bytes --parse_model_json--> model_file --cost_model_for--> costs
//         --dip::planner (pp 1..4): the classic and modality-aware placements--> placements
//         --pack + split a fixed trace--> sub-microbatches
//
// Whatever the bytes, each step either succeeds or throws dip::error: any other exception, a
// crash, a sanitizer report or a hang is a bug. A model that loads must also price, partition
// and pack a trace (or say why not with a dip::error), because dip-plan does exactly that with
// a user's file; packing is where the file's image and video encodings turn into token counts.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include <dip/batch/packing.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/batch/trace.hpp>
#include <dip/io/model_json.hpp>
#include <dip/model/hardware.hpp>
#include <dip/planner/planner.hpp>

#include "fuzz_check.hpp"

namespace {

constexpr std::size_t max_partitioned_layers = 1024;

// Partitions `file` the ways dip-plan does for pipeline depth `pp`: the planner dip-plan builds
// for the file (its GPU and TP), asked for the placements of a classic schedule and of the
// modality-aware ones (K per chain from the partitioner's rule: tuning plans batches, which
// fuzz_plan_batch covers).
void partition_model(const dip::model_file& file, int pp) {
  dip::cluster_spec cluster;
  cluster.pp = pp;
  cluster.tp = file.tp.value_or(1);
  cluster.gpu = dip::find_gpu(file.gpu.value_or("H800"));
  dip::planner_options options;
  options.tune_segments = false;
  const dip::planner planner(file.model, dip::cost_model_for(file, cluster.gpu, cluster.tp), cluster, options);
  dip::fuzz::check(planner.placement_of("1f1b").ranks == pp, "a balanced partition has the ranks it was asked for");
  dip::fuzz::check(planner.placement_of("dip").ranks == pp, "a modality partition has the ranks it was asked for");
}

// A few samples of each kind a trace holds: default-size, explicit-token and pixel-size images
// with text, and clips shorter and longer than a typical max_clip_seconds.
std::vector<dip::training_sample> samples_for(dip::packing_kind kind) {
  if (kind == dip::packing_kind::text_to_video) {
    return {{20, {}, {{30.0}}}, {8, {}, {{2.5}, {16.0}}}, {0, {}, {{0.04}}}};
  }
  return {{500, {dip::trace_image::default_size(), dip::trace_image::with_tokens(169)}, {}},
          {14, {dip::trace_image::with_pixels(640, 480)}, {}},
          {9000, {}, {}}};
}

// Packs and splits those samples as dip-plan --data FILE.jsonl does with this model.
void pack_trace(const dip::model_file& file) {
  const dip::multimodal_model& model = file.model;
  const std::vector<dip::packed_microbatch> batch = dip::pack_samples(samples_for(dip::packing_kind_of(model)), model);
  dip::fuzz::check(!batch.empty(), "the samples fill a microbatch");
  const auto costs = dip::cost_model_for(file, dip::find_gpu(file.gpu.value_or("H800")), file.tp.value_or(1));
  const std::vector<dip::split_microbatch> split = dip::split_batch(batch, model, dip::unsplit_policy(model), costs);
  dip::fuzz::check(split.size() == batch.size(), "one split per microbatch");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<dip::model_file> file;
  try {
    file = dip::parse_model_json(text, "fuzz.json");
  } catch (const dip::error&) {
    return 0;  // rejected with a message: the reader did its job
  }
  // The file's own pipeline depth when it is small, else a small one: the partitioners' cost
  // grows with the ranks, and the fuzzer looks for wrong answers, not slow ones.
  const int pp = std::clamp(file->pp.value_or(2), 1, 4);
  // The exact min-max cut is O(parts x layers^2) at worst (partition/min_max.hpp): a file of
  // 8000 layers takes seconds, which is the algorithm's known cost, not a hang. Real models
  // have a few hundred layers.
  std::size_t layers = 0;
  for (const dip::module_spec& m : file->model.modules()) layers += m.layers.size();
  try {
    if (layers <= max_partitioned_layers) partition_model(*file, pp);
  } catch (const dip::error&) {
    // infeasible (more ranks than layers, weights beyond memory) or another reasoned refusal
  }
  try {
    pack_trace(*file);
  } catch (const dip::error&) {
  }
  return 0;
}
