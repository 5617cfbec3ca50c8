// 1F1B's in-flight rule as per-rank memory caps for the dual-queue interleaver: the schedule
// static-dip runs with, and one of the caps the DIP planner tries (a tighter in-flight limit
// sometimes alternates better than filling memory up to the cap).
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <vector>

#include "dip/core/units.hpp"
#include "dip/partition/placement.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

// 1F1B's in-flight limit as per-rank memory caps: weights + n_r x the most activation bytes one
// microbatch keeps on rank r, never above `memory_cap` when one is given. n_r is the most
// chunks any of rank r's chunks has ahead of it, itself included, on the way to the loss
// (along its chain, then the longest consumer chain): a microbatch's activations there come
// back for backward after that many forward stages, so more in flight only costs memory. On a
// single chain of P chunks this is P - r, exactly 1F1B's rule.
inline std::vector<bytes> one_f_one_b_caps(const stage_graph& graph, const std::vector<bytes>& weight_memory,
                                           std::optional<bytes> memory_cap) {
  const std::size_t ranks = std::size_t(graph.ranks());
  const placement& layout = graph.placement();
  std::vector<std::vector<double>> kept(ranks, std::vector<double>(graph.microbatch_count(), 0.0));
  for (const stage& st : graph.stages()) {
    if (st.kind == stage_kind::forward) kept[st.rank.index()][st.microbatch.index()] += st.memory_delta.base();
  }
  // Chunks from the start of each chain to the loss: its length plus the longest consumer's
  // (chains are in topological order: inputs come first, so walk backwards).
  std::vector<std::size_t> to_loss(layout.chains.size(), 0);
  for (std::size_t k = layout.chains.size(); k-- > 0;) {
    std::size_t after = 0;
    for (std::size_t c = 0; c < layout.chains.size(); ++c) {
      const auto& inputs = layout.chain_inputs[c];
      if (std::find(inputs.begin(), inputs.end(), k) != inputs.end()) after = std::max(after, to_loss[c]);
    }
    to_loss[k] = layout.chains[k].size() + after;
  }
  std::vector<std::size_t> in_flight(ranks, 1);
  for (const chunk_spec& chunk : layout.chunks) {
    const std::size_t ahead = to_loss[chunk.chain] - chunk.position;
    in_flight[chunk.rank.index()] = std::max(in_flight[chunk.rank.index()], ahead);
  }
  std::vector<bytes> caps;
  for (std::size_t r = 0; r < ranks; ++r) {
    const double most = kept[r].empty() ? 0.0 : *std::max_element(kept[r].begin(), kept[r].end());
    bytes cap = (weight_memory.empty() ? bytes{} : weight_memory[r]) + bytes(most * double(in_flight[r]));
    if (memory_cap) cap = std::min(cap, *memory_cap);
    caps.push_back(cap);
  }
  return caps;
}

}  // namespace dip
