// What makes a plan executable (docs/plan-format.md, version 2): the items (images, clips,
// captions, the packed sequence) each sub-microbatch holds as the schedule ran it, and the exact
// integer tensors each message of the stage graph carries.
//
//   const dip::exported_model model = dip::describe_model(planner.model());
//   const dip::exported_batch batch = dip::export_batch(*planned.plan.graph, model, planned.split, packed);
//   const auto tensors = dip::edge_tensors(*planned.plan.graph, model, batch);  // by edge
//
// A message carries the *bundle* live at its cut: the state of every module that runs on both
// sides of it, the cross-attention context of a diffusion module still to run, and the outputs
// that a later chunk or another chain consumes; a message between chains carries, per producer
// module, the producer items the consumer's sub-microbatch needs. A gradient carries the same
// tensors as the forward message it flows back along.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "dip/batch/batch_work.hpp"
#include "dip/batch/module_items.hpp"
#include "dip/batch/packing.hpp"
#include "dip/batch/splitter.hpp"
#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/cost/work.hpp"
#include "dip/io/json_fields.hpp"
#include "dip/io/model_export.hpp"
#include "dip/model/layer.hpp"
#include "dip/partition/placement.hpp"
#include "dip/schedule/stage.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/strategy_cost.hpp"

namespace dip {

// One sub-microbatch of one module.
struct exported_sub {
  std::vector<std::size_t> items;  // increasing indices into the microbatch's items of the module's kind
  std::int64_t rows = 0;           // the module's rows for them
  work_unit work;                  // what the planner priced the module's stages of it with
  friend bool operator==(const exported_sub&, const exported_sub&) = default;
};

// One packed microbatch and how the schedule ran it, per module.
struct exported_microbatch {
  std::vector<std::uint64_t> samples;
  std::int64_t text_tokens = 0;
  std::int64_t image_tokens = 0;
  std::vector<packed_image> images;
  std::vector<packed_clip> clips;
  std::vector<std::int64_t> captions;           // caption lengths
  std::vector<std::int64_t> sequence_lengths;   // the samples of the packed sequence
  std::vector<std::vector<exported_sub>> subs;  // [module id][sub-microbatch], as the stage graph runs them
  friend bool operator==(const exported_microbatch&, const exported_microbatch&) = default;
};

struct exported_batch {
  std::vector<exported_microbatch> microbatches;
  friend bool operator==(const exported_batch&, const exported_batch&) = default;
};

enum class tensor_kind : std::uint8_t { state, context, output };

constexpr std::string_view to_string(tensor_kind kind) noexcept {
  switch (kind) {
    case tensor_kind::state: return "state";
    case tensor_kind::context: return "context";
    case tensor_kind::output: return "output";
  }
  return "?";
}

// One tensor of a message: `rows` x `features` of `module`'s state, its cross-attention context,
// or its output, for `items` (of the module's item kind; a context's: its producer's kind).
struct message_tensor {
  module_id module;
  tensor_kind kind = tensor_kind::state;
  std::int64_t rows = 0;
  std::int64_t features = 0;
  std::vector<std::size_t> items;  // empty when the plan has no batch
  friend bool operator==(const message_tensor&, const message_tensor&) = default;
};

// --- items -----------------------------------------------------------------------------------

// Rows module `m` has for item `item` (of m's kind): an image's encoder tokens where m has its
// own image encoding (a vision encoder), else its LLM tokens; a clip's latent tokens; a
// caption's length; the packed sequence's tokens.
inline std::int64_t item_rows(const exported_microbatch& mb, const exported_module& m, std::size_t item) {
  switch (m.item) {
    case item_kind::image: return m.image ? mb.images.at(item).encoder_tokens : mb.images.at(item).tokens;
    case item_kind::clip: return mb.clips.at(item).latent_tokens;
    case item_kind::caption: return mb.captions.at(item);
    case item_kind::sequence: {
      std::int64_t total = 0;
      for (std::int64_t length : mb.sequence_lengths) total += length;
      return total;
    }
  }
  return 0;
}

inline std::int64_t item_rows(const exported_microbatch& mb, const exported_module& m,
                              std::span<const std::size_t> items) {
  std::int64_t total = 0;
  for (std::size_t i : items) total += item_rows(mb, m, i);
  return total;
}

// The caption that conditions clip `clip`: captions are the captioned clips' in clip order.
inline std::optional<std::size_t> caption_of_clip(const exported_microbatch& mb, std::size_t clip) {
  if (mb.clips.at(clip).caption_tokens <= 0) return std::nullopt;
  std::size_t before = 0;
  for (std::size_t i = 0; i < clip; ++i) before += mb.clips[i].caption_tokens > 0 ? 1 : 0;
  return before;
}

// The items of producer sub-microbatch `p` (items of `producer`'s kind) that consumer
// sub-microbatch `c` needs, increasing: the common ones for the same kind; for captions into
// clips, the captions of c's clips; otherwise (images into the packed sequence) all of p's.
inline std::vector<std::size_t> needed_items(const exported_microbatch& mb, item_kind consumer, const exported_sub& c,
                                             item_kind producer, const exported_sub& p) {
  std::vector<std::size_t> out;
  if (producer == consumer) {
    std::set_intersection(p.items.begin(), p.items.end(), c.items.begin(), c.items.end(), std::back_inserter(out));
  } else if (producer == item_kind::caption && consumer == item_kind::clip) {
    for (std::size_t clip : c.items) {
      const std::optional<std::size_t> caption = caption_of_clip(mb, clip);
      if (caption && std::binary_search(p.items.begin(), p.items.end(), *caption)) out.push_back(*caption);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  } else {
    out = p.items;
  }
  return out;
}

namespace detail {

inline constexpr std::size_t no_chain = std::numeric_limits<std::size_t>::max();

// Where a module's layers lie: one chain, from the chunk at position `first` to `last`.
struct module_place {
  std::size_t chain = no_chain;  // no_chain: the placement holds none of its layers
  std::size_t first = 0, last = 0;
  std::vector<std::size_t> layers_through;  // [position]: its layers in chunks at positions <= position
};

// Throws dip::error(invalid_argument, "placement") for a module split over two chains.
inline std::vector<module_place> module_places(const placement& place, std::size_t modules) {
  std::vector<module_place> out(modules);
  for (const chunk_spec& chunk : place.chunks) {
    for (const layer_span& span : chunk.spans) {
      require(span.module.index() < modules, errc::invalid_argument, "placement",
              "names module " + std::to_string(span.module.value()) + " of a model of " + std::to_string(modules));
      module_place& m = out[span.module.index()];
      if (m.chain == no_chain) {
        m.chain = chunk.chain;
        m.first = m.last = chunk.position;
      }
      require(m.chain == chunk.chain, errc::invalid_argument, "placement",
              "module " + std::to_string(span.module.value()) + " lies in chains " + std::to_string(m.chain) + " and " +
                  std::to_string(chunk.chain) + " (an executable plan keeps a module in one chain)");
      m.first = std::min(m.first, chunk.position);
      m.last = std::max(m.last, chunk.position);
    }
  }
  for (std::size_t id = 0; id < modules; ++id) {
    module_place& m = out[id];
    if (m.chain == no_chain) continue;
    m.layers_through.assign(place.chains.at(m.chain).size(), 0);
    for (const chunk_spec& chunk : place.chunks) {
      for (const layer_span& span : chunk.spans) {
        if (span.module.index() != id) continue;
        for (std::size_t i = chunk.position; i < m.layers_through.size(); ++i) {
          m.layers_through[i] = std::max(m.layers_through[i], span.last);
        }
      }
    }
  }
  return out;
}

// The tensors of the stage graph's edges, from the sub-microbatches as run (items_known: false
// when they hold rows but no items).
class tensor_builder {
 public:
  tensor_builder(const stage_graph& graph, const exported_model& model, const exported_batch& batch, bool items_known)
      : graph_(graph),
        model_(model),
        batch_(batch),
        items_known_(items_known),
        places_(module_places(graph.placement(), model.modules.size())),
        consumers_(model.modules.size()) {
    for (std::size_t m = 0; m < model.modules.size(); ++m) {
      for (std::size_t input : model.modules[m].inputs) consumers_.at(input).push_back(m);
    }
  }

  std::vector<message_tensor> of_edge(const stage_edge& edge) const {
    const stage& from = graph_.at(edge.from);
    const stage& to = graph_.at(edge.to);
    if (from.chunk == to.chunk && from.microbatch == to.microbatch && from.sub == to.sub) return {};  // loss, I -> W
    const bool forward = to.kind == stage_kind::forward;
    const stage& producer = graph_.at(forward ? edge.from : forward_of(graph_, edge.to));
    const stage& consumer = graph_.at(forward ? edge.to : forward_of(graph_, edge.from));
    const chunk_spec& p = graph_.placement().chunk(producer.chunk);
    const chunk_spec& c = graph_.placement().chunk(consumer.chunk);
    const std::size_t j = producer.microbatch.index();
    if (p.chain == c.chain) return bundle(p.chain, p.position, j, producer.sub);
    return crossing(p.chain, producer.sub, c.chain, consumer.sub, j);
  }

 private:
  const exported_sub& sub(std::size_t j, std::size_t m, std::size_t u) const {
    return batch_.microbatches.at(j).subs.at(m).at(u);
  }

  message_tensor of_sub(std::size_t m, tensor_kind kind, std::int64_t features, const exported_sub& s) const {
    return {module_id::from_index(m), kind, s.rows, features, s.items};
  }

  // Live after position i of chain k, for microbatch j's sub-microbatch u.
  std::vector<message_tensor> bundle(std::size_t k, std::size_t i, std::size_t j, std::uint32_t u) const {
    std::vector<message_tensor> out;
    for (std::size_t m = 0; m < model_.modules.size(); ++m) {
      const module_place& at = places_[m];
      if (at.chain != k) continue;
      const exported_module& spec = model_.modules[m];
      const std::size_t through = at.layers_through.at(i);
      if (at.first <= i && at.last > i) {
        out.push_back(of_sub(m, tensor_kind::state, output_features(spec.layers.at(through - 1)), sub(j, m, u)));
        const bool dit_after = std::any_of(spec.layers.begin() + std::ptrdiff_t(through), spec.layers.end(),
                                           [](const layer_spec& l) { return std::holds_alternative<dit_block>(l); });
        if (dit_after && !spec.inputs.empty()) out.push_back(context(m, j, u));
      } else if (at.last <= i) {
        const bool wanted = std::any_of(consumers_[m].begin(), consumers_[m].end(), [&](std::size_t c) {
          const module_place& there = places_[c];
          return there.chain != no_chain && (there.chain != k || there.first > i);
        });
        if (wanted) out.push_back(of_sub(m, tensor_kind::output, module_output_features(spec), sub(j, m, u)));
      }
    }
    return out;
  }

  // The conditioning module m's sub-microbatch u cross-attends to: its (first) producer's output
  // for the items it needs, over all of the producer's sub-microbatches.
  message_tensor context(std::size_t m, std::size_t j, std::uint32_t u) const {
    const std::size_t p = model_.modules[m].inputs.front();
    const exported_module& producer = model_.modules[p];
    message_tensor t{module_id::from_index(m), tensor_kind::context, 0, module_output_features(producer), {}};
    const exported_microbatch& mb = batch_.microbatches.at(j);
    for (const exported_sub& ps : mb.subs.at(p)) {
      if (!items_known_) {
        t.rows += ps.rows;
        continue;
      }
      const std::vector<std::size_t> items = needed_items(mb, model_.modules[m].item, sub(j, m, u), producer.item, ps);
      t.items.insert(t.items.end(), items.begin(), items.end());
    }
    if (items_known_) {
      std::sort(t.items.begin(), t.items.end());
      t.items.erase(std::unique(t.items.begin(), t.items.end()), t.items.end());
      t.rows = item_rows(mb, producer, t.items);
    }
    return t;
  }

  // From the last chunk of chain kp (sub-microbatch sp) to the first of chain kc (sub sc).
  std::vector<message_tensor> crossing(std::size_t kp, std::uint32_t sp, std::size_t kc, std::uint32_t sc,
                                       std::size_t j) const {
    std::vector<message_tensor> out;
    for (std::size_t p = 0; p < model_.modules.size(); ++p) {
      if (places_[p].chain != kp) continue;
      const exported_module& producer = model_.modules[p];
      message_tensor t{module_id::from_index(p), tensor_kind::output, 0, module_output_features(producer), {}};
      bool consumed = false;
      for (std::size_t c : consumers_[p]) {
        if (places_[c].chain != kc) continue;
        consumed = true;
        if (!items_known_) break;
        const exported_microbatch& mb = batch_.microbatches.at(j);
        const std::vector<std::size_t> items =
            needed_items(mb, model_.modules[c].item, sub(j, c, sc), producer.item, sub(j, p, sp));
        t.items.insert(t.items.end(), items.begin(), items.end());
      }
      if (!consumed) continue;
      if (items_known_) {
        std::sort(t.items.begin(), t.items.end());
        t.items.erase(std::unique(t.items.begin(), t.items.end()), t.items.end());
        t.rows = item_rows(batch_.microbatches.at(j), producer, t.items);
      } else {
        t.rows = sub(j, p, sp).rows;  // which rows the consumer needs is unknown: all of them
      }
      out.push_back(std::move(t));
    }
    return out;
  }

  const stage_graph& graph_;
  const exported_model& model_;
  const exported_batch& batch_;
  bool items_known_;
  std::vector<module_place> places_;
  std::vector<std::vector<std::size_t>> consumers_;
};

inline std::vector<std::vector<message_tensor>> tensors_of_edges(const stage_graph& graph, const exported_model& model,
                                                                 const exported_batch& batch, bool items_known) {
  const tensor_builder builder(graph, model, batch, items_known);
  std::vector<std::vector<message_tensor>> out;
  out.reserve(graph.edges().size());
  for (const stage_edge& edge : graph.edges()) out.push_back(builder.of_edge(edge));
  return out;
}

inline std::string module_where(const exported_model& model, std::size_t j, std::size_t m) {
  return "microbatch " + std::to_string(j) + ", module '" + model.modules.at(m).name + "'";
}

}  // namespace detail

// The sub-microbatches of every module as `graph` runs them, with each item's module rows and
// work: split[j].modules[m].subs where the graph runs the module's chain in that many
// sub-microbatches; merged into one (the union of the items, the sum of the rows and of the
// work units) where it runs the chain whole. Throws dip::error(errc::invalid_argument,
// "export_plan") naming the microbatch and module where the split, the packed microbatches and the
// graph disagree.
inline exported_batch export_batch(const stage_graph& graph, const exported_model& model,
                                   std::span<const split_microbatch> split, std::span<const packed_microbatch> packed) {
  const auto fail = [](const std::string& what) { throw error(errc::invalid_argument, "export_plan", what); };
  if (split.size() != graph.microbatch_count() || packed.size() != graph.microbatch_count()) {
    fail("the split has " + std::to_string(split.size()) + " microbatches and the packed batch " +
         std::to_string(packed.size()) + ", the plan's graph " + std::to_string(graph.microbatch_count()));
  }
  const std::vector<detail::module_place> places = detail::module_places(graph.placement(), model.modules.size());
  exported_batch out;
  for (std::size_t j = 0; j < split.size(); ++j) {
    const packed_microbatch& p = packed[j];
    exported_microbatch mb{p.samples, p.text_tokens, p.image_tokens,     p.images,
                           p.clips,   p.captions,    p.sequence_lengths, {}};
    if (split[j].modules.size() != model.modules.size()) {
      fail("microbatch " + std::to_string(j) + " of the split has " + std::to_string(split[j].modules.size()) +
           " modules, the model " + std::to_string(model.modules.size()));
    }
    for (std::size_t m = 0; m < model.modules.size(); ++m) {
      const std::string where = detail::module_where(model, j, m);
      const exported_module& spec = model.modules[m];
      const std::vector<sub_microbatch>& subs = split[j].modules[m].subs;
      if (places[m].chain == detail::no_chain) fail(where + ": the plan's placement holds none of its layers");
      const std::size_t runs = graph.sub_count(j, places[m].chain);
      std::vector<exported_sub>& as_run = mb.subs.emplace_back();
      if (subs.size() == runs) {
        for (const sub_microbatch& s : subs) as_run.push_back({s.items, std::llround(s.work.tokens), s.work});
      } else if (runs == 1) {
        exported_sub whole;
        for (const sub_microbatch& s : subs) {
          whole.items.insert(whole.items.end(), s.items.begin(), s.items.end());
          whole.work += s.work;  // in order, as merge_sub_microbatches sums them
        }
        whole.rows = std::llround(whole.work.tokens);
        as_run.push_back(std::move(whole));
      } else {
        fail(where + ": the split has " + std::to_string(subs.size()) + " sub-microbatches, the plan's graph runs " +
             std::to_string(runs));
      }
      for (std::size_t u = 0; u < as_run.size(); ++u) {
        std::vector<std::size_t>& items = as_run[u].items;
        std::sort(items.begin(), items.end());
        const std::size_t count = item_count(mb, spec.item);
        const bool in_range = std::all_of(items.begin(), items.end(), [&](std::size_t i) { return i < count; });
        if (!in_range || std::adjacent_find(items.begin(), items.end()) != items.end()) {
          fail(where + " sub-microbatch " + std::to_string(u) + ": its items are not distinct " +
               std::string(to_string(spec.item)) + "s of the packed microbatch (it has " + std::to_string(count) + ")");
        }
        const std::int64_t rows = item_rows(mb, spec, items);
        if (rows != as_run[u].rows) {
          fail(where + " sub-microbatch " + std::to_string(u) + ": its work has " + std::to_string(as_run[u].rows) +
               " rows, its items " + std::to_string(rows) +
               " (the packed batch is not the one the split was made from)");
        }
      }
    }
    out.microbatches.push_back(std::move(mb));
  }
  return out;
}

// The tensors of every edge of `graph` (by edge), for the sub-microbatches of `batch`.
inline std::vector<std::vector<message_tensor>> edge_tensors(const stage_graph& graph, const exported_model& model,
                                                             const exported_batch& batch) {
  return detail::tensors_of_edges(graph, model, batch, true);
}

// The same without items, from the work the graph was built from: rows are the work's tokens,
// and a message between chains carries the producer sub-microbatch's whole output.
inline std::vector<std::vector<message_tensor>> edge_tensors(const stage_graph& graph, const exported_model& model,
                                                             const batch_work& work) {
  const std::vector<detail::module_place> places = detail::module_places(graph.placement(), model.modules.size());
  exported_batch rows_only;
  for (std::size_t j = 0; j < work.microbatches.size() && j < graph.microbatch_count(); ++j) {
    exported_microbatch& mb = rows_only.microbatches.emplace_back();
    for (std::size_t m = 0; m < model.modules.size() && m < work.microbatches[j].modules.size(); ++m) {
      const std::vector<work_unit>& units = work.microbatches[j].modules[m];
      std::vector<exported_sub>& subs = mb.subs.emplace_back();
      const std::size_t runs = places[m].chain == detail::no_chain ? units.size() : graph.sub_count(j, places[m].chain);
      if (units.size() == runs) {
        for (const work_unit& w : units) subs.push_back({{}, std::llround(w.tokens), w});
      } else {
        require(runs == 1, errc::invalid_argument, "export_plan",
                detail::module_where(model, j, m) + ": the batch has " + std::to_string(units.size()) +
                    " sub-microbatches, the plan's graph runs " + std::to_string(runs));
        work_unit total;
        for (const work_unit& w : units) total += w;
        subs.push_back({{}, std::llround(total.tokens), total});
      }
    }
  }
  return detail::tensors_of_edges(graph, model, rows_only, false);
}

// --- JSON ------------------------------------------------------------------------------------

inline nlohmann::ordered_json tensors_to_json(std::span<const message_tensor> tensors) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const message_tensor& t : tensors) {
    out.push_back({{"module", t.module.value()},
                   {"kind", std::string(to_string(t.kind))},
                   {"rows", t.rows},
                   {"features", t.features},
                   {"items", t.items}});
  }
  return out;
}

