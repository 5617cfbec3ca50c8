// Where each module's layers sit in a placement's chains, and what crosses each chunk boundary.
//
// A stage's forward output is a bundle of (module, unit) entries: the hidden state of a module
// still in progress, and the finished output of a module whose consumers have not all started
// (in a later chunk of the chain, or in another chain). Both ends of a message derive the
// bundle's layout from this, so a receiver can check the shapes it is given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip::exec {

class chain_layout {
 public:
  static constexpr std::size_t none = std::size_t(-1);

  // Throws dip::error unless every module's layers lie, in order, in one chain.
  chain_layout(const executable_model& model, const placement& p) : model_(&model), placement_(p) {
    const std::size_t n = model.model().module_count();
    chain_.assign(n, none);
    first_.assign(n, none);
    last_.assign(n, none);
    width_after_.assign(p.chunks.size(), std::vector<std::int64_t>(n, 0));
    std::vector<std::size_t> next_layer(n, 0);
    for (std::size_t k = 0; k < p.chains.size(); ++k) {
      for (std::size_t i = 0; i < p.chains[k].size(); ++i) {
        for (const layer_span& s : p.chunk(p.chains[k][i]).spans) {
          const std::size_t m = s.module.index();
          const std::string where = "placement chunk " + std::to_string(p.chains[k][i].index());
          require(chain_[m] == none || chain_[m] == k, errc::invalid_argument, where,
                  "module '" + name(m) + "' is spread over two chains; the executor needs each module in one");
          require(s.first == next_layer[m], errc::invalid_argument, where,
                  "module '" + name(m) + "' layers [" + std::to_string(s.first) + ", " + std::to_string(s.last) +
                      ") do not follow layer " + std::to_string(next_layer[m]) + " in chain order");
          chain_[m] = k;
          if (s.first == 0) first_[m] = i;
          last_[m] = i;
          next_layer[m] = s.last;
        }
      }
    }
    for (std::size_t m = 0; m < n; ++m) {
      require(next_layer[m] == model.layer_count(m), errc::invalid_argument, "placement",
              "does not hold every layer of module '" + name(m) + "'");
    }
    for (std::size_t k = 0; k < p.chains.size(); ++k) {
      std::vector<std::int64_t> width(n, 0);
      for (chunk_id c : p.chains[k]) {
        for (const layer_span& s : p.chunk(c).spans)
          width[s.module.index()] = model.at(s.module.index(), s.last - 1).output_width();
        width_after_[c.index()] = width;
      }
    }
  }

  const placement& chunks() const noexcept { return placement_; }
  std::size_t chain_of(std::size_t module) const { return chain_.at(module); }
  std::size_t first_position(std::size_t module) const { return first_.at(module); }
  std::size_t last_position(std::size_t module) const { return last_.at(module); }

  // Units of `module` a stage of chain `chain`, microbatch j, sub-microbatch `sub` works on.
  std::vector<std::uint32_t> units(const stage_graph& g, const batch_work& batch, std::size_t chain, std::size_t j,
                                   std::uint32_t sub, std::size_t module) const {
    if (g.sub_count(j, chain) > 1) return {sub};
    std::vector<std::uint32_t> all(batch.microbatches.at(j).modules.at(module).size());
    for (std::size_t u = 0; u < all.size(); ++u) all[u] = std::uint32_t(u);
    return all;
  }

  // Is module m's hidden state in flight after position i of its chain?
  bool state_live_after(std::size_t m, std::size_t i) const { return first_[m] <= i && i < last_[m]; }

  // Is producer p's output still needed after position i of chain k?
  bool output_live_after(std::size_t p, std::size_t k, std::size_t i) const {
    const multimodal_model& model = model_->model();
    const bool internal = chain_[p] == k;
    if (internal && last_[p] > i) return false;
    for (module_id c : model.outputs_of(module_id::from_index(p))) {
      const bool consumer_here = chain_[c.index()] == k;
      if (consumer_here && first_[c.index()] > i) return true;
      if (internal && !consumer_here) return true;
    }
    return false;
  }

  // Shapes of the packed forward message after chunk `c` for (microbatch j, sub): the header,
  // then every state (x, c) and output, in key order (see pack() in executor.hpp).
  std::vector<tensor_shape> forward_message(const stage_graph& g, const batch_work& batch, chunk_id c, std::size_t j,
                                            std::uint32_t sub) const {
    const chunk_spec& chunk = placement_.chunk(c);
    const std::size_t k = chunk.chain, i = chunk.position;
    const microbatch_work& mb = batch.microbatches.at(j);
    std::vector<tensor_shape> states, outputs;
    std::int64_t entries = 0;
    for (std::size_t m = 0; m < chain_.size(); ++m) {
      const auto rows = [&](std::uint32_t u) { return unit_rows(mb.modules.at(m).at(u)); };
      if (chain_[m] == k && state_live_after(m, i)) {
        for (std::uint32_t u : units(g, batch, k, j, sub, m)) {
          const std::int64_t ctx = model_->context_width(m);
          states.push_back({rows(u), width_after_[c.index()][m]});
          states.push_back(ctx > 0 ? tensor_shape{1, ctx} : tensor_shape{0, 0});
          ++entries;
        }
      } else if (output_live_after(m, k, i)) {
        const std::vector<std::uint32_t> us = chain_[m] == k ? units(g, batch, k, j, sub, m) : all_units(mb, m);
        for (std::uint32_t u : us) {
          outputs.push_back({rows(u), model_->output_width(module_id::from_index(m))});
          ++entries;
        }
      }
    }
    std::vector<tensor_shape> shapes{{entries, 5}};
    shapes.insert(shapes.end(), states.begin(), states.end());
    shapes.insert(shapes.end(), outputs.begin(), outputs.end());
    return shapes;
  }

  static std::vector<std::uint32_t> all_units(const microbatch_work& mb, std::size_t m) {
    std::vector<std::uint32_t> all(mb.modules.at(m).size());
    for (std::size_t u = 0; u < all.size(); ++u) all[u] = std::uint32_t(u);
    return all;
  }

 private:
  std::string name(std::size_t m) const { return model_->model().modules()[m].name; }

  const executable_model* model_;
  placement placement_;
  std::vector<std::size_t> chain_, first_, last_;
  std::vector<std::vector<std::int64_t>> width_after_;  // [chunk][module]: width of m's hidden after the chunk
};

}  // namespace dip::exec
