// Fuzz target: JSON Lines workload traces (dip/batch/trace.hpp) and the packer that turns their
// samples into microbatches (dip/batch/packing.hpp), as `dip-plan --data FILE.jsonl` uses them.
//
//   bytes --parse_trace--> samples --sequence_packer (vlm-s, t2v-s, llama3-8b)--> microbatches
//         --split_batch--> sub-microbatches
//
// Parsing and packing either succeed or throw dip::error; anything else is a bug. Every packed
// microbatch must keep the packer's documented limits (tokens, images, clips, seconds).
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <dip/batch/module_items.hpp>
#include <dip/batch/packing.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/batch/trace.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/hardware.hpp>
#include <dip/model/presets.hpp>

#include "fuzz_check.hpp"

namespace {

constexpr std::size_t microbatches_wanted = 4;

// One model per packing rule: vision-language, text-to-video, text only.
const std::vector<dip::model_preset>& models() {
  static const std::vector<dip::model_preset> all{dip::find_preset("vlm-s"), dip::find_preset("t2v-s"),
                                                  dip::find_preset("llama3-8b")};
  return all;
}

void check_limits(const dip::packed_microbatch& mb, dip::packing_kind kind, const dip::packing_limits& limits) {
  using dip::fuzz::check;
  check(!mb.samples.empty(), "a packed microbatch holds a sample");
  check(mb.clips.size() <= limits.max_clips, "clips per microbatch within max_clips");
  check(mb.images.size() <= limits.max_images, "images per microbatch within max_images");
  check(mb.seconds() <= limits.max_seconds + 1e-6, "clip seconds per microbatch within max_seconds");
  if (kind == dip::packing_kind::text_to_video) {
    check(mb.images.empty() && mb.sequence_lengths.empty(), "a text-to-video microbatch packs clips only");
    for (const dip::packed_clip& c : mb.clips) check(c.seconds > 0 && c.frames >= 0, "a clip piece has a length");
    return;
  }
  check(mb.clips.empty(), "a sequence microbatch holds no clips");
  check(mb.text_tokens >= 0 && mb.image_tokens >= 0, "token counts are not negative");
  check(mb.llm_tokens() <= limits.max_tokens, "LLM tokens per microbatch within max_tokens");
  const std::int64_t packed = std::accumulate(mb.sequence_lengths.begin(), mb.sequence_lengths.end(), std::int64_t{0});
  check(packed == mb.llm_tokens(), "the sequence lengths add up to the packed tokens");
  if (kind == dip::packing_kind::text) check(mb.images.empty(), "a text model packs no images");
}

// Packs the trace, wrapping around, until a few microbatches are ready, as batch_source does;
// then splits them as dip-plan does without a modality partition.
void pack_and_split(const std::vector<dip::training_sample>& samples, const dip::model_preset& preset) {
  const dip::multimodal_model& model = preset.model;
  dip::sequence_packer packer(model);
  // Two passes over the trace are enough to fill the microbatches or to see that every sample
  // is dropped (batch_source reports the latter as an error).
  for (std::size_t i = 0; i < 2 * samples.size() && packer.ready() < microbatches_wanted; ++i) {
    packer.add(samples[i % samples.size()], i);
  }
  packer.flush();
  std::vector<dip::packed_microbatch> batch;
  while (packer.ready() > 0 && batch.size() < microbatches_wanted) batch.push_back(packer.take());
  for (const dip::packed_microbatch& mb : batch) check_limits(mb, packer.kind(), packer.limits());
  if (batch.empty()) return;

  static const dip::analytic_cost_model costs(dip::find_gpu("H800"), 4);
  const std::vector<dip::split_microbatch> split = dip::split_batch(batch, model, dip::unsplit_policy(model), costs);
  dip::fuzz::check(dip::to_batch_work(split).microbatches.size() == batch.size(), "one split per microbatch");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  std::vector<dip::training_sample> samples;
  try {
    samples = dip::parse_trace(in, "fuzz.jsonl");
  } catch (const dip::error&) {
    return 0;
  }
  dip::fuzz::check(!samples.empty(), "a parsed trace has samples");
  for (const dip::model_preset& preset : models()) {
    try {
      pack_and_split(samples, preset);
    } catch (const dip::error&) {
      // a sample this model cannot train on (clips for a vision-language model, ...)
    }
  }
  return 0;
}
