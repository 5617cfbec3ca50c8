// The sub-microbatch splitter: one packed microbatch becomes, for every module, the
// sub-microbatches the stage graph runs (DESIGN.md, "sub-microbatch splitting").
//
// For each bin group of the policy (modules that must see the same items, such as a vision
// encoder and its projector), the microbatch's N items of the group's kind (images, clips,
// captions, or the one packed sequence; see module_items.hpp) go into M = ceil(N / B)
// sub-microbatches (B = 0: one), balanced by the bin-packer. An item's weight is the forward +
// backward time of all the group's modules (all their layers) for that item under the cost
// model; its memory is the activation bytes they keep for it, checked against the optional cap.
// Every module of the group gets the same item -> sub-microbatch assignment, each with its own
// work per sub-microbatch:
//   vision encoder: the images' patch tokens; image projector (or any image-counting module
//   without its own encoding): their LLM-side tokens; diffusion decoder: each clip's latent
//   tokens cross-attending to its caption; caption encoder and its projector: the captions;
//   LLM backbone: the packed sequence, attention within each sample.
// A module with no items in this microbatch (the vision encoder of a text-only microbatch) still
// gets one empty sub-microbatch, because the stage graph needs at least one entry per module.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dip/batch/batch_work.hpp"
#include "dip/batch/bin_packing.hpp"
#include "dip/batch/module_items.hpp"
#include "dip/batch/packing.hpp"
#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/cost/work.hpp"
#include "dip/model/model.hpp"

namespace dip {

struct split_options {
  bin_packing_algorithm algorithm = bin_packing_algorithm::best_of;
  // Per sub-microbatch: the activation bytes the bin group's modules keep for its items, over
  // all their layers (as if the group sat on one GPU; scale it to the share a rank holds).
  std::optional<bytes> memory_cap;
};

struct sub_microbatch {
  std::size_t microbatch = 0;      // the microbatch it feeds: its position in batch_work
  std::size_t index = 0;           // its position among its module's sub-microbatches
  std::vector<std::size_t> items;  // indices into the packed microbatch's images, clips or captions
                                   // (the packed sequence is item 0)
  work_unit work;                  // what this module does for it
  duration group_time{};           // its bin's weight: forward + backward of the group's modules
  bytes group_memory{};            // its bin's memory: their activation bytes
};

struct module_split {
  module_id module;
  item_kind kind = item_kind::sequence;
  std::vector<sub_microbatch> subs;  // at least one
};

struct split_microbatch {
  std::size_t microbatch = 0;
  std::vector<module_split> modules;  // indexed by module id

