// Batch sources: where the planner's batches come from (`dip-plan --data NAME|FILE.jsonl`).
//
// @code
//   const dip::model_preset preset = dip::find_preset("vlm-s");
//   dip::batch_source source = dip::make_batch_source("obelics", preset.model, /*seed=*/1);
//   const dip::analytic_cost_model costs(dip::find_gpu("H800"), preset.parallel.tp);
//   for (int iteration = 0; iteration < 10; ++iteration) {
//     const std::vector<dip::packed_microbatch> packed = source.next_batch(8);
//     const auto split = dip::split_batch(packed, preset.model, policy, costs);
//     const dip::batch_work batch = dip::to_batch_work(split);  // -> build_stage_graph
//   }
// @endcode
//
// - "uniform": every microbatch the same, the shape of batch/uniform.hpp; split with
//   unsplit_policy it gives exactly uniform_batch(model, n, uniform_module_work) for the presets.
// - a synthetic name (synthetic.hpp): an endless stream from that seed.
// - "dynamic" (dynamic.hpp, vision-language models only): the paper's rising and falling image
//   counts, each microbatch the uniform packed sequence with that many images.
// - a path to a JSON Lines trace (trace.hpp): its samples in file order, wrapping around at the
//   end; the seed is not used.
// Samples are packed by the model's rules (packing.hpp); the open microbatch carries over from
// one global batch to the next, as in a trainer's data loader.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dip/batch/dynamic.hpp"
#include "dip/batch/packing.hpp"
#include "dip/batch/synthetic.hpp"
#include "dip/batch/trace.hpp"
#include "dip/batch/uniform.hpp"
#include "dip/core/error.hpp"
#include "dip/model/model.hpp"

namespace dip {

// The uniform microbatch of `model` as a packed microbatch (one sample): an image-text sequence
// of shape.llm_tokens tokens with shape.images images at the default size, one clip of
// shape.clip_seconds conditioned on shape.captions captions, or shape.llm_tokens of text.
inline packed_microbatch uniform_packed_microbatch(const multimodal_model& model,
                                                   const uniform_microbatch_shape& shape = {}) {
  packed_microbatch mb;
  mb.samples = {0};
  switch (packing_kind_of(model)) {
    case packing_kind::text_to_video: {
      const video_encoding& video = *find_video_encoding(model);
      const std::int64_t caption = std::llround(shape.caption_tokens);
      const std::int64_t captions = std::llround(shape.captions);
      const clip_tokens clip = resolve_clip(shape.clip_seconds, video);
      mb.clips.push_back({0, 0, shape.clip_seconds, clip.frames, clip.latent_tokens, caption * captions});
      mb.captions.assign(std::size_t(captions), caption);
      mb.text_tokens = caption * captions;
      break;
    }
    case packing_kind::vision_language: {
      const image_encoding& image = *find_image_encoding(model);
      const double side = shape.image_pixels / double(image.patch_size);
      const packed_image one{0, image.default_tokens, std::llround(side * side)};
      const std::int64_t llm_tokens = std::llround(shape.llm_tokens);
      mb.images.assign(std::size_t(std::llround(shape.images)), one);
      mb.image_tokens = one.tokens * std::int64_t(mb.images.size());
      mb.encoder_tokens = one.encoder_tokens * std::int64_t(mb.images.size());
      mb.text_tokens = llm_tokens - mb.image_tokens;
      mb.sequence_lengths = {llm_tokens};
      break;
    }
    case packing_kind::text:
      mb.text_tokens = std::llround(shape.llm_tokens);
      mb.sequence_lengths = {mb.text_tokens};
      break;
  }
  return mb;
}

// "uniform" and the synthetic sources (traces are given by path).
inline std::vector<std::string> batch_source_names() {
  std::vector<std::string> names{"uniform"};
  for (const std::string& n : synthetic_source_names()) names.push_back(n);
  names.push_back("dynamic");
  return names;
}

class batch_source;
inline batch_source make_batch_source(std::string_view data, const multimodal_model& model, std::uint64_t seed = 1,
                                      packing_limits limits = {});

class batch_source {
 public:
  const std::string& name() const noexcept { return name_; }
  packing_kind kind() const noexcept { return packer_.kind(); }
  // What packing has cut so far (all zero for "uniform").
  const packing_stats& stats() const noexcept { return packer_.stats(); }
  // Global batches handed out so far.
  std::uint64_t batches() const noexcept { return batches_; }

