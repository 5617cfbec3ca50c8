// The one cost formula of dip's memory strategies (DIP phase 3), shared by dip::simulate,
// dip::validate and the chooser (dip/schedule/memory_chooser.hpp): what keeping, recomputing or
// offloading a forward's activations costs in time and memory.
//
// A pair is a forward stage F and the stages of its backward: the *use* stage U that needs the
// activations back (B, or I when the backward is split) and the *release* stage R at whose end
// they are freed (B, or W when split). Memory follows the simulator's convention: a stage's
// memory change applies when it ends. Per strategy (see strategy_cost_of):
// - keep: F holds its activations a = F.memory_delta from F's end to R's end. No extra time.
// - recompute: F keeps only its input, min(a, bytes of F's input edges), from F's end to U's
//   end; U re-runs the forward first, so U takes F's time longer. The first chunk of a chain
//   fed by no other chain keeps nothing (its input is the batch, held anyway).
// - offload: F's activations stream to host layer by layer while F runs and back while U runs,
//   so the device holds nothing of them from F's end to U's end. Each copy is a / host_link;
//   it hides behind the stage it overlaps: F takes max(0, copy - F's time) longer, U
//   max(0, copy - U's time) longer.
// With a split backward, W needs the activations too: after U (I) they are whole again until W
// ends, whatever the strategy; the strategy only changes memory on [F's end, I's end).
// Memory a stage needs while it runs (the recomputed activations inside B, a layer in flight to
// host) is transient and not modelled, as for keep.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

constexpr std::string_view to_string(memory_strategy s) noexcept {
  switch (s) {
    case memory_strategy::keep: return "keep";
    case memory_strategy::recompute: return "recompute";
    case memory_strategy::offload: return "offload";
  }
  return "?";
}

// What the strategies cost: the hardware figure they need and which ones may be offered.
struct memory_strategy_model {
  bandwidth host_link = gigabytes_per_second(50);  // device <-> host, each direction (PCIe Gen5 x16, effective)
  std::size_t max_candidates = 3;                  // S: offered per pair (fastest, smallest, S-2 buckets)
  bool allow_recompute = true;
  bool allow_offload = true;
};

// --- the stages of a pair ---------------------------------------------------------------------

struct activation_pair {
  stage_id forward;  // F
  stage_id use;      // B, or I when split: recompute or reload happens here
  stage_id release;  // B, or W when split: frees the activations at its end
};

namespace detail {
constexpr std::size_t stage_slot(stage_kind kind) noexcept {
  return kind == stage_kind::forward ? 0 : kind == stage_kind::backward_weight ? 2 : 1;
}
inline bool same_work(const stage& a, const stage& b) noexcept {
  return a.chunk == b.chunk && a.microbatch == b.microbatch && a.sub == b.sub;
}
}  // namespace detail

// The forward stage of the pair `id` belongs to. O(1): stages of one (chunk, microbatch, sub)
// are adjacent in a stage graph (F, then B or I, W); checked, with stage_graph::find behind it.
inline stage_id forward_of(const stage_graph& graph, stage_id id) {
  const stage& s = graph.at(id);
  const std::size_t slot = detail::stage_slot(s.kind);
  if (id.index() >= slot) {
    const stage_id f = stage_id::from_index(id.index() - slot);
    const stage& candidate = graph.at(f);
    if (candidate.kind == stage_kind::forward && detail::same_work(candidate, s)) return f;
  }
  return graph.find(stage_kind::forward, s.chunk, s.microbatch.index(), s.sub);
}

// The pair of forward stage `forward`. Throws dip::error(errc::invalid_argument) for a stage
// that is not a forward.
inline activation_pair pair_of(const stage_graph& graph, stage_id forward) {
  const stage& f = graph.at(forward);
  if (f.kind != stage_kind::forward) {
    throw error(errc::invalid_argument, "pair_of", describe(graph, forward) + " is not a forward stage");
  }
  const bool split = graph.split_backward();
  const stage_kind use_kind = split ? stage_kind::backward_input : stage_kind::backward;
  const stage_kind release_kind = split ? stage_kind::backward_weight : stage_kind::backward;
  const auto adjacent = [&](std::size_t offset, stage_kind kind) {
    const std::size_t i = forward.index() + offset;
    if (i < graph.size()) {
      const stage& s = graph.at(stage_id::from_index(i));
      if (s.kind == kind && detail::same_work(s, f)) return stage_id::from_index(i);
    }
    return graph.find(kind, f.chunk, f.microbatch.index(), f.sub);
  };
  return {forward, adjacent(1, use_kind), adjacent(split ? 2 : 1, release_kind)};
}

// --- the one cost formula ---------------------------------------------------------------------

struct strategy_cost {
  memory_strategy strategy = memory_strategy::keep;
  duration forward_extra{};   // added to F's time
  duration backward_extra{};  // added to U's time
  bytes kept{};               // device bytes held from F's end to U's end (a, or less)
  duration extra() const noexcept { return forward_extra + backward_extra; }
};

