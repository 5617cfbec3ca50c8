// dip::placement: which layers form each model chunk and which pipeline rank holds it (the type,
// its validation and the weight memory it puts on each rank; the algorithms that compute one are
// the other headers of dip/partition/).
//
// Chunks are grouped into *chains*: a chain is a sequence of chunks that a (sub-)microbatch
// passes through in order, forward, and in reverse, backward. A classic pipeline (GPipe, 1F1B,
// Megatron's interleaving) is one chain over the model's layers in topological order; DIP's
// modality-aware placement (dip/partition/modality_partition.hpp) gives every module (or group
// of modules split alike) its own chain. Chains form a DAG like the modules they hold:
// `chain_inputs[k]` lists the chains whose output chain k consumes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/model/model.hpp"

namespace dip {

// Layers [first, last) of one module.
struct layer_span {
  module_id module;
  std::size_t first = 0;
  std::size_t last = 0;
  friend bool operator==(const layer_span&, const layer_span&) = default;
};

struct chunk_spec {
  std::vector<layer_span> spans;  // consecutive layers, possibly crossing module boundaries
  rank_id rank;
  std::size_t chain = 0;     // which chain it belongs to
  std::size_t position = 0;  // its index within the chain
};

struct placement {
  int ranks = 0;
  std::vector<chunk_spec> chunks;                      // chunk_id indexes this
  std::vector<std::vector<chunk_id>> chains;           // chunks of each chain, in order
  std::vector<std::vector<std::size_t>> chain_inputs;  // chains feeding each chain

  const chunk_spec& chunk(chunk_id id) const { return chunks.at(id.index()); }
  std::size_t chunk_count() const noexcept { return chunks.size(); }

  std::vector<chunk_id> chunks_on(rank_id rank) const {
    std::vector<chunk_id> result;
    for (std::size_t c = 0; c < chunks.size(); ++c) {
      if (chunks[c].rank == rank) result.push_back(chunk_id::from_index(c));
    }
    return result;
  }
};

// Throws dip::error naming the first problem: no ranks, a chunk on a rank out of range, an empty
// chunk, a span beyond its module, or chains that do not list every chunk exactly once.
inline void validate(const placement& p, const multimodal_model& model) {
  require(p.ranks >= 1, errc::invalid_argument, "placement", "needs at least one rank");
  require(!p.chunks.empty(), errc::invalid_argument, "placement", "has no chunks");
  require(p.chain_inputs.size() == p.chains.size(), errc::invalid_argument, "placement",
          "chain_inputs must have one entry per chain");
  std::vector<int> seen(p.chunks.size(), 0);
  for (std::size_t k = 0; k < p.chains.size(); ++k) {
    require(!p.chains[k].empty(), errc::invalid_argument, "placement", "chain " + std::to_string(k) + " is empty");
    for (std::size_t i = 0; i < p.chains[k].size(); ++i) {
      const chunk_id c = p.chains[k][i];
      require(c.index() < p.chunks.size(), errc::invalid_argument, "placement",
              "chain " + std::to_string(k) + " names chunk " + std::to_string(c.index()) + " that does not exist");
      ++seen[c.index()];
      require(p.chunks[c.index()].chain == k && p.chunks[c.index()].position == i, errc::invalid_argument,
              "placement chunk " + std::to_string(c.index()),
              "its chain/position fields disagree with the chain lists");
    }
    for (std::size_t input : p.chain_inputs[k]) {
      require(input < p.chains.size() && input != k, errc::invalid_argument, "placement",
              "chain " + std::to_string(k) + " has a bad input chain " + std::to_string(input));
    }
  }
  for (std::size_t c = 0; c < p.chunks.size(); ++c) {
    const std::string where = "placement chunk " + std::to_string(c);
    require(seen[c] == 1, errc::invalid_argument, where, "must be in exactly one chain");
    const chunk_spec& chunk = p.chunks[c];
    require(chunk.rank.valid() && int(chunk.rank.index()) < p.ranks, errc::invalid_argument, where,
            "is on rank " + std::to_string(chunk.rank.value()) + " but there are " + std::to_string(p.ranks));
    require(!chunk.spans.empty(), errc::invalid_argument, where, "holds no layers");
    for (const layer_span& s : chunk.spans) {
      require(s.module.valid() && s.module.index() < model.module_count(), errc::invalid_argument, where,
              "names a module that does not exist");
      require(s.first < s.last && s.last <= model.module(s.module).layers.size(), errc::invalid_argument, where,
              "layer range [" + std::to_string(s.first) + ", " + std::to_string(s.last) + ") of module '" +
                  model.module(s.module).name + "' is empty or out of range");
    }
  }
}

// Static memory of each rank: the parameters of its chunks times `bytes_per_parameter`, divided
// over `tp` tensor-parallel GPUs. The default 16 bytes is mixed-precision Adam without a
// distributed optimiser, as Megatron accounts it: BF16 weights (2) and gradients (2), FP32
// master weights (4) and two FP32 Adam moments (4 + 4).
inline std::vector<bytes> weight_bytes_per_rank(const multimodal_model& model, const placement& p, int tp,
                                                double bytes_per_parameter = 16.0) {
  require(tp >= 1, errc::invalid_argument, "tp", "must be >= 1");
  std::vector<bytes> result(static_cast<std::size_t>(p.ranks));
  for (const chunk_spec& chunk : p.chunks) {
    for (const layer_span& s : chunk.spans) {
      const module_spec& m = model.module(s.module);
      for (std::size_t i = s.first; i < s.last; ++i) {
        result[chunk.rank.index()] += bytes(double(parameter_count(m.layers[i])) * bytes_per_parameter / tp);
      }
    }
  }
  return result;
}

}  // namespace dip