inline nlohmann::ordered_json work_to_json(const work_unit& w) {
  return {{"sequences", w.sequences},
          {"tokens", w.tokens},
          {"token_pairs", w.token_pairs},
          {"context_tokens", w.context_tokens},
          {"context_pairs", w.context_pairs}};
}

inline nlohmann::ordered_json batch_to_json(const exported_batch& batch) {
  using json = nlohmann::ordered_json;
  json microbatches = json::array();
  for (const exported_microbatch& mb : batch.microbatches) {
    json images = json::array(), clips = json::array(), subs = json::array();
    for (const packed_image& i : mb.images) {
      images.push_back({{"sample", i.sample}, {"tokens", i.tokens}, {"encoder_tokens", i.encoder_tokens}});
    }
    for (const packed_clip& c : mb.clips) {
      clips.push_back({{"sample", c.sample},
                       {"piece", c.piece},
                       {"seconds", c.seconds},
                       {"frames", c.frames},
                       {"latent_tokens", c.latent_tokens},
                       {"caption_tokens", c.caption_tokens}});
    }
    for (const std::vector<exported_sub>& module : mb.subs) {
      json list = json::array();
      for (const exported_sub& s : module) {
        list.push_back({{"items", s.items}, {"rows", s.rows}, {"work", work_to_json(s.work)}});
      }
      subs.push_back(std::move(list));
    }
    microbatches.push_back({{"samples", mb.samples},
                            {"text_tokens", mb.text_tokens},
                            {"image_tokens", mb.image_tokens},
                            {"images", std::move(images)},
                            {"clips", std::move(clips)},
                            {"captions", mb.captions},
                            {"sequence_lengths", mb.sequence_lengths},
                            {"subs", std::move(subs)}});
  }
  return {{"microbatches", std::move(microbatches)}};
}

