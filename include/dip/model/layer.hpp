// Layers: the architectural description of one layer of a module.
//
// A module is a list of layers; the partitioner cuts that list into chunks of consecutive
// layers, and a cost model prices each layer. Architecture-described layers let the analytic
// cost model derive FLOPs, bytes and parameter counts; an `opaque_layer` is a layer known only
// by its measured cost (from a fixed cost table), optionally with its parameter count.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <variant>

#include "dip/core/error.hpp"

namespace dip {

// A pre-norm transformer block: attention (grouped-query when kv_groups < heads) and an MLP,
// gated (SwiGLU: three matrices) or not (GELU: two matrices).
struct transformer_block {
  std::int64_t hidden = 0;
  std::int64_t ffn = 0;
  std::int64_t heads = 0;
  std::int64_t kv_groups = 0;  // key/value heads; == heads is plain multi-head attention
  bool gated_mlp = false;
  friend bool operator==(const transformer_block&, const transformer_block&) = default;
};

// A diffusion-transformer block: self-attention over latent tokens, cross-attention to the
// conditioning tokens (already projected to `hidden`), and an MLP. Timestep modulation is
// adaLN-single (one modulation shared by all blocks, as in PixArt-alpha), so it adds no
// per-block weights.
struct dit_block {
  std::int64_t hidden = 0;
  std::int64_t ffn = 0;
  std::int64_t heads = 0;
  std::int64_t kv_groups = 0;
  bool gated_mlp = false;
  friend bool operator==(const dit_block&, const dit_block&) = default;
};

// Token embedding table (vocab x hidden): a gather forward, a scatter-add backward.
struct embedding {
  std::int64_t vocab = 0;
  std::int64_t hidden = 0;
  friend bool operator==(const embedding&, const embedding&) = default;
};

// Output projection to the vocabulary plus the cross-entropy loss.
struct lm_head {
  std::int64_t vocab = 0;
  std::int64_t hidden = 0;
  friend bool operator==(const lm_head&, const lm_head&) = default;
};

// One dense matrix with bias: a patch embedding (pixels of a patch -> hidden) or a DiT's final
// projection (hidden -> latent patch).
struct linear_layer {
  std::int64_t input = 0;
  std::int64_t output = 0;
  friend bool operator==(const linear_layer&, const linear_layer&) = default;
};

// A two-layer MLP adapter (input -> hidden -> output with GELU), e.g. from a vision encoder's
// merged patch features to the LLM's hidden size. It works on output tokens: an encoder that
// merges 4x4 patches hands the projector rows of 16 * encoder_hidden features.
struct projector {
  std::int64_t input = 0;
  std::int64_t hidden = 0;
  std::int64_t output = 0;
  friend bool operator==(const projector&, const projector&) = default;
};

// A layer known only by name, its measured cost and (optionally) its parameter count.
struct opaque_layer {
  std::string name;
  std::int64_t parameters = 0;
  std::int64_t output_features = 0;  // width of the tensor it hands on; 0 if unknown
  friend bool operator==(const opaque_layer&, const opaque_layer&) = default;
};

using layer_spec =
    std::variant<transformer_block, dit_block, embedding, lm_head, linear_layer, projector, opaque_layer>;

namespace detail {
template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

inline std::int64_t attention_parameters(std::int64_t hidden, std::int64_t heads, std::int64_t kv_groups) {
  const std::int64_t head_dim = hidden / heads;
  return hidden * (hidden + 2 * kv_groups * head_dim) + hidden * hidden;  // QKV and output
}

inline std::int64_t mlp_parameters(std::int64_t hidden, std::int64_t ffn, bool gated) {
  return (gated ? 3 : 2) * hidden * ffn;
}
}  // namespace detail

// Short name of the layer's kind, as used in JSON files and printouts.
inline std::string kind_name(const layer_spec& layer) {
  return std::visit(detail::overloaded{
                        [](const transformer_block&) { return std::string("transformer"); },
                        [](const dit_block&) { return std::string("dit"); },
                        [](const embedding&) { return std::string("embedding"); },
                        [](const lm_head&) { return std::string("lm_head"); },
                        [](const linear_layer&) { return std::string("linear"); },
                        [](const projector&) { return std::string("projector"); },
                        [](const opaque_layer& l) { return "opaque:" + l.name; },
                    },
                    layer);
}

// Trainable parameters of one layer (norm weights included, biases of linear layers included;
// attention and MLP matrices are bias-free, as in Llama, Qwen2 and most ViTs of this size).
inline std::int64_t parameter_count(const layer_spec& layer) {
  return std::visit(
      detail::overloaded{
          [](const transformer_block& b) {
            return detail::attention_parameters(b.hidden, b.heads, b.kv_groups) +
                   detail::mlp_parameters(b.hidden, b.ffn, b.gated_mlp) + 2 * b.hidden;
          },
          [](const dit_block& b) {
            return 2 * detail::attention_parameters(b.hidden, b.heads, b.kv_groups) +
                   detail::mlp_parameters(b.hidden, b.ffn, b.gated_mlp) + 3 * b.hidden;
          },
          [](const embedding& e) { return e.vocab * e.hidden; },
          [](const lm_head& h) { return h.vocab * h.hidden + h.hidden; },  // + final norm
          [](const linear_layer& l) { return l.input * l.output + l.output; },
          [](const projector& p) { return p.input * p.hidden + p.hidden + p.hidden * p.output + p.output; },
          [](const opaque_layer& o) { return o.parameters; },
      },
      layer);
}

// Width (features per token) of the tensor a layer hands to the next one; 0 when unknown.
inline std::int64_t output_features(const layer_spec& layer) {
  return std::visit(detail::overloaded{
                        [](const transformer_block& b) { return b.hidden; },
                        [](const dit_block& b) { return b.hidden; },
                        [](const embedding& e) { return e.hidden; },
                        [](const lm_head&) { return std::int64_t{0}; },  // the loss stays local
                        [](const linear_layer& l) { return l.output; },
                        [](const projector& p) { return p.output; },
                        [](const opaque_layer& o) { return o.output_features; },
                    },
                    layer);
}

// Throws dip::error naming `where` unless every dimension is positive and attention heads
// divide evenly (hidden by heads, heads by kv_groups).
inline void validate(const layer_spec& layer, const std::string& where) {
  const auto positive = [&](std::int64_t value, const char* field) {
    require(value > 0, errc::invalid_argument, where,
            std::string(field) + " must be > 0, got " + std::to_string(value));
  };
  const auto attention = [&](std::int64_t hidden, std::int64_t ffn, std::int64_t heads, std::int64_t kv_groups) {
    positive(hidden, "hidden");
    positive(ffn, "ffn");
    positive(heads, "heads");
    positive(kv_groups, "kv_groups");
    require(hidden % heads == 0, errc::invalid_argument, where,
            "hidden (" + std::to_string(hidden) + ") must be a multiple of heads (" + std::to_string(heads) + ")");
    require(
        heads % kv_groups == 0, errc::invalid_argument, where,
        "heads (" + std::to_string(heads) + ") must be a multiple of kv_groups (" + std::to_string(kv_groups) + ")");
  };
  std::visit(detail::overloaded{
                 [&](const transformer_block& b) { attention(b.hidden, b.ffn, b.heads, b.kv_groups); },
                 [&](const dit_block& b) { attention(b.hidden, b.ffn, b.heads, b.kv_groups); },
                 [&](const embedding& e) {
                   positive(e.vocab, "vocab");
                   positive(e.hidden, "hidden");
                 },
                 [&](const lm_head& h) {
                   positive(h.vocab, "vocab");
                   positive(h.hidden, "hidden");
                 },
                 [&](const linear_layer& l) {
                   positive(l.input, "input");
                   positive(l.output, "output");
                 },
                 [&](const projector& p) {
                   positive(p.input, "input");
                   positive(p.hidden, "hidden");
                   positive(p.output, "output");
                 },
                 [&](const opaque_layer& o) {
                   require(o.parameters >= 0, errc::invalid_argument, where,
                           "parameters must be >= 0, got " + std::to_string(o.parameters));
                   require(o.output_features >= 0, errc::invalid_argument, where,
                           "output_features must be >= 0, got " + std::to_string(o.output_features));
                 },
             },
             layer);
}

}  // namespace dip
