// dip::stage_graph_from_parts: a stage graph from explicit stages and edges, as a plan file
// stores them (dip/io/plan_export.hpp), checked before it is trusted.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/partition/placement.hpp"
#include "dip/schedule/stage.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

// A graph from explicit stages and edges, as a plan file stores them (dip/io/plan_export.hpp).
// `stages` must be in build_stage_graph's layout (microbatch by microbatch, chain by chain,
// sub-microbatch by sub-microbatch, chunk by chunk in chain order, then F, B or F, I, W), which
// find() and the pair lookups rely on. The placement is checked for consistency only (there is
// no model to check spans against). Throws dip::error(errc::invalid_argument) whose where() is
// "stages[i]", "edges[e]" or "placement" for the first thing out of place.
inline stage_graph stage_graph_from_parts(dip::placement placement, bool split_backward, std::vector<stage> stages,
                                          std::vector<stage_edge> edges) {
  const dip::placement& p = placement;
  const std::size_t chunk_count = p.chunks.size(), chains = p.chains.size();
  require(p.ranks >= 1, errc::invalid_argument, "placement", "needs at least one rank");
  require(chunk_count > 0 && chains > 0, errc::invalid_argument, "placement", "has no chunks");
  require(p.chain_inputs.size() == chains, errc::invalid_argument, "placement",
          "chain_inputs must have one entry per chain");
  std::vector<int> listed(chunk_count, 0);
  for (std::size_t k = 0; k < chains; ++k) {
    require(!p.chains[k].empty(), errc::invalid_argument, "placement", "chain " + std::to_string(k) + " is empty");
    for (std::size_t i = 0; i < p.chains[k].size(); ++i) {
      const std::size_t c = p.chains[k][i].index();
      require(c < chunk_count && p.chunks[c].chain == k && p.chunks[c].position == i && ++listed[c] == 1,
              errc::invalid_argument, "placement",
              "chain " + std::to_string(k) + " position " + std::to_string(i) +
                  " names a chunk that does not exist, is listed twice or whose chain/position disagree");
    }
    for (std::size_t input : p.chain_inputs[k]) {
      require(input < chains && input != k, errc::invalid_argument, "placement",
              "chain " + std::to_string(k) + " has a bad input chain " + std::to_string(input));
    }
  }
  for (std::size_t c = 0; c < chunk_count; ++c) {
    require(listed[c] == 1, errc::invalid_argument, "placement", "chunk " + std::to_string(c) + " is in no chain");
    require(p.chunks[c].rank.valid() && int(p.chunks[c].rank.index()) < p.ranks, errc::invalid_argument, "placement",
            "chunk " + std::to_string(c) + " is on a rank out of range");
  }
  require(!stages.empty(), errc::invalid_argument, "stages", "there are none");

  stage_graph g;
  g.split_ = split_backward;
  const std::vector<stage_kind> pass =
      split_backward
          ? std::vector<stage_kind>{stage_kind::forward, stage_kind::backward_input, stage_kind::backward_weight}
          : std::vector<stage_kind>{stage_kind::forward, stage_kind::backward};
  std::size_t next = 0;  // the stage expected next
  for (std::size_t j = 0; next < stages.size(); ++j) {
    g.offsets_.emplace_back(chains);
    g.subs_.emplace_back(chains);
    for (std::size_t k = 0; k < chains; ++k) {
      const std::vector<chunk_id>& chain = p.chains[k];
      g.offsets_[j][k] = next;
      std::uint32_t sub = 0;
      do {  // one sub-microbatch through the whole chain
        for (chunk_id c : chain) {
          for (stage_kind kind : pass) {
            const std::string where = "stages[" + std::to_string(next) + "]";
            const std::string expected = std::string(1, to_char(kind)) + " of chunk " + std::to_string(c.value()) +
                                         ", microbatch " + std::to_string(j) + ", sub " + std::to_string(sub);
            require(next < stages.size(), errc::invalid_argument, where, "missing: expected " + expected);
            const stage& s = stages[next];
            require(s.kind == kind && s.chunk == c && s.microbatch.index() == j && s.sub == sub, errc::invalid_argument,
                    where, "out of place: expected " + expected);
            require(s.rank == p.chunk(c).rank, errc::invalid_argument, where,
                    "is on rank " + std::to_string(s.rank.value()) + ", its chunk on rank " +
                        std::to_string(p.chunk(c).rank.value()));
            const bool finite = std::isfinite(s.time.base()) && std::isfinite(s.memory_delta.base()) &&
                                std::isfinite(s.output.base());
            require(finite && s.time.base() >= 0 && s.output.base() >= 0, errc::invalid_argument, where,
                    "time, memory and output must be finite, time and output >= 0");
            ++next;
          }
        }
        ++sub;
      } while (next < stages.size() && stages[next].kind == stage_kind::forward && stages[next].chunk == chain[0] &&
               stages[next].microbatch.index() == j && stages[next].sub == sub);
      g.subs_[j][k] = sub;
    }
  }
  for (std::size_t e = 0; e < edges.size(); ++e) {
    const stage_edge& edge = edges[e];
    require(edge.from.index() < stages.size() && edge.to.index() < stages.size() && edge.from != edge.to,
            errc::invalid_argument, "edges[" + std::to_string(e) + "]", "must join two different stages that exist");
    require(std::isfinite(edge.size.base()) && edge.size.base() >= 0, errc::invalid_argument,
            "edges[" + std::to_string(e) + "]", "size must be finite and >= 0");
  }
  g.placement_ = std::move(placement);
  g.stages_ = std::move(stages);
  g.edges_ = std::move(edges);
  g.index_edges();
  return g;
}

}  // namespace dip
