// dip::profiled_cost_model: a cost model fitted to measured runs of each module's layers.
//
// A trainer times forward, backward-input and backward-weight passes (and measures the kept
// activation and the output size) of a layer at a few sizes; this model fits each of those five
// outputs with least squares on the features [1, tokens, token_pairs], i.e. a + b n + c n^2 for a
// single sequence of n tokens. Because token_pairs is the sum of squared sequence lengths, the
// same fit prices packed sequences of mixed lengths. Where attention runs a kernel per sequence
// (CPU attention, or any runtime that loops over a packed batch's sequences), the per_sequence
// basis adds a cost per sequence. Samples are given per module ("all layers of module X") and
// optionally per layer; a layer's own fit wins over its module's.
//
// @code
//   dip::profiled_cost_model model;
//   dip::profile_report vit = model.add_samples("vit", vit_samples);  // quadratic basis
//   model.add_layer_samples("llm", 0, embedding_samples);   // the LLM's layer 0 only
//   model.add_samples("llm", block_samples);                // every other LLM layer
//   if (vit.forward.max_relative_residual > 0.05) { /* the fit is poor: profile more sizes */ }
//   static_assert(dip::cost_model_like<dip::profiled_cost_model>);
// @endcode
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/cost/least_squares.hpp"
#include "dip/cost/work.hpp"
#include "dip/model/module.hpp"

namespace dip {

// The features a profile is fitted on.
//   quadratic: [1, tokens, token_pairs]  (a + b n + c n^2 for one sequence of n tokens)
//   linear:    [1, tokens]               (for layers without attention, or for samples that all
//                                         have one sequence length, where token_pairs is a fixed
//                                         multiple of tokens and cannot be told apart from it)
//   per_sequence: [1, tokens, token_pairs, sequences]  (quadratic, plus a fixed cost per sequence:
//                                         a runtime that launches attention once per sequence)
enum class profile_basis { quadratic, linear, per_sequence };

constexpr std::string_view to_string(profile_basis basis) noexcept {
  switch (basis) {
    case profile_basis::quadratic: return "quadratic";
    case profile_basis::linear: return "linear";
    case profile_basis::per_sequence: return "per_sequence";
  }
  return "quadratic";
}

// The names of a basis' features, in the order of its coefficients.
inline std::vector<std::string> feature_names(profile_basis basis) {
  switch (basis) {
    case profile_basis::linear: return {"1", "tokens"};
    case profile_basis::per_sequence: return {"1", "tokens", "token_pairs", "sequences"};
    case profile_basis::quadratic: break;
  }
  return {"1", "tokens", "token_pairs"};
}

// One measured run of a layer on `work`.
struct profile_sample {
  work_unit work;
  duration forward{};
  duration backward_input{};
  duration backward_weight{};
  bytes activation{};
  bytes output{};
};

// How well each of the five outputs was fitted. Coefficients are in SI base units (seconds or
// bytes per 1, per token, per token pair), in the order of the basis' features.
struct profile_report {
  profile_basis basis = profile_basis::quadratic;
  std::size_t samples = 0;
  fit_report forward;
  fit_report backward_input;
  fit_report backward_weight;
  fit_report activation;
  fit_report output;
};

class profiled_cost_model {
 public:
  // Adds measured samples for every layer of `module` that has no fit of its own, and refits the
  // module-wide profile on all its samples so far with `basis` (the latest call's basis applies to
  // all of them). Returns the fit's report. Throws dip::error(errc::invalid_argument) naming the
  // module and sample index for a sample that is not finite, negative, or has no tokens, and for
  // samples that cannot determine the basis' coefficients (too few distinct sizes). On a throw
  // the model is unchanged: the new samples are not kept.
  profile_report add_samples(std::string_view module, std::span<const profile_sample> samples,
                             profile_basis basis = profile_basis::quadratic) {
    require(!module.empty(), errc::invalid_argument, "add_samples", "module name must not be empty");
    const std::string where = "module '" + std::string(module) + "'";
    auto found = modules_.find(module);
    const fitted_profile* previous = found != modules_.end() && found->second.all_layers ? &*found->second.all_layers
                                                                                         : nullptr;
    fitted_profile fit = refit(previous, samples, basis, where);
    if (found == modules_.end()) found = modules_.emplace(std::string(module), module_profiles{}).first;
    found->second.all_layers = std::move(fit);
    return found->second.all_layers->report;
  }

