// A model as the Python bindings hold it: the module graph, the measured layer costs of a model
// file (empty for a preset), and the cluster defaults (pp, tp, GPU) that dip-plan would use.
//
// Presets and files share one shape so that planning has one cost-model type: a file's measured
// table first, then a profile (dip.ProfiledCosts), then the analytic model. A preset's table and
// an absent profile are empty (the overlay then answers every layer from the analytic model,
// exactly as dip-plan does).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include <dip/cost/analytic.hpp>
#include <dip/cost/fixed_table.hpp>
#include <dip/cost/profiled.hpp>
#include <dip/io/model_json.hpp>
#include <dip/model/hardware.hpp>
#include <dip/model/model.hpp>
#include <dip/model/presets.hpp>

namespace dip::python {

using cost_model = overlay_cost_model<fixed_cost_table, overlay_cost_model<profiled_cost_model, analytic_cost_model>>;

struct model_handle {
  multimodal_model model;
  fixed_cost_table measured;  // modules a model file gives "layer_cost" for
  std::string description;    // a preset's ("ViT-5B + Llama3-8B"); empty for a file
  std::string source;         // "preset", the file's path, or "<string>"
  int pp = 1;                 // defaults for plan(): the preset's or the file's
  int tp = 1;
  std::string gpu = "H800";

  // The measured table, then `profile`'s fits, then the analytic model of `device` at `tensor_parallel`.
  cost_model costs(const gpu_spec& device, int tensor_parallel, const profiled_cost_model& profile = {}) const {
    return {measured, {profile, analytic_cost_model(device, tensor_parallel)}};
  }
};

inline model_handle model_from_preset(std::string_view name) {
  model_preset preset = find_preset(name);
  return {std::move(preset.model), {}, std::move(preset.description), "preset", preset.parallel.pp, preset.parallel.tp,
          std::move(preset.gpu)};
}

// As dip-plan reads `--model FILE`: a file without pp/tp/gpu gets 1, 1 and H800.
inline model_handle model_from_file(model_file file, std::string source) {
  return {std::move(file.model), std::move(file.measured), {}, std::move(source), file.pp.value_or(1),
          file.tp.value_or(1),   file.gpu.value_or("H800")};
}

// JSON text when it starts with '{' (after blanks), otherwise a path to a model file.
inline model_handle model_from_json(const std::string& path_or_text) {
  const auto first = path_or_text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && path_or_text[first] == '{') {
    return model_from_file(parse_model_json(std::string_view(path_or_text), "<string>"), "<string>");
  }
  return model_from_file(read_model_file(std::filesystem::path(path_or_text)), path_or_text);
}

}  // namespace dip::python
