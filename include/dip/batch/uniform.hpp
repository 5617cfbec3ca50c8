// Uniform batches: every microbatch the same, the "uniform" data of dip-plan and the workload
// under which the classic schedules' closed forms hold.
//
// One microbatch follows DESIGN.md's packing: 8192 LLM tokens per packed sequence holding 10
// images at the model's default size (each 169 tokens for the LLM, (728/14)^2 = 2704 patch tokens
// for the encoder); for text-to-video, one 16 s clip (fps x seconds x tokens per frame latent
// tokens) conditioned on 8 captions of 64 tokens.
#pragma once

#include "dip/cost/work.hpp"
#include "dip/model/model.hpp"
#include "dip/model/presets.hpp"

namespace dip {

struct uniform_microbatch_shape {
  double images = 10;
  double llm_tokens = 8192;
  double image_pixels = double(presets::image_pixels);
  double captions = 8;
  double caption_tokens = 64;
  double clip_seconds = 16;
};

// The work `module` does for one uniform microbatch of `model`.
inline work_unit uniform_module_work(const multimodal_model& model, const module_spec& module,
                                     const uniform_microbatch_shape& shape = {}) {
  bool feeds_video = false;  // a text module in a text-to-video model encodes captions
  for (const module_spec& m : model.modules()) feeds_video = feeds_video || m.video.has_value();
  if (module.image) {
    const double side = shape.image_pixels / double(module.image->patch_size);
    return work_unit::sequences_of(shape.images, side * side);
  }
  if (module.video) {
    const double tokens = shape.clip_seconds * module.video->fps * double(module.video->tokens_per_frame);
    return work_unit::conditioned_sequence(tokens, shape.captions * shape.caption_tokens);
  }
  if (feeds_video) return work_unit::sequences_of(shape.captions, shape.caption_tokens);
  if (module.role == module_role::projector) {
    // The merged tokens of the model's image encoder (the presets' 169 where no module says).
    double tokens = double(presets::image_tokens);
    for (const module_spec& m : model.modules()) {
      if (m.image) tokens = double(m.image->default_tokens);
    }
    return work_unit::sequences_of(shape.images, tokens);
  }
  return work_unit::sequence(shape.llm_tokens);
}

}  // namespace dip
