// dip::plan: per-rank ordered action lists, the thing an executor runs.
//
// Compute actions run one stage with a memory strategy. Communication actions move the data of
// one stage-graph edge between ranks: the producer's rank sends it (non-blocking: the transfer
// overlaps later compute), the consumer's rank receives it (blocking: the rank waits until the
// data has arrived). A message is identified by its edge, so sends and receives pair up
// exactly. `make_plan` turns per-rank compute orders into a full plan by placing each send right
// after its producer and each receive right before its consumer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

enum class action_kind : std::uint8_t { compute, send, recv };

// What a stage does with the activations it would keep for backward (issue: memory strategies).
enum class memory_strategy : std::uint8_t { keep, recompute, offload };

struct action {
  action_kind kind = action_kind::compute;
  stage_id stage;          // compute: the stage run; send/recv: the edge's producer
  std::uint32_t edge = 0;  // send/recv: index into stage_graph::edges()
  rank_id peer;            // send: the receiver; recv: the sender
  memory_strategy strategy = memory_strategy::keep;
  friend bool operator==(const action&, const action&) = default;
};

struct plan {
  std::shared_ptr<const stage_graph> graph;
  std::vector<std::vector<action>> ranks;  // ranks[r] = rank r's actions in order

  std::size_t action_count() const {
    std::size_t n = 0;
    for (const auto& list : ranks) n += list.size();
    return n;
  }
};

// Human-readable name of a stage: "F3.1@c2" = forward of microbatch 3, sub 1, on chunk 2.
inline std::string describe(const stage_graph& graph, stage_id id) {
  const stage& s = graph.at(id);
  std::string text(1, to_char(s.kind));
  text += std::to_string(s.microbatch.value());
  if (graph.sub_count(s.microbatch.index(), graph.placement().chunk(s.chunk).chain) > 1) {
    text += "." + std::to_string(s.sub);
  }
  return text + "@c" + std::to_string(s.chunk.value());
}

inline std::string describe(const stage_graph& graph, const action& a) {
  switch (a.kind) {
    case action_kind::compute: return describe(graph, a.stage);
    case action_kind::send:
      return "send " + describe(graph, a.stage) + " -> " + describe(graph, graph.edges()[a.edge].to) + " to rank " +
             std::to_string(a.peer.value());
    case action_kind::recv:
      return "recv " + describe(graph, a.stage) + " -> " + describe(graph, graph.edges()[a.edge].to) + " from rank " +
             std::to_string(a.peer.value());
  }
  return "?";
}

// Builds a plan from each rank's compute order: before a stage, a receive for every input edge
// from another rank; after it, a send for every output edge to another rank.
inline plan make_plan(std::shared_ptr<const stage_graph> graph,
                      const std::vector<std::vector<stage_id>>& compute_order) {
  require(graph != nullptr, errc::invalid_argument, "make_plan", "no stage graph");
  require(int(compute_order.size()) == graph->ranks(), errc::invalid_argument, "make_plan",
          "got compute orders for " + std::to_string(compute_order.size()) + " ranks, the placement has " +
              std::to_string(graph->ranks()));
  const stage_graph& g = *graph;
  plan result{std::move(graph), std::vector<std::vector<action>>(compute_order.size())};
  const auto edges = g.edges();
  for (std::size_t r = 0; r < compute_order.size(); ++r) {
    std::vector<action>& out = result.ranks[r];
    out.reserve(compute_order[r].size() * 3);
    for (stage_id id : compute_order[r]) {
      if (id.index() >= g.size()) {  // not require(): its message would be built for every stage
        throw error(errc::invalid_argument, "make_plan rank " + std::to_string(r),
                    "stage " + std::to_string(id.value()) + " does not exist");
      }
      const rank_id here = g.rank_of(id);
      for (std::uint32_t e : g.in_edges(id)) {
        const rank_id from = g.rank_of(edges[e].from);
        if (from != here) out.push_back({action_kind::recv, edges[e].from, e, from, memory_strategy::keep});
      }
      out.push_back({action_kind::compute, id, 0, rank_id{}, memory_strategy::keep});
      for (std::uint32_t e : g.out_edges(id)) {
        const rank_id to = g.rank_of(edges[e].to);
        if (to != here) out.push_back({action_kind::send, id, e, to, memory_strategy::keep});
      }
    }
  }
  return result;
}

}  // namespace dip
