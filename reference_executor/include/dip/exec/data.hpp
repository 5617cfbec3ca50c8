// The reference executor's data model: what every (microbatch, module, sub-microbatch) computes.
//
// The rule, independent of placement and schedule (so any plan must reproduce the sequential
// run bit for bit):
// - A *unit* is one work_unit of batch_work: microbatch j, module m, sub-microbatch u. It has
//   rows = max(1, round(tokens)) token rows cut into max(1, min(rows, round(sequences)))
//   sequences of near-equal length (the first rows % n one longer); attention mixes tokens
//   only within a sequence, so units never mix.
// - Its input is synthetic: rows x (the module's first layer's input width), uniform in
//   [-1, 1), seeded by (j, m, u).
// - Context: a module fed by others reads its producers' outputs of the same microbatch. Unit u
//   of consumer m reads unit u of producer p when both have the same number of units in the
//   microbatch (an encoder and its projector split alike), else every unit of p in order
//   (all image sub-microbatches feed each LLM sub-microbatch). Producers are read in module-id
//   order and their rows concatenated (they must have the same width); the *context summary*
//   c is the mean of those rows, 1 x width. The module's first layer adds c Wctx to every row,
//   dit blocks scale by (1 + c Wm): a stand-in for image tokens and cross-attention that works
//   for any sub-microbatch counts.
// - Loss: a module feeding no other computes one. After an lm_head: softmax cross-entropy to
//   labels seeded by (j, m, u, row); otherwise half the squared error to a target seeded by
//   (j, m, u). Both are means over the unit's rows; the batch loss sums all units.
// - Exactness: gradients of every (j, u) are kept apart and summed in a canonical order
//   (microbatch, then unit; context gradients by consumer module, then consumer unit), so the
//   sum does not depend on the order a schedule ran the stages in.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/model/model.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip::exec {

// One (module, unit) of a microbatch.
struct unit_key {
  std::uint32_t module = 0;
  std::uint32_t unit = 0;
  friend auto operator<=>(const unit_key&, const unit_key&) = default;
};

inline std::int64_t unit_rows(const work_unit& w) { return std::max<std::int64_t>(1, std::llround(w.tokens)); }

inline sequence_lengths unit_sequences(const work_unit& w) {
  const std::int64_t rows = unit_rows(w);
  const std::int64_t n = std::clamp<std::int64_t>(std::llround(w.sequences), 1, rows);
  sequence_lengths lengths(static_cast<std::size_t>(n), rows / n);
  for (std::int64_t i = 0; i < rows % n; ++i) ++lengths[static_cast<std::size_t>(i)];
  return lengths;
}

// The model's layers made executable, with the facts about modules the data rule needs.
class executable_model {
 public:
  explicit executable_model(const multimodal_model& model) : model_(model) {
    const std::size_t n = model.module_count();
    layers_.resize(n);
    context_width_.assign(n, 0);
    for (module_id m : model.topological_order()) {
      const module_spec& spec = model.module(m);
      for (module_id p : model.inputs_of(m)) {
        const std::int64_t width = output_width(p);
        require(context_width_[m.index()] == 0 || context_width_[m.index()] == width, errc::invalid_argument,
                "module '" + spec.name + "'", "its producers' outputs have different widths");
        context_width_[m.index()] = width;
      }
      for (std::size_t i = 0; i < spec.layers.size(); ++i) {
        layers_[m.index()].push_back(make_layer(spec, i, context_width_[m.index()]));
        if (i > 0) {
          require(layers_[m.index()][i]->input_width() == layers_[m.index()][i - 1]->output_width(),
                  errc::invalid_argument, "module '" + spec.name + "' layer " + std::to_string(i),
                  "takes " + std::to_string(layers_[m.index()][i]->input_width()) + " features, layer " +
                      std::to_string(i - 1) + " gives " + std::to_string(layers_[m.index()][i - 1]->output_width()));
        }
      }
    }
  }

  const multimodal_model& model() const noexcept { return model_; }
  const layer& at(std::size_t module, std::size_t index) const { return *layers_.at(module).at(index); }
  std::size_t layer_count(std::size_t module) const { return layers_.at(module).size(); }
  std::int64_t context_width(std::size_t module) const { return context_width_.at(module); }
  std::int64_t input_width(std::size_t module) const { return layers_.at(module).front()->input_width(); }
  std::int64_t output_width(module_id m) const { return layers_.at(m.index()).back()->output_width(); }
  bool is_sink(std::size_t module) const { return model_.outputs_of(module_id::from_index(module)).empty(); }
  bool ends_in_lm_head(std::size_t module) const {
    return std::holds_alternative<lm_head>(model_.modules()[module].layers.back());
  }

 private:
  multimodal_model model_;
  std::vector<std::vector<std::unique_ptr<layer>>> layers_;
  std::vector<std::int64_t> context_width_;
};

inline tensor synthetic_input(const executable_model& model, std::size_t j, unit_key key, std::int64_t rows) {
  return random_tensor(rows, model.input_width(key.module), 1.0, mix_seed({0x1b9u, j, key.module, key.unit}));
}

