// Where each module's layers sit in a placement's chains: the executor needs every module's
// layers, in order, in one chain (what crosses each chunk boundary is the plan's edge tensors,
// dip::edge_tensors).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/data.hpp"
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
  }

  const placement& chunks() const noexcept { return placement_; }
  std::size_t chain_of(std::size_t module) const { return chain_.at(module); }
  std::size_t first_position(std::size_t module) const { return first_.at(module); }
  std::size_t last_position(std::size_t module) const { return last_.at(module); }

 private:
  std::string name(std::size_t m) const { return model_->model().modules()[m].name; }

  const executable_model* model_;
  placement placement_;
  std::vector<std::size_t> chain_, first_, last_;
};

}  // namespace dip::exec
