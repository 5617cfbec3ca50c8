// The static memory a placement puts on each GPU, checked against the GPU's capacity.
//
// Rule (documented in docs/partitioning.md): a rank holds, for the parameters of its chunks,
// `bytes_per_parameter` bytes each, divided over its `tp` tensor-parallel GPUs. The default 16
// is mixed-precision Adam without a distributed optimiser as Megatron accounts it: BF16 weights
// (2) and gradients (2), FP32 master weights (4) and two FP32 Adam moments (4 + 4). Activations
// come on top and are the schedule's business (the validator and the simulator track them).
#pragma once

#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/model/model.hpp"
#include "dip/partition/placement.hpp"

namespace dip {

struct weight_memory_rule {
  int tp = 1;
  double bytes_per_parameter = 16.0;
  std::optional<bytes> capacity;  // memory of one GPU; nullopt: not checked
};

// Each rank's static bytes per GPU. Throws dip::error(errc::infeasible) when a rank exceeds the
// capacity, naming every such rank with its needed and the available bytes.
inline std::vector<bytes> check_weight_memory(const multimodal_model& model, const placement& p,
                                              const weight_memory_rule& rule, const std::string& where) {
  require(rule.bytes_per_parameter > 0, errc::invalid_argument, where, "bytes per parameter must be > 0");
  std::vector<bytes> per_rank = weight_bytes_per_rank(model, p, rule.tp, rule.bytes_per_parameter);
  if (!rule.capacity) return per_rank;
  std::string over;
  for (std::size_t r = 0; r < per_rank.size(); ++r) {
    if (per_rank[r] > *rule.capacity) {
      over += (over.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " needs " +
              to_string(per_rank[r]);
    }
  }
  std::ostringstream per_parameter;
  per_parameter << rule.bytes_per_parameter;  // "16", not "16.000000"
  require(over.empty(), errc::infeasible, where,
          "weights, gradients and optimiser state (" + per_parameter.str() + " B/parameter over tp " +
              std::to_string(rule.tp) + ") do not fit: " + over + " of " + to_string(*rule.capacity) +
              " available per GPU; raise tp or pp");
  return per_rank;
}

}  // namespace dip