// The producer units unit `key` of microbatch `mb` reads as context, in reading order.
inline std::vector<unit_key> context_sources(const executable_model& model, const microbatch_work& mb, unit_key key) {
  std::vector<unit_key> sources;
  const std::size_t own = mb.modules.at(key.module).size();
  for (module_id p : model.model().inputs_of(module_id::from_index(key.module))) {
    const std::size_t count = mb.modules.at(p.index()).size();
    if (count == own) {
      sources.push_back({std::uint32_t(p.index()), key.unit});
    } else {
      for (std::size_t u = 0; u < count; ++u) sources.push_back({std::uint32_t(p.index()), std::uint32_t(u)});
    }
  }
  return sources;
}

// Mean over the rows of `outputs` (in order): the context summary.
inline tensor context_summary(const std::vector<const tensor*>& outputs) {
  std::int64_t rows = 0;
  for (const tensor* t : outputs) rows += t->rows();
  tensor all(rows, outputs.front()->cols());
  std::int64_t at = 0;
  for (const tensor* t : outputs) {
    all.middleRows(at, t->rows()) = *t;
    at += t->rows();
  }
  return all.colwise().sum() / double(rows);
}

// A sink unit's loss and the gradient of its output.
struct unit_loss {
  double value = 0;
  tensor gradient;
};

inline unit_loss compute_loss(const executable_model& model, std::size_t j, unit_key key, const tensor& y) {
  const double rows = double(y.rows());
  if (model.ends_in_lm_head(key.module)) {
    unit_loss result{0.0, tensor(y.rows(), y.cols())};
    for (std::int64_t i = 0; i < y.rows(); ++i) {
      const auto label =
          std::int64_t(mix_seed({0x1abe1u, j, key.module, key.unit, std::uint64_t(i)}) % std::uint64_t(y.cols()));
      const double top = y.row(i).maxCoeff();
      const Eigen::ArrayXd e = (y.row(i).array() - top).exp().transpose();
      const double sum = e.sum();
      result.value += (std::log(sum) + top - y(i, label)) / rows;
      result.gradient.row(i) = (e / sum).transpose().matrix() / rows;
      result.gradient(i, label) -= 1.0 / rows;
    }
    return result;
  }
  const tensor target = random_tensor(y.rows(), y.cols(), 1.0, mix_seed({0x7a6e7u, j, key.module, key.unit}));
  const tensor diff = y - target;
  return {0.5 * diff.squaredNorm() / rows, diff / rows};
}

// Per (module, layer), per (microbatch, unit): the weight gradients, summed in canonical order
// by reduce().
class gradient_store {
 public:
  void add(std::size_t module, std::size_t layer, std::size_t microbatch, std::uint32_t unit,
           std::vector<tensor> grads) {  // NOLINT(performance-unnecessary-value-param): moved below
    auto [it, fresh] = parts_.try_emplace({module, layer, microbatch, unit}, std::move(grads));
    require(fresh, errc::invalid_argument, "gradient_store",
            "module " + std::to_string(module) + " layer " + std::to_string(layer) + " microbatch " +
                std::to_string(microbatch) + " unit " + std::to_string(unit) + ": weight gradient computed twice");
  }
  void merge(gradient_store&& other) {
    for (auto& [key, grads] : other.parts_) {
      add(std::get<0>(key), std::get<1>(key), std::get<2>(key), std::get<3>(key), std::move(grads));
    }
  }
  std::size_t size() const noexcept { return parts_.size(); }

  // {module, layer} -> one tensor per parameter: the sum over (microbatch, unit) in that order.
  std::map<std::pair<std::size_t, std::size_t>, std::vector<tensor>> reduce() const {
    std::map<std::pair<std::size_t, std::size_t>, std::vector<tensor>> total;
    for (const auto& [key, grads] : parts_) {
      auto [it, fresh] = total.try_emplace({std::get<0>(key), std::get<1>(key)}, grads);
      if (!fresh) {
        for (std::size_t i = 0; i < grads.size(); ++i) it->second[i] += grads[i];
      }
    }
    return total;
  }

 private:
  std::map<std::tuple<std::size_t, std::size_t, std::size_t, std::uint32_t>, std::vector<tensor>> parts_;
};

// Gradient of a producer unit's output rows: contributions (consumer unit -> dc / N) summed in
// consumer order, the same for every row since c is a mean.
inline tensor output_gradient_from_context(const std::map<unit_key, tensor>& contributions, std::int64_t rows,
                                           std::int64_t width) {
  tensor sum = tensor::Zero(1, width);
  for (const auto& [consumer, part] : contributions) sum += part;
  tensor dy(rows, width);
  for (std::int64_t i = 0; i < rows; ++i) dy.row(i) = sum.row(0);
  return dy;
}

// Result of a training step on the batch: gradients, loss and per-rank figures.
struct step_result {
  std::map<std::pair<std::size_t, std::size_t>, std::vector<tensor>> gradients;  // {module, layer}
  double loss = 0;
  std::vector<std::size_t> peak_activation_bytes;  // per rank, device
  std::vector<std::size_t> peak_offloaded_bytes;   // per rank, host store
  std::vector<double> rank_seconds;                // per rank, wall time of run_rank
};

// Sum of unit losses in (microbatch, module, unit) order.
inline double total_loss(const std::map<std::tuple<std::size_t, std::uint32_t, std::uint32_t>, double>& losses) {
  double sum = 0;
  for (const auto& [key, value] : losses) sum += value;
  return sum;
}

}  // namespace dip::exec
