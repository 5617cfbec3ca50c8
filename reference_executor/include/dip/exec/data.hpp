// The reference executor's data model: what every (microbatch, module, sub-microbatch) computes,
// from an executable plan's batch (dip::exported_batch, docs/plan-format.md version 2) and with
// the information flow of dip.torch's reference model (python/dip/torch/model.py).
//
// The rule, independent of placement and schedule (so any plan must reproduce the sequential
// run bit for bit):
// - A *unit* is one sub-microbatch as the schedule runs it: microbatch j, module m, sub u, with
//   the sub's `items` (images, clips, captions, or the packed sequence) and integer `rows`.
//   Its rows are its items' rows in item order; attention mixes rows only within a *segment*:
//   an image, a clip, a caption, or one sample of the packed sequence.
// - Inputs are synthetic per item, uniform in [-1, 1), seeded by (j, m, item), so that any
//   grouping of items into sub-microbatches sees the same data.
// - Information flow (which rows feed which):
//   - a module whose producer counts the same items (a projector) continues its producer's rows
//     item by item: its input is the producer's output rows of its items, reshaped row-major to
//     its first layer's width (merge^2 encoder patch rows become one token);
//   - an LLM with an embedding fed by image modules: its packed sequence is, per sample, the
//     sample's images' tokens then its text, and the embedding's output rows at each image's
//     positions are replaced by the producer's rows of that image;
//   - a module with dit blocks fed by a producer (a DiT) holds its *context*: the producer rows
//     of the captions its clips need (in caption order); each dit block scales a row by
//     (1 + c_r Wm), c_r being the mean of the row's own clip's caption rows (zero without one).
// - Loss: a module feeding no other computes one. After an lm_head: softmax cross-entropy to
//   labels seeded by (j, m, item, row); otherwise half the squared error to a target seeded by
//   (j, m, item). Both are summed over the unit's rows and divided by the module's rows in the
//   whole microbatch; the batch loss sums all units in (microbatch, module, unit) order.
// - Exactness: weight gradients of every (j, u) are kept apart and summed in canonical order
//   (microbatch, then unit). The gradient of a producer's output rows is the sum of what its
//   consumers send back for them; a row that feeds one consumer (every preset) gets one
//   contribution, so the order messages arrive in cannot change a bit. (A producer read by two
//   consumer modules sums two contributions per row, in the order the schedule runs them.)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/io/executable_batch.hpp"
#include "dip/io/model_export.hpp"
#include "dip/model/model.hpp"

namespace dip::exec {

// One (module, unit) of a microbatch.
struct unit_key {
  std::uint32_t module = 0;
  std::uint32_t unit = 0;
  friend auto operator<=>(const unit_key&, const unit_key&) = default;
};

// Rows [begin, begin + rows) of a tensor.
struct row_range {
  std::int64_t begin = 0;
  std::int64_t rows = 0;
};

// How a module's first layer gets its input (see the file comment).
enum class module_start : std::uint8_t {
  synthetic,     // seeded rows per item
  continuation,  // the same-kind producer's rows, reshaped to the first layer's width
  injection,     // synthetic token rows; the producer's image rows replace the embedding's output
};

// The model's layers made executable, with the facts about modules the data rule needs.
class executable_model {
 public:
  explicit executable_model(const multimodal_model& model) : model_(model), exported_(describe_model(model)) {
    const std::size_t n = model.module_count();
    layers_.resize(n);
    context_width_.assign(n, 0);
    start_.assign(n, module_start::synthetic);
    producer_.assign(n, std::nullopt);
    for (module_id id : model.topological_order()) {
      const std::size_t m = id.index();
      const module_spec& spec = model.module(id);
      const exported_module& e = exported_.modules[m];
      const bool dit = std::any_of(spec.layers.begin(), spec.layers.end(),
                                   [](const layer_spec& l) { return std::holds_alternative<dit_block>(l); });
      if (!e.inputs.empty()) {
        const std::size_t p = e.inputs.front();
        producer_[m] = p;
        if (dit) {
          context_width_[m] = output_width(module_id::from_index(p));
        } else if (std::holds_alternative<embedding>(spec.layers.front()) && e.item == item_kind::sequence) {
          start_[m] = module_start::injection;
        } else if (!e.image && !e.video) {
          require(
              e.inputs.size() == 1 && exported_.modules[p].item == e.item, errc::invalid_argument,
              "module '" + spec.name + "'",
              "continues its producer's rows: it needs one producer counting " + std::string(to_string(e.item)) + "s");
          start_[m] = module_start::continuation;
        }
      }
      for (std::size_t i = 0; i < spec.layers.size(); ++i) {
        layers_[m].push_back(make_layer(spec, i, context_width_[m]));
        if (i > 0) {
          require(layers_[m][i]->input_width() == layers_[m][i - 1]->output_width(), errc::invalid_argument,
                  "module '" + spec.name + "' layer " + std::to_string(i),
                  "takes " + std::to_string(layers_[m][i]->input_width()) + " features, layer " +
                      std::to_string(i - 1) + " gives " + std::to_string(layers_[m][i - 1]->output_width()));
        }
      }
      if (start_[m] == module_start::continuation) {
        const std::int64_t from = output_width(module_id::from_index(*producer_[m])), to = input_width(m);
        require(to % from == 0, errc::invalid_argument, "module '" + spec.name + "'",
                "takes " + std::to_string(to) + " features, not a multiple of its producer's " + std::to_string(from));
      }
      if (start_[m] == module_start::injection) {
        for (std::size_t p : e.inputs) {
          require(output_width(module_id::from_index(p)) == layers_[m][0]->output_width(), errc::invalid_argument,
                  "module '" + spec.name + "'", "its producers' rows do not have its embedding's width");
        }
      }
    }
  }