  // The packed microbatches of the next global batch. Throws dip::error for microbatches == 0,
  // and for samples the model cannot train on (naming the trace and the sample).
  std::vector<packed_microbatch> next_batch(std::size_t microbatches) {
    require(microbatches >= 1, errc::invalid_argument, "--microbatches", "must be >= 1");
    ++batches_;
    if (uniform_) return std::vector<packed_microbatch>(microbatches, *uniform_);
    if (dynamic_) {
      std::vector<packed_microbatch> batch;
      for (std::size_t images : dynamic_->next_batch(microbatches)) {
        batch.push_back(by_image_count_.at(images));
        batch.back().samples = {drawn_++};
      }
      return batch;
    }
    std::uint64_t dropped_in_a_row = 0;  // guards against a trace whose every sample is dropped
    while (packer_.ready() < microbatches) {
      const std::uint64_t dropped_before = packer_.stats().dropped_samples;
      const std::uint64_t index = drawn_++;
      if (synthetic_) {
        packer_.add(synthetic_->next(), index);
        continue;
      }
      const std::size_t position = std::size_t(index % trace_->size());
      try {
        packer_.add((*trace_)[position], index);
      } catch (const error& e) {
        throw error(e.code(), name_ + " sample " + std::to_string(position + 1), e.detail());
      }
      dropped_in_a_row = packer_.stats().dropped_samples > dropped_before ? dropped_in_a_row + 1 : 0;
      require(dropped_in_a_row <= trace_->size(), errc::invalid_argument, name_,
              "every sample is dropped: nothing in it that a " + std::string(to_string(packer_.kind())) +
                  " model trains on");
    }
    std::vector<packed_microbatch> batch;
    batch.reserve(microbatches);
    for (std::size_t j = 0; j < microbatches; ++j) batch.push_back(packer_.take());
    return batch;
  }

 private:
  friend batch_source make_batch_source(std::string_view, const multimodal_model&, std::uint64_t, packing_limits);

  batch_source(std::string name, const multimodal_model& model, packing_limits limits)
      : name_(std::move(name)), packer_(model, limits) {}

  std::string name_;
  sequence_packer packer_;
  std::optional<packed_microbatch> uniform_;
  std::optional<synthetic_samples> synthetic_;
  std::optional<dynamic_image_counts> dynamic_;
  std::vector<packed_microbatch> by_image_count_;  // "dynamic": the microbatch with k images at k
  std::shared_ptr<const std::vector<training_sample>> trace_;
  std::uint64_t drawn_ = 0;
  std::uint64_t batches_ = 0;
};

// A source for `data`: "uniform", a synthetic name, or a path to a .jsonl trace (read now).
// An unknown name is a dip::error(not_found) listing the known ones.
inline batch_source make_batch_source(std::string_view data, const multimodal_model& model, std::uint64_t seed,
                                      packing_limits limits) {
  batch_source source(std::string(data), model, limits);
  if (data == "uniform") {
    source.uniform_ = uniform_packed_microbatch(model);
  } else if (is_synthetic_source(data)) {
    source.synthetic_.emplace(data, seed);
  } else if (data == "dynamic") {
    require(packing_kind_of(model) == packing_kind::vision_language, errc::invalid_argument, "--data",
            "'dynamic' varies images per microbatch: it needs a vision-language model");
    source.dynamic_.emplace(seed);
    uniform_microbatch_shape shape;
    for (std::size_t k = 0; k <= std::size_t(dynamic_workload::peak_high); ++k) {
      shape.images = double(k);
      source.by_image_count_.push_back(uniform_packed_microbatch(model, shape));
      require(source.by_image_count_.back().text_tokens >= 0, errc::invalid_argument, "--data",
              "'dynamic': " + std::to_string(k) + " images do not fit one packed sequence of this model");
    }
  } else {
    const std::string path(data);
    const bool looks_like_trace = path.ends_with(".jsonl") || bool(std::ifstream(path));
    if (!looks_like_trace) {
      std::string known;
      for (const std::string& n : batch_source_names()) known += (known.empty() ? "" : ", ") + n;
      throw error(errc::not_found, "--data",
                  "unknown data '" + path + "' (known: " + known + ", or a path to a .jsonl trace)");
    }
    source.trace_ = std::make_shared<const std::vector<training_sample>>(read_trace(path));
  }
  return source;
}

}  // namespace dip
