// Presets: the seven modules and five models of the DIP paper's evaluation, plus plain LLMs and
// two tiny models for the reference executor (tiny-vlm, tiny-t2v).
//
// Module shapes (layers / hidden / FFN / heads / KV groups) are DESIGN.md's. Choices the paper
// leaves open, stated here once:
// - ViTs use a GELU MLP (two matrices) and see 728 px images as 52 x 52 patches of 14 px;
//   a 4 x 4 merge turns those 2704 patch tokens into the 169 tokens per image that the LLM sees.
// - LLMs (Llama3, Qwen2) use SwiGLU (three matrices), grouped-query attention, untied input
//   embedding and output head. As the text encoder of a text-to-video model the head is dropped.
// - DiT blocks use self-attention, cross-attention to the text and a GELU MLP (this gives 4.9B
//   and 29.0B parameters, matching the names). Video: 16 FPS, a VAE compressing 4x in time and
//   8x8 in space, 2x2 latent patches, 256x256 frames: 64 tokens per frame; clips up to 16 s.
// - Projectors are two-layer MLPs from the encoder's (merged) features to the consumer's hidden.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/model/model.hpp"

namespace dip {

// Tensor- and pipeline-parallel degrees a preset was evaluated with.
struct parallel_config {
  int tp = 1;
  int pp = 1;
  friend bool operator==(const parallel_config&, const parallel_config&) = default;
};

struct model_preset {
  std::string name;
  std::string description;
  multimodal_model model;
  parallel_config parallel;
  std::string gpu = "H800";
};

namespace presets {

inline constexpr std::int64_t llama3_vocab = 128256;
inline constexpr std::int64_t qwen2_vocab = 152064;
inline constexpr std::int64_t image_pixels = 728;
inline constexpr std::int64_t vit_patch = 14;
inline constexpr std::int64_t vit_merge = 4;
inline constexpr std::int64_t image_tokens = 169;                                    // (728 / 14 / 4)^2
inline constexpr std::int64_t dit_latent_patch_features = std::int64_t{16} * 2 * 2;  // 16 latent channels, 2x2

inline module_spec transformer_module(std::string name, module_role role, modality kind, int blocks,
                                      transformer_block block) {
  module_spec m{std::move(name), role, std::move(kind), {}, std::nullopt, std::nullopt, {}};
  m.layers.assign(static_cast<std::size_t>(blocks), block);
  return m;
}

inline module_spec vision_encoder(std::string name, int blocks, std::int64_t hidden, std::int64_t ffn,
                                  std::int64_t heads) {
  module_spec m = transformer_module(std::move(name), module_role::encoder, modality::image(), blocks,
                                     {hidden, ffn, heads, heads, false});
  m.layers.insert(m.layers.begin(), linear_layer{3 * vit_patch * vit_patch, hidden});
  m.image = image_encoding{vit_patch, vit_merge, image_tokens};
  return m;
}

inline module_spec language_model(std::string name, int blocks, std::int64_t hidden, std::int64_t ffn,
                                  std::int64_t heads, std::int64_t kv_groups, std::int64_t vocab, bool with_head) {
  module_spec m = transformer_module(std::move(name), module_role::backbone, modality::text(), blocks,
                                     {hidden, ffn, heads, kv_groups, true});
  m.layers.insert(m.layers.begin(), embedding{vocab, hidden});
  if (with_head) m.layers.push_back(lm_head{vocab, hidden});
  return m;
}

inline module_spec diffusion_decoder(std::string name, int blocks, std::int64_t hidden, std::int64_t ffn,
                                     std::int64_t heads) {
  module_spec m{std::move(name), module_role::decoder, modality::video(), {}, std::nullopt, std::nullopt, {}};
  m.layers.push_back(linear_layer{dit_latent_patch_features, hidden});
  m.layers.insert(m.layers.end(), static_cast<std::size_t>(blocks), dit_block{hidden, ffn, heads, heads, false});
  m.layers.push_back(linear_layer{hidden, dit_latent_patch_features});
  m.video = video_encoding{16.0, 64, 16.0};
  return m;
}

inline module_spec mlp_projector(std::string name, modality kind, std::int64_t input, std::int64_t output) {
  return {std::move(name),
          module_role::projector,
          std::move(kind),
          {projector{input, output, output}},
          std::nullopt,
          std::nullopt,
          {}};
}

inline module_spec vit_5b(std::string name = "vit") { return vision_encoder(std::move(name), 63, 1792, 15360, 16); }
inline module_spec vit_22b(std::string name = "vit") { return vision_encoder(std::move(name), 48, 6144, 24576, 48); }
inline module_spec llama3_8b(std::string name = "llm", bool with_head = true) {
  return language_model(std::move(name), 32, 4096, 14336, 32, 8, llama3_vocab, with_head);
}
inline module_spec qwen2_32b(std::string name = "llm", bool with_head = true) {
  return language_model(std::move(name), 64, 5120, 27648, 40, 8, qwen2_vocab, with_head);
}
inline module_spec qwen2_72b(std::string name = "llm", bool with_head = true) {
  return language_model(std::move(name), 80, 8192, 29568, 64, 8, qwen2_vocab, with_head);
}
inline module_spec dit_5b(std::string name = "dit") { return diffusion_decoder(std::move(name), 28, 3584, 10240, 28); }
inline module_spec dit_30b(std::string name = "dit") { return diffusion_decoder(std::move(name), 48, 6144, 24576, 48); }

inline std::int64_t hidden_of(const module_spec& m) {
  for (const layer_spec& layer : m.layers) {
    if (const auto* b = std::get_if<transformer_block>(&layer)) return b->hidden;
    if (const auto* d = std::get_if<dit_block>(&layer)) return d->hidden;
  }
  throw error(errc::invalid_argument, "module '" + m.name + "'", "has no transformer block");
}

// Vision encoder -> projector (merged patches to LLM hidden) -> LLM.
inline multimodal_model vision_language(std::string name, module_spec vit, module_spec llm) {
  const std::int64_t merge = vit.image ? vit.image->merge : vit_merge;
  const std::int64_t merged = hidden_of(vit) * merge * merge;
  module_spec proj = mlp_projector("projector", modality::image(), merged, hidden_of(llm));
  return model_builder(std::move(name))
      .add(std::move(vit))
      .add(std::move(proj))
      .add(std::move(llm))
      .connect("vit", "projector")
      .connect("projector", "llm")
      .build();
}

// LLM text encoder -> projector (LLM hidden to DiT hidden) -> diffusion decoder.
inline multimodal_model text_to_video(std::string name, module_spec llm, module_spec dit) {
  module_spec proj = mlp_projector("projector", modality::text(), hidden_of(llm), hidden_of(dit));
  return model_builder(std::move(name))
      .add(std::move(llm))
      .add(std::move(proj))
      .add(std::move(dit))
      .connect("llm", "projector")
      .connect("projector", "dit")
      .build();
}

inline multimodal_model plain_llm(std::string name, module_spec llm) {
  return model_builder(std::move(name)).add(std::move(llm)).build();
}

// Tiny models with the module structure of vlm-s and t2v-s but hidden sizes of 32-48, four
// blocks per module and coarse encodings, so that the reference executor's CPU backend runs a
// whole batch in well under a second: a 728 px image is 8 x 8 patches of 91 px (the patch
// embedding reads 48 features, a 4 x 4 RGB thumbnail of each patch) and 16 LLM tokens after a
// 2 x 2 merge; a clip is 2 frames a second of 16 latent tokens each.
inline multimodal_model tiny_vision_language() {
  module_spec vit = transformer_module("vit", module_role::encoder, modality::image(), 4, {32, 64, 2, 2, false});
  vit.layers.insert(vit.layers.begin(), linear_layer{48, 32});
  vit.image = image_encoding{91, 2, 16};
  return vision_language("tiny-vlm", std::move(vit), language_model("llm", 4, 48, 96, 4, 2, 64, true));
}

inline multimodal_model tiny_text_to_video() {
  module_spec dit = diffusion_decoder("dit", 4, 48, 96, 2);
  dit.video = video_encoding{2.0, 16, 16.0};
  return text_to_video("tiny-t2v", language_model("llm", 4, 32, 64, 2, 2, 64, false), std::move(dit));
}

// Small models for measuring plans on CPUs (python -m dip.torch bench): the module structure of
// vlm-s and t2v-s at hidden sizes of 256-512, so that one pipeline action takes tens of
// milliseconds on one CPU thread and the runtime's own per-action overhead (under a millisecond)
// stays a few percent of it. Images and clips are encoded as in the tiny models (16 LLM tokens
// an image; 64 latent tokens a frame at 2 frames a second), so a packed microbatch of 48 images
// or 16 s of video trains in about a second.
inline multimodal_model small_vision_language() {
  module_spec vit = transformer_module("vit", module_role::encoder, modality::image(), 4, {256, 1024, 4, 4, false});
  vit.layers.insert(vit.layers.begin(), linear_layer{48, 256});
  vit.image = image_encoding{91, 2, 16};
  return vision_language("small-vlm", std::move(vit), language_model("llm", 4, 384, 1024, 6, 2, 4096, true));
}

inline multimodal_model small_text_to_video() {
  module_spec dit = diffusion_decoder("dit", 4, 384, 1024, 6);
  dit.video = video_encoding{2.0, 64, 16.0};
  return text_to_video("small-t2v", language_model("llm", 4, 512, 1536, 8, 2, 4096, false), std::move(dit));
}

}  // namespace presets

inline std::vector<std::string> preset_names() {
  return {"vlm-s",     "vlm-m",     "vlm-l",    "t2v-s",    "t2v-l",     "llama3-8b",
          "qwen2-32b", "qwen2-72b", "tiny-vlm", "tiny-t2v", "small-vlm", "small-t2v"};
}

// The model presets of DESIGN.md with their (TP, PP). An unknown name is a dip::error listing
// the known ones.
inline model_preset find_preset(std::string_view name) {
  using namespace presets;
  if (name == "vlm-s") return {"vlm-s", "ViT-5B + Llama3-8B", vision_language("vlm-s", vit_5b(), llama3_8b()), {4, 4}};
  if (name == "vlm-m") return {"vlm-m", "ViT-5B + Qwen2-32B", vision_language("vlm-m", vit_5b(), qwen2_32b()), {8, 4}};
  if (name == "vlm-l")
    return {"vlm-l", "ViT-22B + Qwen2-72B", vision_language("vlm-l", vit_22b(), qwen2_72b()), {8, 8}};
  if (name == "t2v-s")
    return {"t2v-s", "Llama3-8B + DiT-5B", text_to_video("t2v-s", llama3_8b("llm", false), dit_5b()), {4, 4}};
  if (name == "t2v-l")
    return {"t2v-l", "Qwen2-32B + DiT-30B", text_to_video("t2v-l", qwen2_32b("llm", false), dit_30b()), {8, 8}};
  if (name == "llama3-8b") return {"llama3-8b", "Llama3-8B", plain_llm("llama3-8b", llama3_8b()), {4, 4}};
  if (name == "qwen2-32b") return {"qwen2-32b", "Qwen2-32B", plain_llm("qwen2-32b", qwen2_32b()), {8, 4}};
  if (name == "qwen2-72b") return {"qwen2-72b", "Qwen2-72B", plain_llm("qwen2-72b", qwen2_72b()), {8, 8}};
  if (name == "tiny-vlm")
    return {"tiny-vlm", "tiny ViT + tiny LLM (for the reference executor)", tiny_vision_language(), {1, 4}};
  if (name == "tiny-t2v")
    return {"tiny-t2v", "tiny LLM + tiny DiT (for the reference executor)", tiny_text_to_video(), {1, 4}};
  if (name == "small-vlm")
    return {"small-vlm", "small ViT + small LLM (measured on CPUs: dip.torch bench)", small_vision_language(), {1, 2}};
  if (name == "small-t2v")
    return {"small-t2v", "small LLM + small DiT (measured on CPUs: dip.torch bench)", small_text_to_video(), {1, 2}};
  std::string known;
  for (const std::string& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw error(errc::not_found, "model preset", "unknown preset '" + std::string(name) + "' (known: " + known + ")");
}

// Module presets by name, as a JSON model file may name them ("preset": "vit-5b").
inline std::vector<std::string> module_preset_names() {
  return {"vit-5b", "vit-22b", "llama3-8b", "qwen2-32b", "qwen2-72b", "dit-5b", "dit-30b"};
}

inline module_spec find_module_preset(std::string_view preset, std::string module_name) {
  using namespace presets;
  if (preset == "vit-5b") return vit_5b(std::move(module_name));
  if (preset == "vit-22b") return vit_22b(std::move(module_name));
  if (preset == "llama3-8b") return llama3_8b(std::move(module_name));
  if (preset == "qwen2-32b") return qwen2_32b(std::move(module_name));
  if (preset == "qwen2-72b") return qwen2_72b(std::move(module_name));
  if (preset == "dit-5b") return dit_5b(std::move(module_name));
  if (preset == "dit-30b") return dit_30b(std::move(module_name));
  std::string known;
  for (const std::string& n : module_preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw error(errc::not_found, "module preset",
              "unknown module preset '" + std::string(preset) + "' (known: " + known + ")");
}

}  // namespace dip