namespace io {

inline constexpr std::int64_t max_count = std::int64_t{1} << 50;

// An array of integers in [minimum, maximum] at `field` of `object`.
inline std::vector<std::int64_t> integer_array(object_reader& object, std::string_view field, std::int64_t minimum = 0,
                                               std::int64_t maximum = max_count) {
  const nlohmann::json& values = object.required(field);
  if (!values.is_array()) object.fail(field, "expected an array, got " + json_type_name(values));
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const nlohmann::json& v = values[i];
    const bool ok = v.is_number_integer() &&
                    (v.is_number_unsigned() ? v.get<std::uint64_t>() <= std::uint64_t(maximum)
                                            : v.get<std::int64_t>() <= maximum) &&
                    (v.is_number_unsigned() || v.get<std::int64_t>() >= minimum);
    if (!ok) {
      object.fail(
          std::string(field) + "[" + std::to_string(i) + "]",
          "expected an integer in [" + std::to_string(minimum) + ", " + std::to_string(maximum) + "], got " + v.dump());
    }
    out.push_back(v.get<std::int64_t>());
  }
  return out;
}

// Increasing item indices below `count` at `field`.
inline std::vector<std::size_t> item_array(object_reader& object, std::string_view field, std::size_t count,
                                           std::string_view kind) {
  std::vector<std::size_t> out;
  const std::vector<std::int64_t> values = integer_array(object, field);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::size_t item = std::size_t(values[i]);
    if (item >= count || (!out.empty() && item <= out.back())) {
      object.fail(std::string(field) + "[" + std::to_string(i) + "]", "expected increasing " + std::string(kind) +
                                                                          " indices below " + std::to_string(count) +
                                                                          ", got " + std::to_string(item));
    }
    out.push_back(item);
  }
  return out;
}