  // As add_samples, for layer `layer` of `module` only; this fit wins over the module-wide one.
  profile_report add_layer_samples(std::string_view module, std::size_t layer, std::span<const profile_sample> samples,
                                   profile_basis basis = profile_basis::quadratic) {
    require(!module.empty(), errc::invalid_argument, "add_layer_samples", "module name must not be empty");
    const std::string where = "module '" + std::string(module) + "' layer " + std::to_string(layer);
    auto found = modules_.find(module);
    const fitted_profile* previous = nullptr;
    if (found != modules_.end()) {
      const auto own = found->second.layers.find(layer);
      if (own != found->second.layers.end()) previous = &own->second;
    }
    fitted_profile fit = refit(previous, samples, basis, where);
    if (found == modules_.end()) found = modules_.emplace(std::string(module), module_profiles{}).first;
    auto& slot = found->second.layers[layer];
    slot = std::move(fit);
    return slot.report;
  }

  // The module-wide fit's report; throws dip::error(errc::not_found) if there is none.
  profile_report report(std::string_view module) const {
    const auto found = modules_.find(module);
    if (found == modules_.end() || !found->second.all_layers) {
      throw error(errc::not_found, "module '" + std::string(module) + "'",
                  "no module-wide profile samples (add_samples)" + known_modules());
    }
    return found->second.all_layers->report;
  }

  // The report of the fit that prices layer `layer` of `module` (its own, else the module-wide
  // one); throws dip::error(errc::not_found) if there is none.
  profile_report report(std::string_view module, std::size_t layer) const {
    if (const fitted_profile* fit = lookup(module, layer)) return fit->report;
    throw not_profiled(module, layer);
  }

  // The names of the modules with samples (module-wide or for a layer), in name order.
  std::vector<std::string> profiled_modules() const {
    std::vector<std::string> names;
    for (const auto& [name, profiles] : modules_) names.push_back(name);
    return names;
  }

  // Whether cost() can price layer `layer` of `module`.
  bool has_profile(std::string_view module, std::size_t layer) const noexcept {
    return lookup(module, layer) != nullptr;
  }

  // Whether cost() prices layer `layer` of `module` without throwing: a fit of the layer or of its
  // module, and a layer the module has. Makes the profile an overlay_cost_model's primary, in
  // front of a model for the layers nobody profiled.
  bool covers(const module_spec& module, std::size_t layer) const noexcept {
    return layer < module.layers.size() && lookup(module.name, layer) != nullptr;
  }

  // The fitted cost of layer `layer` of `module` on `work`. Each output is the fit evaluated at
  // the work's features and clamped at 0: a fitted intercept can come out slightly negative
  // (noise, or a layer whose cost is nearly proportional to its tokens), and a small work unit
  // must not get a negative time. Empty work (tokens == 0) costs nothing.
  // Throws dip::error(errc::not_found) when neither the layer nor its module has samples, and
  // errc::invalid_argument for a layer beyond the module's layers or an invalid work unit.
  layer_cost cost(const module_spec& module, std::size_t layer, const work_unit& work) const {
    const fitted_profile* fit = lookup(module.name, layer);
    if (fit == nullptr) throw not_profiled(module.name, layer);
    if (layer >= module.layers.size()) {
      throw error(errc::invalid_argument, "module '" + module.name + "' layer " + std::to_string(layer),
                  "layer index is beyond the module's " + std::to_string(module.layers.size()) + " layers");
    }
    // Checked without building the location string: cost() sits on the planners' hot path.
    if (!valid(work)) validate(work, "module '" + module.name + "' layer " + std::to_string(layer));
    if (work.empty()) return {};
    const std::array<double, 4> features{1.0, work.tokens, work.token_pairs, work.sequences};
    const auto evaluate = [&](const std::array<double, 4>& c) {
      const double value = c[0] * features[0] + c[1] * features[1] + c[2] * features[2] + c[3] * features[3];
      return value > 0.0 ? value : 0.0;
    };
    return {.forward = duration(evaluate(fit->coefficients[0])),
            .backward_input = duration(evaluate(fit->coefficients[1])),
            .backward_weight = duration(evaluate(fit->coefficients[2])),
            .activation = bytes(evaluate(fit->coefficients[3])),
            .output = bytes(evaluate(fit->coefficients[4]))};
  }

