// dip::stage_graph: for one batch, the DAG of stages a schedule must order.
//
// A stage is one (sub-)microbatch on one chunk, in one of the passes: forward (F), backward (B),
// or, when the backward is split as in zero-bubble pipelines, input gradient (I) then weight
// gradient (W). Edges are data dependencies:
// - along a chain: F of chunk i before F of chunk i+1; B/I of chunk i+1 before B/I of chunk i;
// - at the end of a chain that feeds no other (it computes a loss): F before B/I of that chunk;
// - I before W of the same chunk and sub-microbatch;
// - across chains, per microbatch: every sub-microbatch's last F of a producer chain before
//   every sub-microbatch's first F of its consumer chain (all encoder sub-microbatches of
//   microbatch j before the LLM's first forward of j), and, backward, every first-chunk B/I of
//   the consumer before every last-chunk B/I of the producer.
// Stage times and memory come from a cost model when the graph is built (build_stage_graph.hpp),
// so simulating or searching over the graph never calls the cost model again.
//
// Boost.Graph sees a stage_graph as it is (no copy): graph_traits make it a bidirectional,
// vertex- and edge-list graph whose vertices are stage indices and whose edges are indices into
// edges(); get(boost::vertex_index, g) and get(boost::edge_index, g) are identity maps, and
// stage_time_map(g) / edge_bytes_map(g) are readable property maps of stage times (seconds) and
// edge sizes (bytes). Any BGL algorithm for such graphs runs on it directly.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <boost/graph/graph_traits.hpp>
#include <boost/graph/properties.hpp>
#include <boost/graph/topological_sort.hpp>
#include <boost/iterator/counting_iterator.hpp>
#include <boost/property_map/function_property_map.hpp>
#include <boost/property_map/property_map.hpp>

#include "dip/batch/batch_work.hpp"
#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/model/model.hpp"
#include "dip/partition/placement.hpp"
#include "dip/schedule/stage.hpp"

namespace dip {

class stage_graph;

// Defined in build_stage_graph.hpp and stage_graph_from_parts.hpp; declared here so the stage
// graph can befriend them.
template <cost_model_like Costs>
stage_graph build_stage_graph(const multimodal_model& model, const dip::placement& placement, const batch_work& batch,
                              const Costs& costs, stage_graph_options options = {});
inline stage_graph stage_graph_from_parts(dip::placement placement, bool split_backward, std::vector<stage> stages,
                                          std::vector<stage_edge> edges);

class stage_graph {
 public:
  std::span<const stage> stages() const noexcept { return stages_; }
  const stage& at(stage_id id) const { return stages_.at(id.index()); }
  // at(id).rank, from a compact table: the plan builder, the validator and the interleaving ask
  // it for every edge, and at scale (26208 stages) the stages do not fit a core's cache, the
  // table does. Unchecked: `id` must be a stage of this graph.
  rank_id rank_of(stage_id id) const noexcept { return stage_rank_[id.index()]; }
  std::size_t size() const noexcept { return stages_.size(); }
  std::span<const stage_edge> edges() const noexcept { return edges_; }
  const dip::placement& placement() const noexcept { return placement_; }
  int ranks() const noexcept { return placement_.ranks; }
  std::size_t microbatch_count() const noexcept { return offsets_.size(); }
  bool split_backward() const noexcept { return split_; }

  // Edges out of / into a stage, as indices into edges().
  std::span<const std::uint32_t> out_edges(stage_id id) const {
    return {out_index_.data() + out_begin_[id.index()], out_begin_[id.index() + 1] - out_begin_[id.index()]};
  }
  std::span<const std::uint32_t> in_edges(stage_id id) const {
    return {in_index_.data() + in_begin_[id.index()], in_begin_[id.index() + 1] - in_begin_[id.index()]};
  }

  // Sub-microbatches microbatch j has on chain k.
  std::uint32_t sub_count(std::size_t microbatch, std::size_t chain) const { return subs_.at(microbatch).at(chain); }