// The work unit at `field` of `object`: its five fields, finite and >= 0.
inline work_unit read_work(object_reader& object, std::string_view field, const std::string& source) {
  const std::string prefix = object.path().empty() ? "" : object.path() + ".";
  object_reader in(object.required(field), source, prefix + std::string(field));
  work_unit w;
  w.sequences = in.number("sequences");
  w.tokens = in.number("tokens");
  w.token_pairs = in.number("token_pairs");
  w.context_tokens = in.number("context_tokens");
  w.context_pairs = in.number("context_pairs");
  in.finish();
  return w;
}

// Reads the `batch` object at `path` of `source` for `model`: items within range, a
// sub-microbatch's rows its items' and its work's tokens (rounded) its rows (the caller checks
// the counts of sub-microbatches against the stage graph).
inline exported_batch read_exported_batch(const nlohmann::json& value, const std::string& source,
                                          const std::string& path, const exported_model& model) {
  object_reader top(value, source, path);
  const nlohmann::json& microbatches = top.required("microbatches");
  if (!microbatches.is_array()) top.fail("microbatches", "expected an array, got " + json_type_name(microbatches));
  exported_batch batch;
  for (std::size_t j = 0; j < microbatches.size(); ++j) {
    const std::string at = path + ".microbatches[" + std::to_string(j) + "]";
    object_reader in(microbatches[j], source, at);
    exported_microbatch mb;
    for (std::int64_t s : integer_array(in, "samples")) mb.samples.push_back(std::uint64_t(s));
    mb.text_tokens = in.integer("text_tokens", 0, max_count);
    mb.image_tokens = in.integer("image_tokens", 0, max_count);
    const auto objects = [&](std::string_view field) -> const nlohmann::json& {
      const nlohmann::json& list = in.required(field);
      if (!list.is_array()) in.fail(field, "expected an array, got " + json_type_name(list));
      return list;
    };
    const nlohmann::json& images = objects("images");
    for (std::size_t i = 0; i < images.size(); ++i) {
      object_reader image(images[i], source, at + ".images[" + std::to_string(i) + "]");
      packed_image& out = mb.images.emplace_back();
      out.sample = std::uint64_t(image.integer("sample", 0, max_count));
      out.tokens = image.integer("tokens", 0, max_count);
      out.encoder_tokens = image.integer("encoder_tokens", 0, max_count);
      image.finish();
    }
    const nlohmann::json& clips = objects("clips");
    for (std::size_t i = 0; i < clips.size(); ++i) {
      object_reader clip(clips[i], source, at + ".clips[" + std::to_string(i) + "]");
      packed_clip& out = mb.clips.emplace_back();
      out.sample = std::uint64_t(clip.integer("sample", 0, max_count));
      out.piece = std::size_t(clip.integer("piece", 0, max_count));
      out.seconds = clip.number("seconds");
      out.frames = clip.integer("frames", 0, max_count);
      out.latent_tokens = clip.integer("latent_tokens", 0, max_count);
      out.caption_tokens = clip.integer("caption_tokens", 0, max_count);
      clip.finish();
    }
    mb.captions = integer_array(in, "captions");
    mb.sequence_lengths = integer_array(in, "sequence_lengths");
    const nlohmann::json& subs = objects("subs");
    if (subs.size() != model.modules.size()) {
      in.fail("subs", "has " + std::to_string(subs.size()) + " entries, the model " +
                          std::to_string(model.modules.size()) + " modules");
    }
    for (std::size_t m = 0; m < subs.size(); ++m) {
      const std::string module_at = at + ".subs[" + std::to_string(m) + "]";
      const exported_module& spec = model.modules[m];
      if (!subs[m].is_array() || subs[m].empty()) {
        in.fail("subs[" + std::to_string(m) + "]", "expected a non-empty array of sub-microbatches");
      }
      std::vector<exported_sub>& list = mb.subs.emplace_back();
      for (std::size_t u = 0; u < subs[m].size(); ++u) {
        object_reader sub(subs[m][u], source, module_at + "[" + std::to_string(u) + "]");
        exported_sub s;
        s.items = item_array(sub, "items", item_count(mb, spec.item), to_string(spec.item));
        s.rows = sub.integer("rows", 0, max_count);
        s.work = read_work(sub, "work", source);
        const std::int64_t rows = item_rows(mb, spec, s.items);
        if (s.rows != rows) {
          sub.fail("rows", "is " + std::to_string(s.rows) + ", the rows of its items for module '" + spec.name +
                               "' add up to " + std::to_string(rows));
        }
        if (std::llround(s.work.tokens) != s.rows) {
          sub.fail("work.tokens",
                   "is " + nlohmann::json(s.work.tokens).dump() + ", its rows " + std::to_string(s.rows));
        }
        sub.finish();
        list.push_back(std::move(s));
      }
    }
    in.finish();
    batch.microbatches.push_back(std::move(mb));
  }
  top.finish();
  return batch;
}