  const multimodal_model& model() const noexcept { return model_; }
  const exported_model& exported() const noexcept { return exported_; }
  const exported_module& module(std::size_t m) const { return exported_.modules.at(m); }
  const layer& at(std::size_t module, std::size_t index) const { return *layers_.at(module).at(index); }
  std::size_t layer_count(std::size_t module) const { return layers_.at(module).size(); }
  std::int64_t context_width(std::size_t module) const { return context_width_.at(module); }
  std::int64_t input_width(std::size_t module) const { return layers_.at(module).front()->input_width(); }
  std::int64_t output_width(module_id m) const { return layers_.at(m.index()).back()->output_width(); }
  module_start start(std::size_t module) const { return start_.at(module); }
  std::optional<std::size_t> producer(std::size_t module) const { return producer_.at(module); }
  bool is_sink(std::size_t module) const { return model_.outputs_of(module_id::from_index(module)).empty(); }
  bool ends_in_lm_head(std::size_t module) const {
    return std::holds_alternative<lm_head>(model_.modules()[module].layers.back());
  }

 private:
  multimodal_model model_;
  exported_model exported_;
  std::vector<std::vector<std::unique_ptr<layer>>> layers_;
  std::vector<std::int64_t> context_width_;
  std::vector<module_start> start_;
  std::vector<std::optional<std::size_t>> producer_;
};

// Rows of each item of `items` for module m, and their offsets in item order.
inline std::vector<row_range> item_ranges(const exported_microbatch& mb, const exported_module& m,
                                          const std::vector<std::size_t>& items) {
  std::vector<row_range> out;
  std::int64_t at = 0;
  for (std::size_t i : items) {
    const std::int64_t n = item_rows(mb, m, i);
    out.push_back({at, n});
    at += n;
  }
  return out;
}

// The ranges of `wanted` items inside rows held for `held` items (both increasing).
inline std::vector<row_range> select_items(const exported_microbatch& mb, const exported_module& m,
                                           const std::vector<std::size_t>& held, const std::vector<std::size_t>& wanted,
                                           const std::string& where) {
  const std::vector<row_range> ranges = item_ranges(mb, m, held);
  std::vector<row_range> out;
  for (std::size_t item : wanted) {
    const auto it = std::lower_bound(held.begin(), held.end(), item);
    require(it != held.end() && *it == item, errc::invalid_plan, where,
            "needs " + std::string(to_string(m.item)) + " " + std::to_string(item) + " of module '" + m.name +
                "', which it does not hold");
    out.push_back(ranges[std::size_t(it - held.begin())]);
  }
  return out;
}

// Everything about one unit that follows from the batch alone.
struct unit_info {
  std::vector<std::size_t> items;
  std::int64_t rows = 0;
  sequence_lengths segments;  // attention boundaries; sum to rows
  // Context (modules with dit blocks and a producer): the producer items held, increasing, and
  // per segment the rows of its caption inside them (rows 0: none).
  std::vector<std::size_t> context_items;
  std::vector<row_range> context_of_segment;
  // Injection (an LLM fed by images): the producer's image items and, per item in order, the
  // first row of the image in the packed sequence.
  std::vector<std::size_t> inject_items;
  std::vector<std::int64_t> inject_at;
};

inline unit_info make_unit_info(const executable_model& model, const exported_batch& batch, std::size_t j,
                                unit_key key) {
  const exported_microbatch& mb = batch.microbatches.at(j);
  const exported_module& m = model.module(key.module);
  const exported_sub& sub = mb.subs.at(key.module).at(key.unit);
  unit_info info;
  info.items = sub.items;
  info.rows = sub.rows;
  if (m.item == item_kind::sequence) {
    if (!sub.items.empty()) {
      for (std::int64_t length : mb.sequence_lengths)
        if (length > 0) info.segments.push_back(length);
    }
  } else {
    for (std::size_t i : sub.items) {
      const std::int64_t n = item_rows(mb, m, i);
      if (n > 0) info.segments.push_back(n);
    }
  }
  const std::optional<std::size_t> producer = model.producer(key.module);
  if (model.context_width(key.module) > 0) {
    const exported_module& p = model.module(*producer);
    for (const exported_sub& ps : mb.subs.at(*producer)) {
      const std::vector<std::size_t> items = needed_items(mb, m.item, sub, p.item, ps);
      info.context_items.insert(info.context_items.end(), items.begin(), items.end());
    }
    std::sort(info.context_items.begin(), info.context_items.end());
    info.context_items.erase(std::unique(info.context_items.begin(), info.context_items.end()),
                             info.context_items.end());
    const std::vector<row_range> ranges = item_ranges(mb, p, info.context_items);
    for (std::size_t i : sub.items) {
      if (item_rows(mb, m, i) == 0) continue;
      row_range r;
      if (m.item == item_kind::clip && p.item == item_kind::caption) {
        if (const std::optional<std::size_t> caption = caption_of_clip(mb, i)) {
          const auto it = std::lower_bound(info.context_items.begin(), info.context_items.end(), *caption);
          if (it != info.context_items.end() && *it == *caption)
            r = ranges[std::size_t(it - info.context_items.begin())];
        }
      }
      info.context_of_segment.push_back(r);
    }
    if (m.item == item_kind::sequence) info.context_of_segment.assign(info.segments.size(), row_range{});
  }
  if (model.start(key.module) == module_start::injection && !sub.items.empty()) {
    // The packed sequence: per sample, its images' tokens, then its text.
    std::vector<std::int64_t> start(mb.images.size(), -1);
    std::int64_t offset = 0;
    for (std::size_t s = 0; s < mb.samples.size() && s < mb.sequence_lengths.size(); ++s) {
      std::int64_t at = offset;
      for (std::size_t i = 0; i < mb.images.size(); ++i) {
        if (mb.images[i].sample == mb.samples[s]) {
          start[i] = at;
          at += mb.images[i].tokens;
        }
      }
      require(at <= offset + mb.sequence_lengths[s], errc::invalid_argument, "microbatch " + std::to_string(j),
              "sample " + std::to_string(mb.samples[s]) + "'s images take more tokens than its sequence has");
      offset += mb.sequence_lengths[s];
    }
    for (std::size_t i = 0; i < mb.images.size(); ++i) {
      if (start[i] < 0) continue;
      info.inject_items.push_back(i);
      info.inject_at.push_back(start[i]);
    }
  }
  return info;
}

inline tensor synthetic_input(const executable_model& model, const exported_batch& batch, std::size_t j, unit_key key) {
  const exported_microbatch& mb = batch.microbatches.at(j);
  const exported_module& m = model.module(key.module);
  const std::vector<std::size_t>& items = mb.subs.at(key.module).at(key.unit).items;
  const std::vector<row_range> ranges = item_ranges(mb, m, items);
  const std::int64_t width = model.input_width(key.module);
  tensor x(ranges.empty() ? 0 : ranges.back().begin + ranges.back().rows, width);
  for (std::size_t i = 0; i < items.size(); ++i) {
    x.middleRows(ranges[i].begin, ranges[i].rows) =
        random_tensor(ranges[i].rows, width, 1.0, mix_seed({0x1b9u, j, key.module, items[i]}));
  }
  return x;
}

// The rows of `t` in `ranges`, concatenated.
inline tensor gather_rows(const tensor& t, const std::vector<row_range>& ranges) {
  std::int64_t rows = 0;
  for (const row_range& r : ranges) rows += r.rows;
  tensor out(rows, t.cols());
  std::int64_t at = 0;
  for (const row_range& r : ranges) {
    out.middleRows(at, r.rows) = t.middleRows(r.begin, r.rows);
    at += r.rows;
  }
  return out;
}

// `target` with its rows in `ranges` replaced by the consecutive rows of `part`.
inline tensor place_rows(tensor target, const std::vector<row_range>& ranges, const tensor& part) {
  std::int64_t at = 0;
  for (const row_range& r : ranges) {
    target.middleRows(r.begin, r.rows) = part.middleRows(at, r.rows);
    at += r.rows;
  }
  return target;
}

// `target` with the consecutive rows of `part` added to its rows in `ranges`.
inline tensor scatter_add_rows(tensor target, const std::vector<row_range>& ranges, const tensor& part) {
  std::int64_t at = 0;
  for (const row_range& r : ranges) {
    target.middleRows(r.begin, r.rows) += part.middleRows(at, r.rows);
    at += r.rows;
  }
  return target;
}

// Row-major reshape to `cols` columns (merge^2 patch rows into one token, and back).
inline tensor reshape_rows(const tensor& t, std::int64_t cols) {
  require(cols > 0 && t.size() % cols == 0, errc::invalid_argument, "reshape_rows",
          to_string(shape_of(t)) + " does not reshape to " + std::to_string(cols) + " columns");
  return Eigen::Map<const tensor>(t.data(), t.size() / cols, cols);
}

// Per row: the mean of its segment's context rows (zero without one).
inline tensor expand_context(const tensor& context, const unit_info& info, std::int64_t rows) {
  tensor c = tensor::Zero(rows, context.cols());
  std::int64_t at = 0;
  for (std::size_t s = 0; s < info.segments.size(); ++s) {
    const row_range r = info.context_of_segment.at(s);
    if (r.rows > 0) {
      const tensor mean = context.middleRows(r.begin, r.rows).colwise().sum() / double(r.rows);
      for (std::int64_t i = 0; i < info.segments[s]; ++i) c.row(at + i) = mean.row(0);
    }
    at += info.segments[s];
  }
  return c;
}

// The gradient of expand_context's context rows from the per-row gradient dc.
inline tensor reduce_context(const tensor& dc, const unit_info& info, std::int64_t context_rows) {
  tensor d = tensor::Zero(context_rows, dc.cols());
  std::int64_t at = 0;
  for (std::size_t s = 0; s < info.segments.size(); ++s) {
    const row_range r = info.context_of_segment.at(s);
    if (r.rows > 0) {
      const tensor share = dc.middleRows(at, info.segments[s]).colwise().sum() / double(r.rows);
      for (std::int64_t i = 0; i < r.rows; ++i) d.row(r.begin + i) += share.row(0);
    }
    at += info.segments[s];
  }
  return d;
}

// A sink unit's loss and the gradient of its output.
struct unit_loss {
  double value = 0;
  tensor gradient;
};

// Rows of module m in the whole microbatch j (the loss's divisor).
inline std::int64_t module_rows(const exported_batch& batch, std::size_t j, std::size_t m) {
  std::int64_t rows = 0;
  for (const exported_sub& s : batch.microbatches.at(j).subs.at(m)) rows += s.rows;
  return rows;
}

inline unit_loss compute_loss(const executable_model& model, const exported_batch& batch, std::size_t j, unit_key key,
                              const tensor& y) {
  const exported_microbatch& mb = batch.microbatches.at(j);
  const std::vector<std::size_t>& items = mb.subs.at(key.module).at(key.unit).items;
  const std::vector<row_range> ranges = item_ranges(mb, model.module(key.module), items);
  const double rows = double(std::max<std::int64_t>(1, module_rows(batch, j, key.module)));
  unit_loss result{0.0, tensor(y.rows(), y.cols())};
  for (std::size_t k = 0; k < items.size(); ++k) {
    const row_range r = ranges[k];
    if (model.ends_in_lm_head(key.module)) {
      for (std::int64_t i = r.begin; i < r.begin + r.rows; ++i) {
        const auto label = std::int64_t(mix_seed({0x1abe1u, j, key.module, items[k], std::uint64_t(i - r.begin)}) %
                                        std::uint64_t(y.cols()));
        const double top = y.row(i).maxCoeff();
        const Eigen::ArrayXd e = (y.row(i).array() - top).exp().transpose();
        const double sum = e.sum();
        result.value += (std::log(sum) + top - y(i, label)) / rows;
        result.gradient.row(i) = (e / sum).transpose().matrix() / rows;
        result.gradient(i, label) -= 1.0 / rows;
      }
    } else {
      const tensor target = random_tensor(r.rows, y.cols(), 1.0, mix_seed({0x7a6e7u, j, key.module, items[k]}));
      const tensor diff = y.middleRows(r.begin, r.rows) - target;
      result.value += 0.5 * diff.squaredNorm() / rows;
      result.gradient.middleRows(r.begin, r.rows) = diff / rows;
    }
  }
  return result;
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
