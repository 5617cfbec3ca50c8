// dip::module_spec: one module of a multimodal model (a vision encoder, a projector, an LLM
// backbone, a diffusion decoder), the unit that gets its own pipeline segments.
#pragma once

#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/model/layer.hpp"
#include "dip/model/modality.hpp"

namespace dip {

enum class module_role { encoder, projector, backbone, decoder, other };

constexpr std::string_view to_string(module_role role) noexcept {
  switch (role) {
    case module_role::encoder: return "encoder";
    case module_role::projector: return "projector";
    case module_role::backbone: return "backbone";
    case module_role::decoder: return "decoder";
    case module_role::other: return "other";
  }
  return "other";
}

inline module_role parse_module_role(std::string_view text, const std::string& where) {
  for (module_role role : {module_role::encoder, module_role::projector, module_role::backbone, module_role::decoder,
                           module_role::other}) {
    if (text == to_string(role)) return role;
  }
  throw error(errc::parse_error, where,
              "unknown role '" + std::string(text) + "' (expected encoder, projector, backbone, decoder or other)");
}

// How an image becomes tokens for this module: the encoder sees one token per
// patch_size x patch_size patch; a merge x merge block of patches becomes one token for the
// modules downstream. `default_tokens` is the count an image "at the model's default size"
// contributes downstream (e.g. 169 for 728 px images, patch 14, merge 4).
struct image_encoding {
  std::int64_t patch_size = 14;
  std::int64_t merge = 1;
  std::int64_t default_tokens = 0;
  friend bool operator==(const image_encoding&, const image_encoding&) = default;
};

// How a video clip becomes tokens: `fps` frames a second, `tokens_per_frame` tokens each (after
// the VAE's compression and patching); clips longer than max_clip_seconds are cut by trainers.
struct video_encoding {
  double fps = 16.0;
  std::int64_t tokens_per_frame = 0;
  double max_clip_seconds = 16.0;
  friend bool operator==(const video_encoding&, const video_encoding&) = default;
};

struct module_spec {
  std::string name;
  module_role role = module_role::other;
  dip::modality modality = dip::modality::text();
  std::vector<layer_spec> layers;
  std::optional<image_encoding> image;
  std::optional<video_encoding> video;
  module_id id{};  // assigned by model_builder; the module's index in its model
};

inline std::int64_t parameter_count(const module_spec& module) {
  std::int64_t total = 0;
  for (const layer_spec& layer : module.layers) total += parameter_count(layer);
  return total;
}

// Throws dip::error naming the module (and layer) if the module cannot be planned: no name, no
// layers, a layer with bad dimensions, bad encodings.
inline void validate(const module_spec& module) {
  require(!module.name.empty(), errc::invalid_argument, "module", "name must not be empty");
  const std::string where = "module '" + module.name + "'";
  require(!module.layers.empty(), errc::invalid_argument, where, "has no layers");
  for (std::size_t i = 0; i < module.layers.size(); ++i) {
    validate(module.layers[i], where + " layer " + std::to_string(i));
  }
  if (module.image) {
    require(module.image->patch_size > 0 && module.image->merge > 0 && module.image->default_tokens > 0,
            errc::invalid_argument, where, "image encoding needs patch_size, merge and default_tokens > 0");
  }
  if (module.video) {
    require(module.video->fps > 0 && module.video->tokens_per_frame > 0 && module.video->max_clip_seconds > 0,
            errc::invalid_argument, where, "video encoding needs fps, tokens_per_frame and max_clip_seconds > 0");
  }
}

}  // namespace dip
