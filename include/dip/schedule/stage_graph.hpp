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
// Stage times and memory come from a cost model when the graph is built, so simulating or
// searching over the graph never calls the cost model again.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/dag_shortest_paths.hpp>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/batch/batch_work.hpp"
#include "dip/partition/placement.hpp"

namespace dip {

enum class stage_kind : std::uint8_t { forward, backward, backward_input, backward_weight };

constexpr char to_char(stage_kind kind) noexcept {
  switch (kind) {
    case stage_kind::forward: return 'F';
    case stage_kind::backward: return 'B';
    case stage_kind::backward_input: return 'I';
    case stage_kind::backward_weight: return 'W';
  }
  return '?';
}

struct stage {
  stage_kind kind = stage_kind::forward;
  chunk_id chunk;
  microbatch_id microbatch;
  std::uint32_t sub = 0;  // sub-microbatch within the microbatch (0 when the chain is not split)
  rank_id rank;
  duration time{};
  bytes memory_delta{};   // + kept activations after F, - when B (or W) frees them
  bytes output{};         // bytes sent along each outgoing edge to another rank
};

struct stage_edge {
  stage_id from;
  stage_id to;
  bytes size{};  // bytes to transfer when the two stages are on different ranks
};

struct stage_graph_options {
  bool split_backward = false;  // B becomes I then W (zero-bubble schedules)
};

class stage_graph;

// Defined below; declared here so the stage graph can befriend it with its default argument.
template <cost_model_like Costs>
stage_graph build_stage_graph(const multimodal_model& model, const dip::placement& placement,
                              const batch_work& batch, const Costs& costs,
                              stage_graph_options options = {});

class stage_graph {
 public:
  std::span<const stage> stages() const noexcept { return stages_; }
  const stage& at(stage_id id) const { return stages_.at(id.index()); }
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
  std::uint32_t sub_count(std::size_t microbatch, std::size_t chain) const {
    return subs_.at(microbatch).at(chain);
  }

  // The stage of (kind, chunk, microbatch, sub); kind must exist in this graph (B xor I/W).
  stage_id find(stage_kind kind, chunk_id chunk, std::size_t microbatch, std::uint32_t sub = 0) const {
    const chunk_spec& c = placement_.chunk(chunk);
    require(microbatch < offsets_.size() && sub < subs_[microbatch][c.chain], errc::invalid_argument,
            "stage_graph::find", "no microbatch " + std::to_string(microbatch) + " sub " + std::to_string(sub));
    const bool kind_ok = kind == stage_kind::forward || (split_ ? kind != stage_kind::backward : kind == stage_kind::backward);
    require(kind_ok, errc::invalid_argument, "stage_graph::find",
            std::string("this graph has no ") + to_char(kind) + " stages");
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

  // The longest chain of dependent stage times (communication not counted), found with
  // Boost.Graph's dag_shortest_paths under std::greater: no schedule can be shorter.
  duration critical_path() const {
    using graph_t = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, boost::no_property,
                                          boost::property<boost::edge_weight_t, double>>;
    const std::size_t n = stages_.size(), source = n, sink = n + 1;
    graph_t g(n + 2);
    for (const stage_edge& e : edges_) boost::add_edge(e.from.index(), e.to.index(), to_seconds(at(e.from).time), g);
    for (std::size_t v = 0; v < n; ++v) {
      if (in_begin_[v] == in_begin_[v + 1]) boost::add_edge(source, v, 0.0, g);
      boost::add_edge(v, sink, to_seconds(stages_[v].time), g);
    }
    std::vector<double> distance(n + 2);
    boost::dag_shortest_paths(g, source,
                              boost::distance_map(distance.data())
                                  .distance_compare(std::greater<double>())
                                  .distance_inf(-std::numeric_limits<double>::infinity())
                                  .distance_zero(0.0));
    return seconds(distance[sink]);
  }

  template <cost_model_like Costs>
  friend stage_graph build_stage_graph(const multimodal_model&, const dip::placement&, const batch_work&,
                                       const Costs&, stage_graph_options);

  // A graph from explicit stages and edges, as a plan file stores them (dip/io/plan_export.hpp).
  // `stages` must be in build_stage_graph's layout (microbatch by microbatch, chain by chain,
  // sub-microbatch by sub-microbatch, chunk by chunk in chain order, then F, B or F, I, W), which
  // find() and the pair lookups rely on. The placement is checked for consistency only (there is
  // no model to check spans against). Throws dip::error(errc::invalid_argument) whose where() is
  // "stages[i]", "edges[e]" or "placement" for the first thing out of place.
  static stage_graph from_parts(dip::placement placement, bool split_backward, std::vector<stage> stages,
                                std::vector<stage_edge> edges);

 private:
  void add_edge(std::size_t from, std::size_t to, bytes size) {
    edges_.push_back({stage_id::from_index(from), stage_id::from_index(to), size});
  }
  void index_edges() {
    const std::size_t n = stages_.size();
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
  std::vector<std::vector<std::size_t>> offsets_;   // [microbatch][chain] -> first stage index
  std::vector<std::vector<std::uint32_t>> subs_;    // [microbatch][chain] -> sub-microbatch count
};

// Builds the stage graph of `batch` on `placement`, pricing every stage with `costs`.
// A chain whose modules all have the same number of sub-microbatches in a microbatch runs them
// separately, sub-microbatch s through every module of the chain (a DIP chain: one module, or
// an encoder and its projector split alike); otherwise (a classic pipeline over modules split
// differently) the chain runs the microbatch whole, the sum of each module's sub-microbatches.
// Classic schedules want whole microbatches: give them `merge_sub_microbatches(batch)`. Throws dip::error for an empty batch, a microbatch
// that does not give every module its work, or costs that are NaN or negative.
template <cost_model_like Costs>
stage_graph build_stage_graph(const multimodal_model& model, const dip::placement& placement,
                              const batch_work& batch, const Costs& costs,
                              stage_graph_options options) {
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
            const layer_cost part = chunk_cost(costs, model.module(span.module), span.first, span.last, work_of(span.module, s));
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

inline stage_graph stage_graph::from_parts(dip::placement placement, bool split_backward, std::vector<stage> stages,
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
    require(listed[c] == 1, errc::invalid_argument, "placement",
            "chunk " + std::to_string(c) + " is in no chain");
    require(p.chunks[c].rank.valid() && int(p.chunks[c].rank.index()) < p.ranks, errc::invalid_argument,
            "placement", "chunk " + std::to_string(c) + " is on a rank out of range");
  }
  require(!stages.empty(), errc::invalid_argument, "stages", "there are none");

  stage_graph g;
  g.split_ = split_backward;
  const std::vector<stage_kind> pass = split_backward
                                           ? std::vector<stage_kind>{stage_kind::forward, stage_kind::backward_input,
                                                                     stage_kind::backward_weight}
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
            require(s.kind == kind && s.chunk == c && s.microbatch.index() == j && s.sub == sub,
                    errc::invalid_argument, where, "out of place: expected " + expected);
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
            errc::invalid_argument, "edges[" + std::to_string(e) + "]",
            "must join two different stages that exist");
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