// Bytes a recomputing forward keeps: its input (the sizes of its input edges), at most its
// activations.
inline bytes recompute_kept_bytes(const stage_graph& graph, stage_id forward) {
  bytes input{};
  for (std::uint32_t e : graph.in_edges(forward)) input += graph.edges()[e].size;
  return std::min(input, graph.at(forward).memory_delta);
}

// What running `pair` (pair_of's) with `strategy` costs (the rules at the top of this file).
// Throws dip::error(errc::invalid_argument) for offload with a host link that is not finite and
// > 0.
inline strategy_cost strategy_cost_of(const stage_graph& graph, const activation_pair& pair, memory_strategy strategy,
                                      const memory_strategy_model& model = {}) {
  const stage_id forward = pair.forward;
  const stage& f = graph.at(forward);
  strategy_cost cost{strategy, duration{}, duration{}, f.memory_delta};
  switch (strategy) {
    case memory_strategy::keep: break;
    case memory_strategy::recompute:
      cost.backward_extra = f.time;
      cost.kept = recompute_kept_bytes(graph, forward);
      break;
    case memory_strategy::offload: {
      const double link = model.host_link.base();
      require(std::isfinite(link) && link > 0, errc::invalid_argument, "memory_strategy_model.host_link",
              "must be finite and > 0 to offload");
      const duration copy = f.memory_delta / model.host_link;
      cost.forward_extra = std::max(duration{}, copy - f.time);
      cost.backward_extra = std::max(duration{}, copy - graph.at(pair.use).time);
      cost.kept = bytes{};
      break;
    }
  }
  return cost;
}

// The same for the pair of `forward`. Throws dip::error(errc::invalid_argument) for a
// non-forward stage too.
inline strategy_cost strategy_cost_of(const stage_graph& graph, stage_id forward, memory_strategy strategy,
                                      const memory_strategy_model& model = {}) {
  return strategy_cost_of(graph, pair_of(graph, forward), strategy, model);
}

// Time of stage `id` when its pair runs `pair_strategy`: its own time plus the strategy's extra
// if it is the pair's F or U. keep returns stage.time exactly.
inline duration strategy_time(const stage_graph& graph, stage_id id, memory_strategy pair_strategy,
                              const memory_strategy_model& model = {}) {
  const stage& s = graph.at(id);
  if (pair_strategy == memory_strategy::keep || s.kind == stage_kind::backward_weight) return s.time;
  const strategy_cost cost = strategy_cost_of(graph, forward_of(graph, id), pair_strategy, model);
  return s.time + (s.kind == stage_kind::forward ? cost.forward_extra : cost.backward_extra);
}

// Memory change at the end of stage `id` when its pair runs `pair_strategy`. keep returns
// stage.memory_delta exactly; otherwise F: +kept; B (not split): -kept; I: +(a - kept) (the
// activations are whole again for W); W: -a.
inline bytes strategy_memory_delta(const stage_graph& graph, stage_id id, memory_strategy pair_strategy) {
  const stage& s = graph.at(id);
  if (pair_strategy == memory_strategy::keep || s.kind == stage_kind::backward_weight) return s.memory_delta;
  const stage_id f = s.kind == stage_kind::forward ? id : forward_of(graph, id);
  const bytes kept = pair_strategy == memory_strategy::recompute ? recompute_kept_bytes(graph, f) : bytes{};
  switch (s.kind) {
    case stage_kind::forward: return kept;
    case stage_kind::backward: return -kept;
    case stage_kind::backward_input: return graph.at(f).memory_delta - kept;
    case stage_kind::backward_weight: break;
  }
  return s.memory_delta;
}

namespace detail {

// Memory change at the end of stage `id` under `pair_strategy` (pair_strategies' table; empty:
// all keep): the arithmetic of dip::simulate, dip::validate and the memory chooser alike.
inline double memory_delta_under(const stage_graph& graph, stage_id id,
                                 const std::vector<memory_strategy>& pair_strategy) {
  const memory_strategy s = pair_strategy.empty() ? memory_strategy::keep : pair_strategy[id.index()];
  return s == memory_strategy::keep ? graph.at(id).memory_delta.base() : strategy_memory_delta(graph, id, s).base();
}

// The strategy of every stage's pair (indexed by stage; F, U and R of a pair get the F's), read
// from the plan's compute actions of forward stages. Empty when every strategy is keep, so
// keep-only plans pay nothing. Actions on unknown or non-forward stages are skipped here (the
// simulator and the validator report them).
inline std::vector<memory_strategy> pair_strategies(const plan& p) {
  const stage_graph& graph = *p.graph;
  std::vector<memory_strategy> table;
  for (const std::vector<action>& list : p.ranks) {
    for (const action& a : list) {
      if (a.kind != action_kind::compute || a.strategy == memory_strategy::keep) continue;
      if (a.stage.index() >= graph.size() || graph.at(a.stage).kind != stage_kind::forward) continue;
      if (table.empty()) table.assign(graph.size(), memory_strategy::keep);
      const activation_pair pair = pair_of(graph, a.stage);
      table[pair.forward.index()] = table[pair.use.index()] = table[pair.release.index()] = a.strategy;
    }
  }
  return table;
}

}  // namespace detail

}  // namespace dip