  // What running a stage costs beyond its layers: the runtime's own work per action (launching
  // it, packing and posting its messages, bookkeeping), measured as a constant per action kind.
  // Layers alone cannot carry it: their intercepts are paid per layer, this once per stage.
  // chunk_cost adds it to every non-empty run of a module's layers (a stage spanning two modules
  // pays it twice). Throws dip::error(errc::invalid_argument) for a negative or non-finite time.
  void set_stage_overhead(duration forward, duration backward_input, duration backward_weight) {
    const layer_cost overhead{forward, backward_input, backward_weight, {}, {}};
    validate(overhead, "stage overhead");
    stage_overhead_ = overhead;
  }

  const layer_cost& stage_overhead() const noexcept { return stage_overhead_; }

  // Layers [first, last) of `module` on `work`, plus the stage overhead (unless the work is empty).
  layer_cost chunk_cost(const module_spec& module, std::size_t first, std::size_t last, const work_unit& work) const {
    layer_cost total = sum_of_layer_costs(*this, module, first, last, work);
    if (!work.empty()) {
      total.forward += stage_overhead_.forward;
      total.backward_input += stage_overhead_.backward_input;
      total.backward_weight += stage_overhead_.backward_weight;
    }
    return total;
  }

 private:
  // One fitted sample set: its samples (kept so a later add refits on all of them), the five
  // fits' coefficients as [1, tokens, token_pairs, sequences] (0 for what the basis lacks).
  struct fitted_profile {
    std::vector<profile_sample> samples;
    std::array<std::array<double, 4>, 5> coefficients{};
    profile_report report;
  };

  struct module_profiles {
    std::optional<fitted_profile> all_layers;
    std::map<std::size_t, fitted_profile> layers;
  };

  static bool valid(const work_unit& work) noexcept {
    for (double field : {work.sequences, work.tokens, work.token_pairs, work.context_tokens, work.context_pairs}) {
      if (!std::isfinite(field) || field < 0.0) return false;
    }
    return true;
  }

  const fitted_profile* lookup(std::string_view module, std::size_t layer) const noexcept {
    const auto found = modules_.find(module);
    if (found == modules_.end()) return nullptr;
    const auto own = found->second.layers.find(layer);
    if (own != found->second.layers.end()) return &own->second;
    return found->second.all_layers ? &*found->second.all_layers : nullptr;
  }

  std::string known_modules() const {
    if (modules_.empty()) return "; no module has been profiled";
    std::string text = "; profiled modules:";
    for (const auto& [name, profiles] : modules_) text += " '" + name + "'";
    return text;
  }

  error not_profiled(std::string_view module, std::size_t layer) const {
    return error(errc::not_found, "module '" + std::string(module) + "' layer " + std::to_string(layer),
                 "no profile samples for this layer or its module (add_samples, add_layer_samples)" + known_modules());
  }

  // Throws dip::error naming `where` and the sample's index if a sample cannot be used.
  static void validate_sample(const profile_sample& sample, const std::string& where) {
    validate(sample.work, where);
    require(sample.work.tokens > 0.0, errc::invalid_argument, where,
            "work_unit.tokens must be > 0: empty work costs nothing by definition, so it cannot be "
            "a sample");
    const std::pair<double, const char*> outputs[] = {{sample.forward.base(), "forward"},
                                                      {sample.backward_input.base(), "backward_input"},
                                                      {sample.backward_weight.base(), "backward_weight"},
                                                      {sample.activation.base(), "activation"},
                                                      {sample.output.base(), "output"}};
    for (const auto& [value, name] : outputs) {
      require(std::isfinite(value) && value >= 0.0, errc::invalid_argument, where,
              std::string(name) + " must be finite and >= 0, got " + detail::fit_number_text(value));
    }
  }

