// What one *item* of a module is: the unit that the sub-microbatch splitter counts and the
// partitioner sizes sub-microbatches in (DESIGN.md: "a microbatch with N_i items of modality i
// becomes M_i = ceil(N_i / B_i) sub-microbatches").
//
// The kind follows from the module's place in the model, so a model file needs no extra field:
// - a module with an image encoding (a vision encoder) counts images;
// - a module with a video encoding (a diffusion decoder, a video encoder) counts clips;
// - a projector counts what its producer counts (an image adapter works per image, a caption
//   adapter per caption); a projector without a producer counts what its consumer counts;
// - any other module that feeds a video module, directly or through others, encodes the
//   clips' captions and counts captions;
// - anything else (an LLM backbone, a plain LLM) counts packed sequences: the microbatch is one
//   packed sequence, so it has one item and is never split.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "dip/batch/uniform.hpp"
#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/cost/work.hpp"
#include "dip/model/model.hpp"

namespace dip {

enum class item_kind { image, clip, caption, sequence };

constexpr std::string_view to_string(item_kind kind) noexcept {
  switch (kind) {
    case item_kind::image: return "image";
    case item_kind::clip: return "clip";
    case item_kind::caption: return "caption";
    case item_kind::sequence: return "sequence";
  }
  return "?";
}

namespace detail {

inline bool feeds_video(const multimodal_model& model, module_id id) {
  for (module_id next : model.outputs_of(id)) {
    if (model.module(next).video || feeds_video(model, next)) return true;
  }
  return false;
}

inline item_kind item_kind_of(const multimodal_model& model, module_id id, int depth) {
  const module_spec& m = model.module(id);
  if (m.image) return item_kind::image;
  if (m.video) return item_kind::clip;
  if (m.role == module_role::projector && depth < int(model.module_count())) {
    const std::vector<module_id> producers = model.inputs_of(id);
    if (!producers.empty()) return item_kind_of(model, producers.front(), depth + 1);
    const std::vector<module_id> consumers = model.outputs_of(id);
    if (!consumers.empty()) return item_kind_of(model, consumers.front(), depth + 1);
  }
  return feeds_video(model, id) ? item_kind::caption : item_kind::sequence;
}

// The image encoding that decides a module's image tokens: its own, else the nearest upstream.
inline const image_encoding* image_encoding_for(const multimodal_model& model, module_id id) {
  const module_spec& m = model.module(id);
  if (m.image) return &*m.image;
  for (module_id producer : model.inputs_of(id)) {
    if (const image_encoding* found = image_encoding_for(model, producer)) return found;
  }
  return nullptr;
}

// The video encoding downstream of (or at) a module, for caption counts.
inline const video_encoding* video_encoding_for(const multimodal_model& model, module_id id) {
  const module_spec& m = model.module(id);
  if (m.video) return &*m.video;
  for (module_id consumer : model.outputs_of(id)) {
    if (const video_encoding* found = video_encoding_for(model, consumer)) return found;
  }
  return nullptr;
}

}  // namespace detail

// The item kind of module `id` (rules above).
inline item_kind module_item_kind(const multimodal_model& model, module_id id) {
  return detail::item_kind_of(model, id, 0);
}

// A module's typical item and how many a microbatch holds: what the partitioner needs to pick
// the sub-microbatch size B_i before any real batch is seen.
struct module_item_profile {
  item_kind kind = item_kind::sequence;
  work_unit item;                      // the work of one typical item for this module
  double typical_per_microbatch = 1;   // N_i of a typical packed microbatch
  std::size_t max_per_microbatch = 1;  // the packing limit on N_i (48 images, 8 clips, ...)
};

// Packing limits of DESIGN.md: at most 48 images in an 8192-token sequence (VLM), at most 8 clips
// per microbatch (T2V).
inline constexpr std::size_t max_images_per_microbatch = 48;
inline constexpr std::size_t max_clips_per_microbatch = 8;

// The typical item of module `id` under `shape` (the uniform microbatch of batch/uniform.hpp):
// an image at the default size, a clip of shape.clip_seconds conditioned on one caption, a
// caption of shape.caption_tokens, or the whole packed sequence.
inline module_item_profile default_item_profile(const multimodal_model& model, module_id id,
                                                const uniform_microbatch_shape& shape = {}) {
  const module_spec& m = model.module(id);
  module_item_profile profile;
  profile.kind = module_item_kind(model, id);
  switch (profile.kind) {
    case item_kind::image: {
      const image_encoding* encoding = detail::image_encoding_for(model, id);
      if (m.image) {
        const double side = shape.image_pixels / double(m.image->patch_size);
        profile.item = work_unit::sequence(side * side);
      } else {
        const double tokens = encoding ? double(encoding->default_tokens) : double(presets::image_tokens);
        profile.item = work_unit::sequence(tokens);
      }
      profile.typical_per_microbatch = shape.images;
      profile.max_per_microbatch = max_images_per_microbatch;
      break;
    }
    case item_kind::clip: {
      const double tokens = shape.clip_seconds * m.video->fps * double(m.video->tokens_per_frame);
      profile.item = work_unit::conditioned_sequence(tokens, shape.caption_tokens);
      profile.typical_per_microbatch = 1;
      profile.max_per_microbatch = max_clips_per_microbatch;
      break;
    }
    case item_kind::caption:
      profile.item = work_unit::sequence(shape.caption_tokens);
      profile.typical_per_microbatch = shape.captions;
      profile.max_per_microbatch = max_clips_per_microbatch;
      break;
    case item_kind::sequence:
      profile.item = work_unit::sequence(shape.llm_tokens);
      profile.typical_per_microbatch = 1;
      profile.max_per_microbatch = 1;
      break;
  }
  return profile;
}

// `count` copies of `item`, as one sub-microbatch holding them sees its work.
inline work_unit repeat(const work_unit& item, double count) noexcept {
  return {item.sequences * count, item.tokens * count, item.token_pairs * count, item.context_tokens * count,
          item.context_pairs * count};
}

// How a microbatch's items become sub-microbatches, per module (indexed by module id):
// `items_per_sub[m]` is B_m (0: never split, one sub-microbatch holds all the module's items);
// modules with the same `bin_group[m]` must be split identically (they sit on one pipeline
// chain, such as a vision encoder and its projector, and so must see the same items in the
// same sub-microbatch). The partitioner produces one; `unsplit_policy` splits nothing.
struct sub_microbatch_policy {
  std::vector<std::size_t> items_per_sub;
  std::vector<std::size_t> bin_group;
};

inline sub_microbatch_policy unsplit_policy(const multimodal_model& model) {
  sub_microbatch_policy policy;
  policy.items_per_sub.assign(model.module_count(), 0);
  for (std::size_t m = 0; m < model.module_count(); ++m) policy.bin_group.push_back(m);
  return policy;
}

// Throws dip::error if the policy does not fit the model: wrong sizes, or a bin group whose
// modules count different item kinds or use different B.
inline void validate(const sub_microbatch_policy& policy, const multimodal_model& model) {
  const std::size_t n = model.module_count();
  require(policy.items_per_sub.size() == n && policy.bin_group.size() == n, errc::invalid_argument,
          "sub_microbatch_policy", "needs one entry per module (" + std::to_string(n) + ")");
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = a + 1; b < n; ++b) {
      if (policy.bin_group[a] != policy.bin_group[b]) continue;
      const module_id ia = module_id::from_index(a), ib = module_id::from_index(b);
      const std::string pair = "modules '" + model.module(ia).name + "' and '" + model.module(ib).name + "'";
      require(module_item_kind(model, ia) == module_item_kind(model, ib), errc::invalid_argument,
              "sub_microbatch_policy", pair + " share bins but count different items");
      require(policy.items_per_sub[a] == policy.items_per_sub[b], errc::invalid_argument, "sub_microbatch_policy",
              pair + " share bins but have different sub-microbatch sizes");
    }
  }
}

}  // namespace dip
