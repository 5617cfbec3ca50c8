// The `model` section of an executable plan (docs/plan-format.md, version 2): what a runtime
// needs to build the model the plan was made for, as plain values. Per module, by id: its name,
// role, item kind (what its sub-microbatches count), the modules feeding it, its image or video
// encoding and its layers.
//
//   const dip::exported_model described = dip::describe_model(model);
//   nlohmann::ordered_json json = dip::model_to_json(described);   // {"name", "modules": [...]}
//
// io::read_exported_model reads it back strictly (errors name the source and the JSON path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "dip/batch/module_items.hpp"
#include "dip/core/error.hpp"
#include "dip/io/json_fields.hpp"
#include "dip/model/layer.hpp"
#include "dip/model/model.hpp"
#include "dip/model/module.hpp"

namespace dip {

struct exported_module {
  std::string name;
  module_role role = module_role::other;
  item_kind item = item_kind::sequence;
  std::vector<std::size_t> inputs;  // ids of the modules feeding it, increasing
  std::optional<image_encoding> image;
  std::optional<video_encoding> video;
  std::vector<layer_spec> layers;
  friend bool operator==(const exported_module&, const exported_module&) = default;
};

struct exported_model {
  std::string name;
  std::vector<exported_module> modules;  // by module id
  friend bool operator==(const exported_model&, const exported_model&) = default;
};

inline exported_model describe_model(const multimodal_model& model) {
  exported_model out{model.name(), {}};
  for (const module_spec& m : model.modules()) {
    exported_module e{m.name, m.role, module_item_kind(model, m.id), {}, m.image, m.video, m.layers};
    for (module_id input : model.inputs_of(m.id)) e.inputs.push_back(input.index());
    out.modules.push_back(std::move(e));
  }
  return out;
}

// Width of the tensor module `m` hands on (its last layer's output features; 0 if unknown).
inline std::int64_t module_output_features(const exported_module& m) {
  return m.layers.empty() ? 0 : output_features(m.layers.back());
}

// A layer as JSON, `kind` first: the kind names of docs/model-format.md ("opaque" with its name).
inline nlohmann::ordered_json layer_to_json(const layer_spec& layer) {
  using json = nlohmann::ordered_json;
  return std::visit(
      detail::overloaded{
          [](const transformer_block& b) -> json {
            return {{"kind", "transformer"}, {"hidden", b.hidden},       {"ffn", b.ffn},
                    {"heads", b.heads},      {"kv_groups", b.kv_groups}, {"gated_mlp", b.gated_mlp}};
          },
          [](const dit_block& b) -> json {
            return {{"kind", "dit"},    {"hidden", b.hidden},       {"ffn", b.ffn},
                    {"heads", b.heads}, {"kv_groups", b.kv_groups}, {"gated_mlp", b.gated_mlp}};
          },
          [](const embedding& e) -> json {
            return {{"kind", "embedding"}, {"vocab", e.vocab}, {"hidden", e.hidden}};
          },
          [](const lm_head& h) -> json {
            return {{"kind", "lm_head"}, {"vocab", h.vocab}, {"hidden", h.hidden}};
          },
          [](const linear_layer& l) -> json {
            return {{"kind", "linear"}, {"input", l.input}, {"output", l.output}};
          },
          [](const projector& p) -> json {
            return {{"kind", "projector"}, {"input", p.input}, {"hidden", p.hidden}, {"output", p.output}};
          },
          [](const opaque_layer& o) -> json {
            return {{"kind", "opaque"},
                    {"name", o.name},
                    {"parameters", o.parameters},
                    {"output_features", o.output_features}};
          },
      },
      layer);
}

inline nlohmann::ordered_json model_to_json(const exported_model& model) {
  using json = nlohmann::ordered_json;
  json modules = json::array();
  for (const exported_module& m : model.modules) {
    json layers = json::array();
    for (const layer_spec& l : m.layers) layers.push_back(layer_to_json(l));
    json image = nullptr, video = nullptr;
    if (m.image) {
      image = {
          {"patch_size", m.image->patch_size}, {"merge", m.image->merge}, {"default_tokens", m.image->default_tokens}};
    }
    if (m.video) {
      video = {{"fps", m.video->fps},
               {"tokens_per_frame", m.video->tokens_per_frame},
               {"max_clip_seconds", m.video->max_clip_seconds}};
    }
    modules.push_back({{"name", m.name},
                       {"role", std::string(to_string(m.role))},
                       {"item", std::string(to_string(m.item))},
                       {"inputs", m.inputs},
                       {"image", std::move(image)},
                       {"video", std::move(video)},
                       {"layers", std::move(layers)}});
  }
  return {{"name", model.name}, {"modules", std::move(modules)}};
}

namespace io {

inline item_kind read_item_kind(object_reader& object, std::string_view field) {
  const std::string text = object.string(field);
  for (item_kind k : {item_kind::image, item_kind::clip, item_kind::caption, item_kind::sequence}) {
    if (text == to_string(k)) return k;
  }
  object.fail(field, "expected image, clip, caption or sequence, got '" + text + "'");
}

// The JSON value of `field` unless it is null.
inline const nlohmann::json* non_null(object_reader& object, std::string_view field) {
  const nlohmann::json& value = object.required(field);
  return value.is_null() ? nullptr : &value;
}

inline layer_spec read_exported_layer(object_reader& layer) {
  constexpr std::int64_t max_width = std::int64_t{1} << 20;  // as model files (model_json.hpp)
  const std::string kind = layer.string("kind");
  const auto width = [&](std::string_view field) { return layer.integer(field, 1, max_width); };
  const auto gated = [&] {
    const nlohmann::json& value = layer.required("gated_mlp");
    if (!value.is_boolean()) layer.fail("gated_mlp", "expected true or false, got " + json_type_name(value));
    return value.get<bool>();
  };
  layer_spec spec;
  if (kind == "transformer" || kind == "dit") {
    const std::int64_t hidden = width("hidden"), ffn = width("ffn"), heads = width("heads");
    const std::int64_t kv_groups = width("kv_groups");
    const bool g = gated();
    if (kind == "dit") {
      spec = dit_block{hidden, ffn, heads, kv_groups, g};
    } else {
      spec = transformer_block{hidden, ffn, heads, kv_groups, g};
    }
  } else if (kind == "embedding") {
    const std::int64_t vocab = layer.integer("vocab"), hidden = width("hidden");
    spec = embedding{vocab, hidden};
  } else if (kind == "lm_head") {
    const std::int64_t vocab = layer.integer("vocab"), hidden = width("hidden");
    spec = lm_head{vocab, hidden};
  } else if (kind == "linear") {
    const std::int64_t input = width("input"), output = width("output");
    spec = linear_layer{input, output};
  } else if (kind == "projector") {
    const std::int64_t input = width("input"), hidden = width("hidden"), output = width("output");
    spec = projector{input, hidden, output};
  } else if (kind == "opaque") {
    const std::string name = layer.string("name");
    const std::int64_t parameters = layer.integer("parameters", 0, std::int64_t{1} << 50);
    spec = opaque_layer{name, parameters, layer.integer("output_features", 0, max_width)};
  } else {
    layer.fail("kind",
               "expected transformer, dit, embedding, lm_head, linear, projector or opaque, got '" + kind + "'");
  }
  layer.finish();
  try {
    validate(spec, "layer");
  } catch (const error& e) {
    layer.fail("", e.detail());
  }
  return spec;
}

// Reads the `model` object at `path` of `source` (the format model_to_json writes).
inline exported_model read_exported_model(const nlohmann::json& value, const std::string& source,
                                          const std::string& path) {
  object_reader top(value, source, path);
  exported_model model;
  model.name = top.string("name");
  const nlohmann::json& modules = top.required("modules");
  if (!modules.is_array()) top.fail("modules", "expected an array, got " + json_type_name(modules));
  for (std::size_t m = 0; m < modules.size(); ++m) {
    object_reader in(modules[m], source, path + ".modules[" + std::to_string(m) + "]");
    exported_module out;
    out.name = in.string("name");
    const std::string role = in.string("role");
    try {
      out.role = parse_module_role(role, in.where("role"));
    } catch (const error& e) {
      in.fail("role", e.detail());
    }
    out.item = read_item_kind(in, "item");
    const nlohmann::json& inputs = in.required("inputs");
    if (!inputs.is_array()) in.fail("inputs", "expected an array of module ids, got " + json_type_name(inputs));
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const nlohmann::json& v = inputs[i];
      const bool ok = v.is_number_integer() && v.get<std::int64_t>() >= 0 &&
                      std::size_t(v.get<std::int64_t>()) < modules.size() && v.get<std::size_t>() != m &&
                      (out.inputs.empty() || v.get<std::size_t>() > out.inputs.back());
      if (!ok) {
        in.fail("inputs[" + std::to_string(i) + "]",
                "expected the id of another module, above the previous one, got " + v.dump());
      }
      out.inputs.push_back(v.get<std::size_t>());
    }
    if (const nlohmann::json* image = non_null(in, "image")) {
      object_reader img(*image, source, in.path() + ".image");
      out.image =
          image_encoding{img.integer("patch_size"), img.integer("merge", 1, 1024), img.integer("default_tokens")};
      img.finish();
    }
    if (const nlohmann::json* video = non_null(in, "video")) {
      object_reader vid(*video, source, in.path() + ".video");
      const double fps = vid.number("fps", 0.0, true);
      out.video = video_encoding{fps, vid.integer("tokens_per_frame"), vid.number("max_clip_seconds", 0.0, true)};
      vid.finish();
    }
    const nlohmann::json& layers = in.required("layers");
    if (!layers.is_array() || layers.empty()) in.fail("layers", "expected a non-empty array of layers");
    for (std::size_t l = 0; l < layers.size(); ++l) {
      object_reader layer(layers[l], source, in.path() + ".layers[" + std::to_string(l) + "]");
      out.layers.push_back(read_exported_layer(layer));
    }
    in.finish();
    model.modules.push_back(std::move(out));
  }
  top.finish();
  return model;
}

}  // namespace io

}  // namespace dip