  // What to add when the samples cannot determine the basis, in the terms of a profiling run.
  static std::string rank_hint(const std::vector<profile_sample>& samples, profile_basis basis) {
    if (basis == profile_basis::linear) {
      return "the linear basis [1, tokens] needs samples at >= 2 distinct token counts";
    }
    std::string hint = basis == profile_basis::per_sequence
                           ? "the per_sequence basis [1, tokens, token_pairs, sequences] needs samples at >= 4 "
                             "distinct sizes whose token_pairs and sequences are not fixed multiples of tokens"
                           : "the quadratic basis [1, tokens, token_pairs] needs samples at >= 3 distinct sizes whose "
                             "token_pairs are not a fixed multiple of tokens";
    // Every sample with token_pairs = L * tokens means every sequence has length L: the n^2 term
    // is then indistinguishable from the n term.
    const double ratio = samples.front().work.token_pairs / samples.front().work.tokens;
    bool fixed_multiple = true;
    for (const profile_sample& sample : samples) {
      const double r = sample.work.token_pairs / sample.work.tokens;
      if (std::fabs(r - ratio) > 1e-9 * std::fabs(ratio)) fixed_multiple = false;
    }
    if (fixed_multiple) {
      hint += "; here token_pairs = " + detail::fit_number_text(ratio) +
              " * tokens in every sample (all sequences have one length): profile other sequence "
              "lengths, or pass profile_basis::linear (exact only at that length)";
    }
    return hint;
  }

  // Validates `added`, then fits the five outputs on previous->samples + added. Builds a new
  // profile and leaves the model alone, so a throw changes nothing.
  static fitted_profile refit(const fitted_profile* previous, std::span<const profile_sample> added,
                              profile_basis basis, const std::string& where) {
    require(!added.empty(), errc::invalid_argument, where, "no profile samples given");
    for (std::size_t i = 0; i < added.size(); ++i) {
      validate_sample(added[i], where + " sample " + std::to_string(i));
    }
    fitted_profile fit;
    if (previous != nullptr) fit.samples = previous->samples;
    fit.samples.insert(fit.samples.end(), added.begin(), added.end());

    const Eigen::Index n = static_cast<Eigen::Index>(fit.samples.size());
    const Eigen::Index k = static_cast<Eigen::Index>(feature_names(basis).size());
    Eigen::MatrixXd design(n, k);
    Eigen::MatrixXd values(n, 5);
    for (Eigen::Index i = 0; i < n; ++i) {
      const profile_sample& s = fit.samples[static_cast<std::size_t>(i)];
      design(i, 0) = 1.0;
      design(i, 1) = s.work.tokens;
      if (k >= 3) design(i, 2) = s.work.token_pairs;
      if (k >= 4) design(i, 3) = s.work.sequences;
      values.row(i) << s.forward.base(), s.backward_input.base(), s.backward_weight.base(), s.activation.base(),
          s.output.base();
    }
    const std::string hint = rank_hint(fit.samples, basis);
    fit_report* reports[] = {&fit.report.forward, &fit.report.backward_input, &fit.report.backward_weight,
                             &fit.report.activation, &fit.report.output};
    for (std::size_t output = 0; output < 5; ++output) {
      const Eigen::VectorXd y = values.col(static_cast<Eigen::Index>(output));
      *reports[output] = least_squares_fit(design, y, where, hint);
      for (std::size_t j = 0; j < reports[output]->coefficients.size(); ++j) {
        fit.coefficients[output][j] = reports[output]->coefficients[j];
      }
    }
    fit.report.basis = basis;
    fit.report.samples = fit.samples.size();
    return fit;
  }

  std::map<std::string, module_profiles, std::less<>> modules_;
  layer_cost stage_overhead_{};
};

static_assert(chunk_cost_model_like<profiled_cost_model>);

}  // namespace dip