  // The stage of (kind, chunk, microbatch, sub); kind must exist in this graph (B xor I/W).
  stage_id find(stage_kind kind, chunk_id chunk, std::size_t microbatch, std::uint32_t sub = 0) const {
    const chunk_spec& c = placement_.chunk(chunk);
    // Checked before the message is built: find() runs for every pair in phase 3.
    if (microbatch >= offsets_.size() || sub >= subs_[microbatch][c.chain]) {
      throw error(errc::invalid_argument, "stage_graph::find",
                  "no microbatch " + std::to_string(microbatch) + " sub " + std::to_string(sub));
    }
    const bool kind_ok = kind == stage_kind::forward ||
                         (split_ ? kind != stage_kind::backward : kind == stage_kind::backward);
    if (!kind_ok) {
      throw error(errc::invalid_argument, "stage_graph::find",
                  std::string("this graph has no ") + to_char(kind) + " stages");
    }
    const std::size_t kinds = split_ ? 3 : 2;
    const std::size_t slot = kind == stage_kind::forward ? 0 : kind == stage_kind::backward_weight ? 2 : 1;
    const std::size_t chain_length = placement_.chains[c.chain].size();
    return stage_id::from_index(offsets_[microbatch][c.chain] + (sub * chain_length + c.position) * kinds + slot);
  }

  // Sum of all stage times of each rank (the busiest one bounds any schedule's makespan).
  std::vector<duration> work_per_rank() const {
    std::vector<duration> work(static_cast<std::size_t>(ranks()));
    for (const stage& s : stages_) work[s.rank.index()] += s.time;
    return work;
  }

  // The longest chain of dependent stage times (communication not counted): no schedule can be
  // shorter. Runs Boost.Graph's topological_sort on this graph itself (its graph_traits below).
  duration critical_path() const;

  template <cost_model_like Costs>
  friend stage_graph build_stage_graph(const multimodal_model&, const dip::placement&, const batch_work&, const Costs&,
                                       stage_graph_options);
  friend stage_graph stage_graph_from_parts(dip::placement, bool, std::vector<stage>, std::vector<stage_edge>);

 private:
  void add_edge(std::size_t from, std::size_t to, bytes size) {
    edges_.push_back({stage_id::from_index(from), stage_id::from_index(to), size});
  }
  // Indexes the edges by stage (out and in) and tabulates the stages' ranks; called once the
  // stages and edges are final.
  void index_edges() {
    const std::size_t n = stages_.size();
    stage_rank_.resize(n);
    for (std::size_t v = 0; v < n; ++v) stage_rank_[v] = stages_[v].rank;
    out_begin_.assign(n + 1, 0);
    in_begin_.assign(n + 1, 0);
    for (const stage_edge& e : edges_) {
      ++out_begin_[e.from.index() + 1];
      ++in_begin_[e.to.index() + 1];
    }
    for (std::size_t v = 0; v < n; ++v) {
      out_begin_[v + 1] += out_begin_[v];
      in_begin_[v + 1] += in_begin_[v];
    }
    out_index_.resize(edges_.size());
    in_index_.resize(edges_.size());
    std::vector<std::uint32_t> out_fill(out_begin_.begin(), out_begin_.end() - 1);
    std::vector<std::uint32_t> in_fill(in_begin_.begin(), in_begin_.end() - 1);
    for (std::size_t i = 0; i < edges_.size(); ++i) {
      out_index_[out_fill[edges_[i].from.index()]++] = std::uint32_t(i);
      in_index_[in_fill[edges_[i].to.index()]++] = std::uint32_t(i);
    }
  }

