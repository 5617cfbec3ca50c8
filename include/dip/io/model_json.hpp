// Reading a model from a JSON file (format: docs/model-format.md).
//
//   {"name": "toy", "pp": 4,
//    "modules": [{"name": "lm", "modality": "text", "layers": 8,
//                 "layer_cost": {"forward_ms": 1.0, "backward_ms": 2.0}}]}
//
// A module is described one of three ways: "layer_cost" (measured per-layer costs, one object
// for all layers or an array with one per layer), "layer" (an architecture the analytic model
// prices), or "preset" (one of dip's module presets). "inputs" lists the modules that feed it.
// Measured costs come back in `model_file::measured`; put it in front of an analytic model with
// `overlay_cost_model` (see `cost_model_for`).
#pragma once

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dip/core/error.hpp"
#include "dip/cost/analytic.hpp"
#include "dip/cost/fixed_table.hpp"
#include "dip/io/json_fields.hpp"
#include "dip/model/hardware.hpp"
#include "dip/model/model.hpp"
#include "dip/model/presets.hpp"

namespace dip {

struct model_file {
  multimodal_model model;
  fixed_cost_table measured;  // modules described by "layer_cost"
  std::optional<int> tp;      // defaults the file suggests for the cluster
  std::optional<int> pp;
  std::optional<std::string> gpu;
};

// The cost model a model file implies: its measured layers, and the analytic roofline model on
// `gpu` with tensor parallelism `tp` for every other layer.
inline overlay_cost_model<fixed_cost_table, analytic_cost_model> cost_model_for(const model_file& file,
                                                                                const gpu_spec& gpu, int tp) {
  return {file.measured, analytic_cost_model(gpu, tp)};
}

namespace io {

inline fixed_layer_cost read_layer_cost(object_reader& cost) {
  fixed_layer_cost entry;
  entry.cost.forward = milliseconds(cost.number("forward_ms"));
  const std::optional<double> backward = cost.optional_number("backward_ms");
  const std::optional<double> input = cost.optional_number("backward_input_ms");
  const std::optional<double> weight = cost.optional_number("backward_weight_ms");
  if (backward && (input || weight)) {
    cost.fail("backward_ms", "give either backward_ms or backward_input_ms + backward_weight_ms, not both");
  }
  if (backward) {  // no split measured: half input gradient, half weight gradient
    entry.cost.backward_input = milliseconds(*backward / 2);
    entry.cost.backward_weight = milliseconds(*backward / 2);
  } else if (input && weight) {
    entry.cost.backward_input = milliseconds(*input);
    entry.cost.backward_weight = milliseconds(*weight);
  } else {
    cost.fail(input ? "backward_weight_ms" : "backward_ms",
              input || weight ? "backward_input_ms and backward_weight_ms come together"
                              : "required: backward_ms, or backward_input_ms + backward_weight_ms");
  }
  entry.cost.activation = bytes(cost.optional_number("activation_bytes").value_or(0.0));
  entry.cost.output = bytes(cost.optional_number("output_bytes").value_or(0.0));
  entry.reference_tokens = cost.optional_number("reference_tokens").value_or(0.0);
  cost.finish();
  return entry;
}

inline layer_spec read_block(object_reader& layer) {
  const std::string kind = layer.optional_string("kind").value_or("transformer");
  // 2^20 is far above any model (hidden 16k, ffn 53k) and keeps a layer's parameter count,
  // about 4 x hidden x (hidden + ffn) per block and vocab x hidden per embedding, within int64.
  constexpr std::int64_t max_width = std::int64_t{1} << 20;
  const std::int64_t hidden = layer.integer("hidden", 1, max_width);
  const std::int64_t ffn = layer.integer("ffn", 1, max_width);
  const std::int64_t heads = layer.integer("heads");
  const std::int64_t kv_groups = layer.optional_integer("kv_groups").value_or(heads);
  const bool gated = layer.boolean("gated_mlp", kind == "transformer");
  layer.finish();
  if (kind == "transformer") return transformer_block{hidden, ffn, heads, kv_groups, gated};
  if (kind == "dit") return dit_block{hidden, ffn, heads, kv_groups, gated};
  layer.fail("kind", "unknown block kind '" + kind + "' (expected transformer or dit)");
}

inline module_spec read_module(const nlohmann::json& json, const std::string& source, const std::string& path,
                               fixed_cost_table& measured, std::vector<std::string>& inputs) {
  object_reader in(json, source, path);
  const std::string name = in.string("name");
  if (name.empty()) in.fail("name", "must not be empty");

  const bool has_cost = in.has("layer_cost"), has_layer = in.has("layer"), has_preset = in.has("preset");
  if (int(has_cost) + int(has_layer) + int(has_preset) != 1) {
    in.fail("", "module '" + name + "' needs exactly one of \"layer_cost\", \"layer\" or \"preset\"");
  }

  module_spec m;
  if (has_preset) {
    const std::string preset = in.string("preset");
    try {
      m = find_module_preset(preset, name);
    } catch (const error& e) {
      in.fail("preset", e.detail());
    }
  } else {
    m.name = name;
    m.role = module_role::other;
  }
  if (const auto text = in.optional_string("modality")) {
    try {
      m.modality = modality(*text);
    } catch (const error& e) {
      in.fail("modality", e.detail());
    }
  } else if (!has_preset) {
    in.fail("modality", "required field is missing (text, image, video, audio, latent or your own)");
  }
  if (const auto role = in.optional_string("role")) m.role = parse_module_role(*role, in.where("role"));

  if (has_cost) {
    const std::int64_t count = in.integer("layers", 1, 1 << 20);
    const nlohmann::json& cost = in.required("layer_cost");
    std::vector<fixed_layer_cost> per_layer;
    if (cost.is_array()) {
      if (std::int64_t(cost.size()) != count) {
        in.fail("layer_cost",
                "has " + std::to_string(cost.size()) + " entries but \"layers\" is " + std::to_string(count));
      }
      for (std::size_t i = 0; i < cost.size(); ++i) {
        object_reader entry(cost[i], source,
                            in.where("layer_cost").substr(source.size() + 2) + "[" + std::to_string(i) + "]");
        per_layer.push_back(read_layer_cost(entry));
      }
    } else {
      object_reader entry(cost, source, path + ".layer_cost");
      per_layer.assign(std::size_t(count), read_layer_cost(entry));
    }
    for (std::int64_t i = 0; i < count; ++i) {
      m.layers.push_back(opaque_layer{name + "." + std::to_string(i), 0, 0});
    }
    measured.set(name, std::move(per_layer));
  } else if (has_layer) {
    const std::int64_t count = in.integer("layers", 1, 1 << 20);
    object_reader layer(in.required("layer"), source, path + ".layer");
    const layer_spec block = read_block(layer);
    m.layers.assign(std::size_t(count), block);
    const std::int64_t hidden = std::visit(
        [](const auto& b) -> std::int64_t {
          if constexpr (requires { b.ffn; }) return b.hidden;
          else return 0;
        },
        block);
    if (const nlohmann::json* e = in.find("embedding")) {
      object_reader emb(*e, source, path + ".embedding");
      m.layers.insert(m.layers.begin(), embedding{emb.integer("vocab"), hidden});
      emb.finish();
    }
    if (const nlohmann::json* h = in.find("head")) {
      object_reader head(*h, source, path + ".head");
      m.layers.push_back(lm_head{head.integer("vocab"), hidden});
      head.finish();
    }
  }

  if (const nlohmann::json* image = in.find("image")) {
    object_reader img(*image, source, path + ".image");
    // merge <= 1024 keeps an image's encoder tokens (LLM tokens x merge^2) within int64.
    m.image = image_encoding{img.integer("patch_size"), img.optional_integer("merge", 1, 1024).value_or(1),
                             img.integer("default_tokens")};
    img.finish();
  }
  if (const nlohmann::json* video = in.find("video")) {
    object_reader vid(*video, source, path + ".video");
    const double fps = vid.number("fps", 0.0, true);
    // Far above any video model (8-30 fps); keeps a clip's frames, ceil(seconds x fps), an integer.
    if (fps > 1000) vid.fail("fps", "expected at most 1000 frames per second, got " + vid.required("fps").dump());
    m.video = video_encoding{fps, vid.integer("tokens_per_frame"), vid.number("max_clip_seconds", 0.0, true)};
    vid.finish();
  }
  if (const nlohmann::json* list = in.find("inputs")) {
    if (!list->is_array()) in.fail("inputs", "expected an array of module names, got " + json_type_name(*list));
    for (std::size_t i = 0; i < list->size(); ++i) {
      if (!(*list)[i].is_string()) {
        in.fail("inputs[" + std::to_string(i) + "]",
                "expected a module name (string), got " + json_type_name((*list)[i]));
      }
      inputs.push_back((*list)[i].get<std::string>());
    }
  }
  in.finish();
  try {
    validate(m);
  } catch (const error& e) {
    throw error(e.code(), source + ": " + path + " (" + e.where() + ")", e.detail());
  }
  return m;
}

}  // namespace io

// Builds a model from parsed JSON; `source` names the file in error messages.
inline model_file parse_model_json(const nlohmann::json& json, const std::string& source) {
  io::object_reader root(json, source, "");
  model_file result{multimodal_model{}, {}, std::nullopt, std::nullopt, std::nullopt};
  model_builder builder(root.string("name"));
  if (const auto tp = root.optional_integer("tp", 1, 4096)) result.tp = int(*tp);
  if (const auto pp = root.optional_integer("pp", 1, 4096)) result.pp = int(*pp);
  if (const auto gpu = root.optional_string("gpu")) {
    try {
      find_gpu(*gpu);
    } catch (const error& e) {
      root.fail("gpu", e.detail());
    }
    result.gpu = *gpu;
  }
  const nlohmann::json& modules = root.required("modules");
  if (!modules.is_array() || modules.empty()) {
    root.fail("modules", "expected a non-empty array of modules");
  }
  for (std::size_t i = 0; i < modules.size(); ++i) {
    std::vector<std::string> inputs;
    module_spec m = io::read_module(modules[i], source, "modules[" + std::to_string(i) + "]", result.measured, inputs);
    for (std::string& from : inputs) builder.connect(std::move(from), m.name);
    builder.add(std::move(m));
  }
  root.finish();
  try {
    result.model = builder.build();
  } catch (const error& e) {
    throw error(e.code(), source + ": " + e.where(), e.detail());
  }
  return result;
}

inline model_file parse_model_json(std::string_view text, const std::string& source) {
  return parse_model_json(io::parse_json_text(text, source), source);
}

inline model_file read_model_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error(errc::not_found, path.string(), "cannot open the model file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_model_json(std::string_view(text.str()), path.string());
}

}  // namespace dip