// Reads the `tensors` array at `field` of `object`, a message of microbatch `j`: modules exist,
// items are within range and a tensor's rows are its items' (when the plan has a batch; without
// one, a tensor names no items).
inline std::vector<message_tensor> read_tensors(object_reader& object, std::string_view field,
                                                const std::string& source, const exported_model& model,
                                                const exported_batch* batch, std::size_t j) {
  const nlohmann::json& list = object.required(field);
  if (!list.is_array()) object.fail(field, "expected an array, got " + json_type_name(list));
  const std::string prefix = object.path().empty() ? "" : object.path() + ".";
  std::vector<message_tensor> out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    object_reader in(list[i], source, prefix + std::string(field) + "[" + std::to_string(i) + "]");
    message_tensor t;
    const std::int64_t m = in.integer("module", 0, std::int64_t(model.modules.size()) - 1);
    t.module = module_id::from_index(std::size_t(m));
    const std::string kind = in.string("kind");
    if (kind == "state") {
      t.kind = tensor_kind::state;
    } else if (kind == "context") {
      t.kind = tensor_kind::context;
    } else if (kind == "output") {
      t.kind = tensor_kind::output;
    } else {
      in.fail("kind", "expected state, context or output, got '" + kind + "'");
    }
    t.rows = in.integer("rows", 0, max_count);
    t.features = in.integer("features", 0, max_count);
    const exported_module* owner = &model.modules[std::size_t(m)];  // whose items and rows
    if (t.kind == tensor_kind::context) {
      if (owner->inputs.empty()) in.fail("kind", "module '" + owner->name + "' has no producer to take context from");
      owner = &model.modules[owner->inputs.front()];
    }
    if (batch == nullptr) {
      if (!integer_array(in, "items").empty()) in.fail("items", "must be empty: the plan has no batch to index");
    } else {
      const exported_microbatch& mb = batch->microbatches.at(j);
      t.items = item_array(in, "items", item_count(mb, owner->item), to_string(owner->item));
      const std::int64_t rows = item_rows(mb, *owner, t.items);
      if (rows != t.rows) {
        in.fail("rows", "is " + std::to_string(t.rows) + ", the rows of its items for module '" + owner->name +
                            "' add up to " + std::to_string(rows));
      }
    }
    in.finish();
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace io

}  // namespace dip