  // What the stage graph needs: each module's sub-microbatches' work.
  microbatch_work work() const {
    microbatch_work out;
    for (const module_split& m : modules) {
      std::vector<work_unit>& subs = out.modules.emplace_back();
      for (const sub_microbatch& s : m.subs) subs.push_back(s.work);
    }
    return out;
  }
};

// How many items of `kind` the microbatch holds: a packed_microbatch, or any type with its
// images, clips, captions and sequence_lengths (an exported plan's microbatch).
template <class Microbatch>
std::size_t item_count(const Microbatch& mb, item_kind kind) noexcept {
  switch (kind) {
    case item_kind::image: return mb.images.size();
    case item_kind::clip: return mb.clips.size();
    case item_kind::caption: return mb.captions.size();
    case item_kind::sequence: return mb.sequence_lengths.empty() ? 0 : 1;
  }
  return 0;
}

// The work `module` does for item `item` (of the module's kind) of `mb`.
inline work_unit item_work(const packed_microbatch& mb, const module_spec& module, item_kind kind, std::size_t item) {
  switch (kind) {
    case item_kind::image: {
      const packed_image& image = mb.images.at(item);
      return work_unit::sequence(double(module.image ? image.encoder_tokens : image.tokens));
    }
    case item_kind::clip: {
      const packed_clip& clip = mb.clips.at(item);
      if (module.video) return work_unit::conditioned_sequence(double(clip.latent_tokens), double(clip.caption_tokens));
      return work_unit::sequence(double(clip.latent_tokens));
    }
    case item_kind::caption: return work_unit::sequence(double(mb.captions.at(item)));
    case item_kind::sequence: {
      work_unit packed;  // one packed row; attention stays within each sample
      for (std::int64_t length : mb.sequence_lengths) {
        packed.tokens += double(length);
        packed.token_pairs += double(length) * double(length);
      }
      packed.sequences = packed.tokens > 0 ? 1 : 0;
      return packed;
    }
  }
  return {};
}

// Splits microbatch `mb` (the `microbatch`-th of its batch) for `model` under `policy`.
// Throws dip::error for a policy that does not fit the model, and (infeasible) when the memory
// cap cannot be met.
template <cost_model_like Costs>
split_microbatch split_microbatch_items(const packed_microbatch& mb, std::size_t microbatch,
                                        const multimodal_model& model, const sub_microbatch_policy& policy,
                                        const Costs& costs, const split_options& options = {}) {
  validate(policy, model);
  const std::size_t n_modules = model.module_count();
  split_microbatch out;
  out.microbatch = microbatch;
  out.modules.resize(n_modules);
  for (std::size_t m = 0; m < n_modules; ++m) {
    out.modules[m].module = module_id::from_index(m);
    out.modules[m].kind = module_item_kind(model, module_id::from_index(m));
  }

  std::vector<bool> done(n_modules, false);
  for (std::size_t first = 0; first < n_modules; ++first) {
    if (done[first]) continue;
    std::vector<std::size_t> group;
    for (std::size_t m = first; m < n_modules; ++m) {
      if (policy.bin_group[m] == policy.bin_group[first]) {
        group.push_back(m);
        done[m] = true;
      }
    }
    const item_kind kind = out.modules[first].kind;
    const std::size_t n = item_count(mb, kind);
    if (n == 0) {
      for (std::size_t m : group) out.modules[m].subs.push_back({microbatch, 0, {}, {}, {}, {}});
      continue;
    }
    const std::size_t per_sub = policy.items_per_sub[first];
    const std::size_t bins = per_sub == 0 ? 1 : (n + per_sub - 1) / per_sub;

    // Item costs, cached by the item's work (many images share a size).
    std::map<std::vector<double>, std::pair<duration, bytes>> cache;
    std::vector<std::pair<duration, bytes>> item_cost(n);
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<double> key;
      std::vector<work_unit> works;
      for (std::size_t m : group) {
        const work_unit w = item_work(mb, model.module(module_id::from_index(m)), kind, i);
        works.push_back(w);
        key.insert(key.end(), {w.sequences, w.tokens, w.token_pairs, w.context_tokens, w.context_pairs});
      }
      auto found = cache.find(key);
      if (found == cache.end()) {
        std::pair<duration, bytes> total{};
        for (std::size_t g = 0; g < group.size(); ++g) {
          const module_spec& spec = model.module(module_id::from_index(group[g]));
          const layer_cost c = chunk_cost(costs, spec, 0, spec.layers.size(), works[g]);
          total.first += c.forward + c.backward();
          total.second += c.activation;
        }
        found = cache.emplace(std::move(key), total).first;
      }
      item_cost[i] = found->second;
    }

    std::vector<std::size_t> items(n);
    for (std::size_t i = 0; i < n; ++i) items[i] = i;
    std::optional<double> cap;
    if (options.memory_cap) cap = options.memory_cap->base();
    const bin_assignment bins_of = [&] {
      try {
        return pack_bins(
            items, bins, [&](std::size_t i) { return item_cost[i].first; }, options.algorithm,
            [&](std::size_t i) { return item_cost[i].second; }, cap);
      } catch (const error& e) {
        std::string names;
        for (std::size_t m : group) {
          names += (names.empty() ? "'" : ", '") + model.module(module_id::from_index(m)).name + "'";
        }
        throw error(e.code(),
                    "microbatch " + std::to_string(microbatch) + ", modules " + names + " (" +
                        std::string(to_string(kind)) + "s)",
                    e.detail());
      }
    }();

    for (std::size_t m : group) {
      const module_spec& spec = model.module(module_id::from_index(m));
      for (std::size_t b = 0; b < bins; ++b) {
        sub_microbatch sub{microbatch, b, bins_of.bins[b], {}, duration(bins_of.weights[b]), bytes(bins_of.memory[b])};
        for (std::size_t i : sub.items) sub.work += item_work(mb, spec, kind, i);
        out.modules[m].subs.push_back(std::move(sub));
      }
    }
  }
  return out;
}

// Splits every microbatch of a global batch; microbatch j of the result feeds position j.
template <cost_model_like Costs>
std::vector<split_microbatch> split_batch(std::span<const packed_microbatch> microbatches,
                                          const multimodal_model& model, const sub_microbatch_policy& policy,
                                          const Costs& costs, const split_options& options = {}) {
  std::vector<split_microbatch> out;
  out.reserve(microbatches.size());
  for (std::size_t j = 0; j < microbatches.size(); ++j) {
    out.push_back(split_microbatch_items(microbatches[j], j, model, policy, costs, options));
  }
  return out;
}

inline batch_work to_batch_work(std::span<const split_microbatch> split) {
  batch_work batch;
  for (const split_microbatch& mb : split) batch.microbatches.push_back(mb.work());
  return batch;
}

// What dip-plan prints per microbatch (--show-batch, and "microbatches" in --json).
struct microbatch_summary {
  std::size_t samples = 0;
  std::int64_t text_tokens = 0;
  std::int64_t image_tokens = 0;
  std::size_t images = 0;
  std::size_t clips = 0;
  std::int64_t frames = 0;
  std::vector<std::pair<std::string, std::size_t>> sub_microbatches;  // module name -> count, by id
};

inline microbatch_summary summarize(const packed_microbatch& mb, const split_microbatch& split,
                                    const multimodal_model& model) {
  microbatch_summary s{
      mb.samples.size(), mb.text_tokens, mb.image_tokens, mb.images.size(), mb.clips.size(), mb.frames(), {}};
  for (const module_split& m : split.modules) {
    s.sub_microbatches.emplace_back(model.module(m.module).name, m.subs.size());
  }
  return s;
}

// {"samples": 5, "text_tokens": 6502, "image_tokens": 1690, "images": 10, "clips": 0,
//  "frames": 0, "sub_microbatches": {"vit": 2, "projector": 2, "llm": 1}}
inline nlohmann::json to_json(const microbatch_summary& s) {
  nlohmann::json subs = nlohmann::json::object();
  for (const auto& [name, count] : s.sub_microbatches) subs[name] = count;
  return {
      {"samples", s.samples}, {"text_tokens", s.text_tokens}, {"image_tokens", s.image_tokens}, {"images", s.images},
      {"clips", s.clips},     {"frames", s.frames},           {"sub_microbatches", subs}};
}

}  // namespace dip