  dip::placement placement_;
  bool split_ = false;
  std::vector<stage> stages_;
  std::vector<stage_edge> edges_;
  std::vector<std::uint32_t> out_begin_, in_begin_, out_index_, in_index_;
  std::vector<rank_id> stage_rank_;                // stages_[v].rank
  std::vector<std::vector<std::size_t>> offsets_;  // [microbatch][chain] -> first stage index
  std::vector<std::vector<std::uint32_t>> subs_;   // [microbatch][chain] -> sub-microbatch count
};

// --- Boost.Graph view ---------------------------------------------------------------------------

// Vertices are stage indices, edges indices into stage_graph::edges().
using stage_vertex = std::size_t;
using stage_edge_index = std::uint32_t;

struct stage_graph_traversal_tag : virtual boost::bidirectional_graph_tag,
                                   virtual boost::vertex_list_graph_tag,
                                   virtual boost::edge_list_graph_tag {};

namespace detail {

// An iterator over a span of edge indices (out or in edges of a stage).
using stage_edge_span_iterator = std::span<const std::uint32_t>::iterator;

}  // namespace detail

inline stage_vertex source(stage_edge_index e, const stage_graph& g) { return g.edges()[e].from.index(); }
inline stage_vertex target(stage_edge_index e, const stage_graph& g) { return g.edges()[e].to.index(); }

inline std::pair<detail::stage_edge_span_iterator, detail::stage_edge_span_iterator> out_edges(stage_vertex v,
                                                                                               const stage_graph& g) {
  const auto span = g.out_edges(stage_id::from_index(v));
  return {span.begin(), span.end()};
}
inline std::pair<detail::stage_edge_span_iterator, detail::stage_edge_span_iterator> in_edges(stage_vertex v,
                                                                                              const stage_graph& g) {
  const auto span = g.in_edges(stage_id::from_index(v));
  return {span.begin(), span.end()};
}
inline std::size_t out_degree(stage_vertex v, const stage_graph& g) {
  return g.out_edges(stage_id::from_index(v)).size();
}
inline std::size_t in_degree(stage_vertex v, const stage_graph& g) {
  return g.in_edges(stage_id::from_index(v)).size();
}
inline std::size_t degree(stage_vertex v, const stage_graph& g) { return out_degree(v, g) + in_degree(v, g); }

inline std::pair<boost::counting_iterator<stage_vertex>, boost::counting_iterator<stage_vertex>> vertices(
    const stage_graph& g) {
  return {boost::counting_iterator<stage_vertex>(0), boost::counting_iterator<stage_vertex>(g.size())};
}
inline std::size_t num_vertices(const stage_graph& g) { return g.size(); }
inline std::pair<boost::counting_iterator<stage_edge_index>, boost::counting_iterator<stage_edge_index>> edges(
    const stage_graph& g) {
  return {boost::counting_iterator<stage_edge_index>(0),
          boost::counting_iterator<stage_edge_index>(stage_edge_index(g.edges().size()))};
}
inline std::size_t num_edges(const stage_graph& g) { return g.edges().size(); }

// Identity index maps, as BGL's algorithms ask for them.
inline boost::typed_identity_property_map<stage_vertex> get(boost::vertex_index_t, const stage_graph&) { return {}; }
inline boost::typed_identity_property_map<stage_edge_index> get(boost::edge_index_t, const stage_graph&) { return {}; }

// Stage time in seconds per vertex, and bytes per edge (what crosses ranks when they differ).
inline auto stage_time_map(const stage_graph& g) {
  return boost::make_function_property_map<stage_vertex, double>(
      [&g](stage_vertex v) { return to_seconds(g.stages()[v].time); });
}
inline auto edge_bytes_map(const stage_graph& g) {
  return boost::make_function_property_map<stage_edge_index, double>(
      [&g](stage_edge_index e) { return g.edges()[e].size.base(); });
}

}  // namespace dip

namespace boost {

template <>
struct graph_traits<dip::stage_graph> {
  using vertex_descriptor = dip::stage_vertex;
  using edge_descriptor = dip::stage_edge_index;
  using directed_category = bidirectional_tag;
  using edge_parallel_category = allow_parallel_edge_tag;
  using traversal_category = dip::stage_graph_traversal_tag;
  using out_edge_iterator = dip::detail::stage_edge_span_iterator;
  using in_edge_iterator = dip::detail::stage_edge_span_iterator;
  using adjacency_iterator = void;
  using vertex_iterator = counting_iterator<dip::stage_vertex>;
  using edge_iterator = counting_iterator<dip::stage_edge_index>;
  using vertices_size_type = std::size_t;
  using edges_size_type = std::size_t;
  using degree_size_type = std::size_t;
  static vertex_descriptor null_vertex() { return static_cast<vertex_descriptor>(-1); }
};

template <>
struct property_map<dip::stage_graph, vertex_index_t> {
  using type = typed_identity_property_map<dip::stage_vertex>;
  using const_type = type;
};
template <>
struct property_map<dip::stage_graph, edge_index_t> {
  using type = typed_identity_property_map<dip::stage_edge_index>;
  using const_type = type;
};

}  // namespace boost

namespace dip {

inline duration stage_graph::critical_path() const {
  // Finish time of the longest dependent chain ending at each stage, in topological order: the
  // same sums, in the same order, as a longest path from a source before every root.
  std::vector<stage_vertex> reversed;
  reversed.reserve(size());
  boost::topological_sort(*this, std::back_inserter(reversed));  // sinks first
  std::vector<double> finish(size(), 0.0);
  double longest = 0;
  for (auto it = reversed.rbegin(); it != reversed.rend(); ++it) {
    const stage_vertex v = *it;
    double start = 0;
    for (stage_edge_index e : in_edges(stage_id::from_index(v)))
      start = std::max(start, finish[edges_[e].from.index()]);
    finish[v] = start + to_seconds(stages_[v].time);
    longest = std::max(longest, finish[v]);
  }
  return seconds(longest);
}

}  // namespace dip
