// dip::build_stage_graph: the stage graph (dip/schedule/stage_graph.hpp) of one batch on one
// placement, every stage priced once by a cost model. The edges it adds are the ones
// stage_graph.hpp lists: along each chain, the loss, I before W, and across chains per microbatch.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dip/batch/batch_work.hpp"
#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/model/model.hpp"
#include "dip/partition/placement.hpp"
#include "dip/schedule/stage.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

// Builds the stage graph of `batch` on `placement`, pricing every stage with `costs`.
// A chain whose modules all have the same number of sub-microbatches in a microbatch runs them
// separately, sub-microbatch s through every module of the chain (a DIP chain: one module, or
// an encoder and its projector split alike); otherwise (a classic pipeline over modules split
// differently) the chain runs the microbatch whole, the sum of each module's sub-microbatches.
// Classic schedules want whole microbatches: give them `merge_sub_microbatches(batch)`. Throws dip::error for an empty
// batch, a microbatch that does not give every module its work, or costs that are NaN or negative.
template <cost_model_like Costs>
stage_graph build_stage_graph(const multimodal_model& model, const dip::placement& placement, const batch_work& batch,
                              const Costs& costs, stage_graph_options options) {
  validate(placement, model);
  require(!batch.microbatches.empty(), errc::invalid_argument, "batch", "has no microbatches");
  stage_graph g;
  g.placement_ = placement;
  g.split_ = options.split_backward;
  const std::size_t kinds = options.split_backward ? 3 : 2;
  const std::size_t chains = placement.chains.size();

  // Which modules each chain holds, and which chains consume each chain.
  std::vector<std::vector<module_id>> chain_modules(chains);
  for (std::size_t k = 0; k < chains; ++k) {
    for (chunk_id c : placement.chains[k]) {
      for (const layer_span& s : placement.chunk(c).spans) {
        if (std::find(chain_modules[k].begin(), chain_modules[k].end(), s.module) == chain_modules[k].end()) {
          chain_modules[k].push_back(s.module);
        }
      }
    }
  }
  std::vector<std::vector<std::size_t>> consumers(chains);
  for (std::size_t k = 0; k < chains; ++k) {
    for (std::size_t input : placement.chain_inputs[k]) consumers[input].push_back(k);
  }

  for (std::size_t j = 0; j < batch.microbatches.size(); ++j) {
    const microbatch_work& mb = batch.microbatches[j];
    const std::string where = "batch microbatch " + std::to_string(j);
    require(mb.modules.size() == model.module_count(), errc::invalid_argument, where,
            "gives work for " + std::to_string(mb.modules.size()) + " modules, the model has " +
                std::to_string(model.module_count()));
    for (std::size_t m = 0; m < mb.modules.size(); ++m) {
      require(!mb.modules[m].empty(), errc::invalid_argument, where,
              "module '" + model.modules()[m].name + "' has no sub-microbatch");
      for (const work_unit& w : mb.modules[m]) validate(w, where + " module '" + model.modules()[m].name + "'");
    }
    g.offsets_.emplace_back(chains);
    g.subs_.emplace_back(chains);
    for (std::size_t k = 0; k < chains; ++k) {
      const std::size_t first_count = mb.modules[chain_modules[k][0].index()].size();
      bool split = true;
      for (module_id m : chain_modules[k]) split = split && mb.modules[m.index()].size() == first_count;
      const std::uint32_t subs = split ? std::uint32_t(first_count) : 1;
      g.subs_[j][k] = subs;
      g.offsets_[j][k] = g.stages_.size();
      const auto work_of = [&](module_id m, std::uint32_t sub) {
        if (split) return mb.modules[m.index()][sub];
        work_unit total;
        for (const work_unit& w : mb.modules[m.index()]) total += w;
        return total;
      };
      for (std::uint32_t s = 0; s < subs; ++s) {
        for (chunk_id c : placement.chains[k]) {
          const chunk_spec& chunk = placement.chunk(c);
          layer_cost cost;
          for (const layer_span& span : chunk.spans) {
            const layer_cost part =
                chunk_cost(costs, model.module(span.module), span.first, span.last, work_of(span.module, s));
            cost.forward += part.forward;
            cost.backward_input += part.backward_input;
            cost.backward_weight += part.backward_weight;
            cost.activation += part.activation;
            cost.output = part.output;
          }
          validate(cost, where + " chunk " + std::to_string(c.index()));
          const auto make = [&](stage_kind kind, duration time, bytes memory) {
            g.stages_.push_back({kind, c, microbatch_id::from_index(j), s, chunk.rank, time, memory, cost.output});
          };
          make(stage_kind::forward, cost.forward, cost.activation);
          if (options.split_backward) {
            make(stage_kind::backward_input, cost.backward_input, bytes{});
            make(stage_kind::backward_weight, cost.backward_weight, -cost.activation);
          } else {
            make(stage_kind::backward, cost.backward(), -cost.activation);
          }
        }
      }
    }
    // Edges of microbatch j.
    for (std::size_t k = 0; k < chains; ++k) {
      const std::size_t length = placement.chains[k].size();
      for (std::uint32_t s = 0; s < g.subs_[j][k]; ++s) {
        const auto id = [&](std::size_t position, std::size_t slot) {
          return g.offsets_[j][k] + (s * length + position) * kinds + slot;
        };
        for (std::size_t i = 0; i < length; ++i) {
          const std::size_t f = id(i, 0), b = id(i, 1);
          if (i + 1 < length) {
            g.add_edge(f, id(i + 1, 0), g.stages_[f].output);
            g.add_edge(id(i + 1, 1), b, g.stages_[f].output);  // gradient of this chunk's output
          } else if (consumers[k].empty()) {
            g.add_edge(f, b, bytes{});  // the loss: last forward before first backward
          }
          if (options.split_backward) g.add_edge(b, id(i, 2), bytes{});
        }
      }
      for (std::size_t consumer : consumers[k]) {
        const std::size_t consumer_length = placement.chains[consumer].size();
        const std::uint32_t consumer_subs = g.subs_[j][consumer];
        for (std::uint32_t s = 0; s < g.subs_[j][k]; ++s) {
          const std::size_t last_f = g.offsets_[j][k] + (s * length + length - 1) * kinds;
          const bytes share = g.stages_[last_f].output / double(consumer_subs);
          for (std::uint32_t t = 0; t < consumer_subs; ++t) {
            const std::size_t first_f = g.offsets_[j][consumer] + (t * consumer_length) * kinds;
            g.add_edge(last_f, first_f, share);
            g.add_edge(first_f + 1, last_f + 1, share);  // consumer's first B/I -> producer's last B/I
          }
        }
      }
    }
  }
  g.index_edges();
  return g;
}

}  // namespace dip
