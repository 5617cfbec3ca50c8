// The classic pipeline schedules dip is compared against: GPipe, 1F1B (PipeDream-flush),
// Megatron's interleaved 1F1B (virtual pipeline), Zero Bubble ZB-H1 ("ZB1P"), and the two
// V-shaped ones: Zero Bubble's ZB-V and DeepSeek's DualPipeV.
//
// Contract: each generator yields, lazily and in execution order, the compute stages of one rank
// of a classic pipeline: a stage graph over a single chain of p * v chunks, every microbatch
// whole (no sub-microbatches). The first four need chunk position c on rank c mod p (what
// `sequential_placement(..., p, v)` builds); ZB-V and DualPipeV need the V (two chunks per rank,
// position c on rank c going out and on rank 2p - 1 - c coming back: chunk_order::v_shape).
// They decide the order only; stage times (uniform or not) never change it.
// A graph built with `split_backward` runs each backward as I then W back to back in GPipe and
// both 1F1B variants (the input gradient then leaves after I, so they come out a little faster
// than with a fused B; build without the split for the textbook baselines). ZB1P, ZB-V and
// DualPipeV need the split and defer W. DIP's own placements (several chains,
// sub-microbatches) are refused with dip::error(errc::invalid_argument).
//
// Errors are thrown by the call that creates a generator, not on first iteration: the checks run
// before the coroutine starts. Lifetime: a generator owns a copy of the shared_ptr, so the graph
// outlives it however the caller's pointer is reset; the generator is single-pass.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/generator.hpp"
#include "dip/core/ids.hpp"
#include "dip/partition/chunk_order.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

// The dimensions of a classic pipeline: p ranks, v chunks per rank, m microbatches.
struct pipeline_shape {
  std::size_t ranks = 0;            // p
  std::size_t chunks_per_rank = 0;  // v
  std::size_t microbatches = 0;     // m
};

// The shape of `graph` as a classic pipeline whose chunks sit as `order` says. Throws
// dip::error(errc::invalid_argument) naming `schedule` when the graph is not one: several
// chains, sub-microbatches, a chain whose length is not a multiple of the rank count (not twice
// it for the V), or a chunk on another rank than the order gives it.
inline pipeline_shape classic_pipeline_shape(const stage_graph& graph, std::string_view schedule,
                                             chunk_order order = chunk_order::round_robin) {
  const std::string where(schedule);
  const placement& chunks = graph.placement();
  require(chunks.chains.size() == 1, errc::invalid_argument, where,
          "needs a single-chain placement (a classic pipeline such as sequential_placement builds); "
          "this one has " +
              std::to_string(chunks.chains.size()) + " chains");
  const std::size_t p = std::size_t(graph.ranks());
  const std::size_t length = chunks.chains[0].size();
  require(p >= 1 && length % p == 0, errc::invalid_argument, where,
          "needs a chain of ranks x chunks-per-rank chunks; the chain has " + std::to_string(length) + " chunks for " +
              std::to_string(p) + " ranks");
  require(order != chunk_order::v_shape || length == 2 * p, errc::invalid_argument, where,
          "needs a V-shaped placement of 2 chunks per rank; the chain has " + std::to_string(length) + " chunks for " +
              std::to_string(p) + " ranks");
  for (std::size_t c = 0; c < length; ++c) {
    const rank_id rank = chunks.chunk(chunks.chains[0][c]).rank;
    const std::size_t expected = chunk_rank_in_order(c, p, order);
    require(rank.index() == expected, errc::invalid_argument, where,
            std::string(order == chunk_order::v_shape
                            ? "needs the V-shaped placement (position c on rank c, then on rank 2p - 1 - c)"
                            : "needs chunk position c on rank c mod p") +
                "; position " + std::to_string(c) + " is on rank " + std::to_string(rank.value()) + ", not " +
                std::to_string(expected));
  }
  for (std::size_t j = 0; j < graph.microbatch_count(); ++j) {
    require(graph.sub_count(j, 0) == 1, errc::invalid_argument, where,
            "needs whole microbatches (a single-chain placement over the whole model); microbatch " +
                std::to_string(j) + " has " + std::to_string(graph.sub_count(j, 0)) + " sub-microbatches");
  }
  return {p, length / p, graph.microbatch_count()};
}

// What a classic baseline needs of its placement and stage graph. Its generator checks it, and
// the planner's registry builds the placement and graph from it.
struct baseline_needs {
  bool one_chunk_per_rank = false;               // gpipe, 1f1b, zb1p
  bool split_backward = false;                   // zb1p, zbv, dualpipev: I and W apart
  chunk_order order = chunk_order::round_robin;  // zbv, dualpipev: the V, two chunks per rank
};

// The needs of the named baseline; an unknown name needs nothing (plan_baseline refuses it).
inline baseline_needs baseline_needs_of(std::string_view schedule_name) noexcept {
  if (schedule_name == "gpipe" || schedule_name == "1f1b") return {.one_chunk_per_rank = true};
  if (schedule_name == "zb1p") return {.one_chunk_per_rank = true, .split_backward = true};
  if (schedule_name == "zbv" || schedule_name == "dualpipev")
    return {.split_backward = true, .order = chunk_order::v_shape};
  return {};
}

namespace detail {

// Checks shared by every baseline, eagerly, so that a bad input fails at the call: the graph is
// a classic pipeline on the placement `schedule` needs (baseline_needs_of), and `rank` is one
// of its ranks.
inline pipeline_shape check_baseline(const std::shared_ptr<const stage_graph>& graph, rank_id rank,
                                     std::string_view schedule) {
  const std::string where(schedule);
  const baseline_needs needs = baseline_needs_of(schedule);
  require(graph != nullptr, errc::invalid_argument, where, "no stage graph");
  const pipeline_shape shape = classic_pipeline_shape(*graph, schedule, needs.order);
  require(rank.valid() && rank.index() < shape.ranks, errc::invalid_argument, where,
          "rank " + (rank.valid() ? std::to_string(rank.value()) : std::string("invalid")) +
              " is not one of the placement's " + std::to_string(shape.ranks));
  require(!needs.one_chunk_per_rank || shape.chunks_per_rank == 1, errc::invalid_argument, where,
          "needs one chunk per rank; the placement has " + std::to_string(shape.chunks_per_rank) +
              " (use \"interleaved\" for a virtual pipeline)");
  require(!needs.split_backward || graph->split_backward(), errc::invalid_argument, where,
          "needs a stage graph built with split_backward = true (backward split into I and W)");
  return shape;
}

inline stage_id stage_at(const stage_graph& graph, stage_kind kind, std::size_t position, std::size_t microbatch) {
  return graph.find(kind, graph.placement().chains[0][position], microbatch);
}

// The backward of (position, microbatch): B, or I then W when the graph splits it.
struct backward_stages {
  stage_id first;   // B or I
  stage_id second;  // W, or invalid when not split
};

inline backward_stages backward_at(const stage_graph& graph, std::size_t position, std::size_t microbatch) {
  if (!graph.split_backward()) return {stage_at(graph, stage_kind::backward, position, microbatch), stage_id{}};
  return {stage_at(graph, stage_kind::backward_input, position, microbatch),
          stage_at(graph, stage_kind::backward_weight, position, microbatch)};
}

// The coroutine bodies: parameters by value (see the lifetime rule in generator.hpp).

inline generator<stage_id> gpipe_order(std::shared_ptr<const stage_graph> graph, std::size_t rank,
                                       pipeline_shape shape) {
  for (std::size_t j = 0; j < shape.microbatches; ++j) co_yield stage_at(*graph, stage_kind::forward, rank, j);
  for (std::size_t j = 0; j < shape.microbatches; ++j) {
    const backward_stages b = backward_at(*graph, rank, j);
    co_yield b.first;
    if (b.second.valid()) co_yield b.second;
  }
}

inline generator<stage_id> one_f_one_b_order(std::shared_ptr<const stage_graph> graph, std::size_t rank,
                                             pipeline_shape shape) {
  const std::size_t m = shape.microbatches;
  // Rank r holds at most p - r microbatches: it runs ahead of the last rank by the forwards
  // that are still in flight downstream of it.
  const std::size_t warmup = std::min(shape.ranks - rank - 1, m);
  std::size_t backward = 0;
  for (std::size_t j = 0; j < m; ++j) {
    co_yield stage_at(*graph, stage_kind::forward, rank, j);
    if (j < warmup) continue;
    const backward_stages b = backward_at(*graph, rank, backward++);
    co_yield b.first;
    if (b.second.valid()) co_yield b.second;
  }
  for (; backward < m; ++backward) {
    const backward_stages b = backward_at(*graph, rank, backward);
    co_yield b.first;
    if (b.second.valid()) co_yield b.second;
  }
}

inline generator<stage_id> interleaved_order(std::shared_ptr<const stage_graph> graph, std::size_t rank,
                                             pipeline_shape shape) {
  const std::size_t p = shape.ranks, v = shape.chunks_per_rank;
  const std::size_t total = shape.microbatches * v;  // forwards (and backwards) on this rank
  // Megatron-LM (megatron/core/pipeline_parallel/schedules.py, get_pp_rank_microbatches):
  // (v - 1) * p forwards on every rank, plus two per downstream rank, all of them when that
  // is not fewer than the total.
  const std::size_t warmup = std::min(2 * (p - rank - 1) + (v - 1) * p, total);
  // The k-th forward runs model chunk (k / p) % v on microbatch (k / (p v)) p + k % p: groups
  // of p microbatches go through chunk 0, then chunk 1, ...; the k-th backward mirrors it
  // from the last chunk down. Chunk i of this rank sits at chain position i * p + rank.
  const auto microbatch = [p, v](std::size_t k) { return (k / (p * v)) * p + k % p; };
  const auto forward = [&](std::size_t k) {
    return stage_at(*graph, stage_kind::forward, ((k / p) % v) * p + rank, microbatch(k));
  };
  const auto backward = [&](std::size_t k) {
    return backward_at(*graph, (v - 1 - (k / p) % v) * p + rank, microbatch(k));
  };
  for (std::size_t k = 0; k < warmup; ++k) co_yield forward(k);
  for (std::size_t k = 0; k < total; ++k) {
    if (k + warmup < total) co_yield forward(k + warmup);
    const backward_stages b = backward(k);
    co_yield b.first;
    if (b.second.valid()) co_yield b.second;
  }
}

inline generator<stage_id> zb1p_order(std::shared_ptr<const stage_graph> graph, std::size_t rank,
                                      pipeline_shape shape) {
  const std::size_t m = shape.microbatches;
  const auto f = [&](std::size_t j) { return stage_at(*graph, stage_kind::forward, rank, j); };
  const auto i = [&](std::size_t j) { return stage_at(*graph, stage_kind::backward_input, rank, j); };
  const auto w = [&](std::size_t j) { return stage_at(*graph, stage_kind::backward_weight, rank, j); };
  std::size_t forwards = 0, inputs = 0, weights = 0;
  const std::size_t warmup = std::min(shape.ranks - rank - 1, m);  // as 1F1B
  while (forwards < warmup) co_yield f(forwards++);
  // F I without W, r times: rank r keeps r weight gradients pending, which fill the cool-down
  // where 1F1B's rank r would wait for gradients. In-flight microbatches peak at p on every
  // rank, 1F1B's peak (on rank 0).
  for (std::size_t k = 0; k < rank && forwards < m; ++k) {
    co_yield f(forwards++);
    co_yield i(inputs++);
  }
  while (forwards < m) {  // steady state: F I W, the W of the oldest pending microbatch
    co_yield f(forwards++);
    co_yield i(inputs++);
    co_yield w(weights++);
  }
  while (inputs < m) {  // cool-down: I W
    co_yield i(inputs++);
    co_yield w(weights++);
  }
  while (weights < m) co_yield w(weights++);  // the r deferred W
}

// A few stages that one step of a schedule runs back to back (a full backward is I then W; an
// overlapped F&B is F, I, W): generators return one from a lambda and yield its stages, since a
// lambda cannot co_yield for them.
class stage_run {
 public:
  void add(stage_id id) { stages_[size_++] = id; }
  const stage_id* begin() const noexcept { return stages_.data(); }
  const stage_id* end() const noexcept { return stages_.data() + size_; }

 private:
  std::array<stage_id, 3> stages_{};
  std::size_t size_ = 0;
};

// ZB-V as PyTorch's ScheduleZBVZeroBubble orders it (torch/distributed/pipelining/schedules.py,
// after Qi et al., "Pipeline Parallelism with Controllable Memory", section 6). Rank r holds
// chunk 0 (position r, going out) and chunk 1 (position 2p - 1 - r, coming back). It plans
// max(2p - 1, m) microbatches, so the V fills, and skips the stages of those past m.
inline generator<stage_id> zbv_order(std::shared_ptr<const stage_graph> graph, std::size_t rank, pipeline_shape shape) {
  const std::size_t p = shape.ranks, m = shape.microbatches;
  const std::size_t planned = std::max(2 * p - 1, m);
  const std::array<std::size_t, 2> position{rank, 2 * p - 1 - rank};
  std::array<std::size_t, 2> forwards{0, 0}, inputs{0, 0}, weights{0, 0};
  const auto pass = [&](stage_kind kind, std::size_t chunk, std::size_t& counter) {
    stage_run run;
    if (counter < m) run.add(stage_at(*graph, kind, position[chunk], counter));
    ++counter;
    return run;
  };
  const auto f = [&](std::size_t chunk) { return pass(stage_kind::forward, chunk, forwards[chunk]); };
  const auto i = [&](std::size_t chunk) { return pass(stage_kind::backward_input, chunk, inputs[chunk]); };
  const auto w = [&](std::size_t chunk) { return pass(stage_kind::backward_weight, chunk, weights[chunk]); };
  const auto i_then_w = [&](std::size_t chunk) {  // I and W of the same microbatch, back to back
    stage_run run = i(chunk);
    for (stage_id id : w(chunk)) run.add(id);
    return run;
  };
  // Warm-up: 2(p - r) - 1 forwards of chunk 0; r times F1 F0; p - r times F1 then its I W.
  for (std::size_t k = 0; k + 1 < 2 * (p - rank); ++k)
    for (stage_id id : f(0)) co_yield id;
  for (std::size_t k = 0; k < rank; ++k) {
    for (stage_id id : f(1)) co_yield id;
    for (stage_id id : f(0)) co_yield id;
  }
  for (std::size_t k = 0; k < p - rank; ++k) {
    for (stage_id id : f(1)) co_yield id;
    for (stage_id id : i_then_w(1)) co_yield id;
  }
  // Steady state: F0 I0 W0 F1 I1 W1 until both chunks have run every forward.
  while (forwards[1] < forwards[0] || forwards[0] < planned) {
    if (forwards[0] < planned)
      for (stage_id id : f(0)) co_yield id;
    for (stage_id id : i_then_w(0)) co_yield id;
    for (stage_id id : f(1)) co_yield id;
    for (stage_id id : i_then_w(1)) co_yield id;
  }
  // Cool-down: r times I0 I1 (their W deferred), p - r times I0 W0, then the deferred W of
  // chunk 1, then those of chunk 0.
  for (std::size_t k = 0; k < rank; ++k) {
    for (stage_id id : i(0)) co_yield id;
    for (stage_id id : i(1)) co_yield id;
  }
  for (std::size_t k = 0; k < p - rank; ++k) {
    for (stage_id id : i(0)) co_yield id;
    for (stage_id id : w(0)) co_yield id;
  }
  while (weights[1] < inputs[1])
    for (stage_id id : w(1)) co_yield id;
  while (weights[0] < inputs[0])
    for (stage_id id : w(0)) co_yield id;
}

// DualPipeV as PyTorch's ScheduleDualPipeV orders it (after deepseek-ai/DualPipe's
// DualPipeV), on the same V as ZB-V. Its eight steps pair the forward of one chunk with the full
// backward (I then W) of the other ("F&B": overlapped in DualPipe, so that one's communication
// hides behind the other's compute; here they run one after the other) and let the first and
// last steps split I from W to fill the ramps. Needs m >= 2p.
inline generator<stage_id> dualpipev_order(std::shared_ptr<const stage_graph> graph, std::size_t rank,
                                           pipeline_shape shape) {
  const std::size_t p = shape.ranks, m = shape.microbatches;
  const std::array<std::size_t, 2> position{rank, 2 * p - 1 - rank};
  std::array<std::size_t, 2> forwards{0, 0}, backwards{0, 0};
  std::deque<std::pair<std::size_t, std::size_t>> pending_weights;  // (chunk, microbatch), oldest first
  const auto f = [&](std::size_t chunk) {
    stage_run run;
    run.add(stage_at(*graph, stage_kind::forward, position[chunk], forwards[chunk]++));
    return run;
  };
  const auto b = [&](std::size_t chunk) {  // full backward: I then W
    stage_run run;
    const backward_stages s = backward_at(*graph, position[chunk], backwards[chunk]++);
    run.add(s.first);
    run.add(s.second);
    return run;
  };
  const auto i = [&](std::size_t chunk) {  // I only, its W queued
    stage_run run;
    run.add(stage_at(*graph, stage_kind::backward_input, position[chunk], backwards[chunk]));
    pending_weights.emplace_back(chunk, backwards[chunk]++);
    return run;
  };
  const auto oldest_w = [&] {  // the oldest queued W, if any
    stage_run run;
    if (!pending_weights.empty()) {
      const auto [chunk, microbatch] = pending_weights.front();
      pending_weights.pop_front();
      run.add(stage_at(*graph, stage_kind::backward_weight, position[chunk], microbatch));
    }
    return run;
  };
  const auto f_and_b = [&](std::size_t forward_chunk) {  // F of one chunk, full backward of the other
    stage_run run = f(forward_chunk);
    for (stage_id id : b(1 - forward_chunk)) run.add(id);
    return run;
  };
  // 1: 2(p - r - 1) F0.  2: r + 1 times F0 F1.  3: p - r - 1 times I1, a queued W, F1.
  for (std::size_t k = 0; k < 2 * (p - rank - 1); ++k)
    for (stage_id id : f(0)) co_yield id;
  for (std::size_t k = 0; k <= rank; ++k) {
    for (stage_id id : f(0)) co_yield id;
    for (stage_id id : f(1)) co_yield id;
  }
  for (std::size_t k = 0; k + 1 < p - rank; ++k) {
    for (stage_id id : i(1)) co_yield id;
    for (stage_id id : oldest_w()) co_yield id;
    for (stage_id id : f(1)) co_yield id;
  }
  // 4, the main step: m - 2p + r + 1 times F0&B1 then F1&B0 (on the last rank the first F0&B1
  // is not overlapped in DualPipe; the order is the same).
  for (std::size_t k = 0; k + 2 * p < m + rank + 1; ++k) {
    for (stage_id id : f_and_b(0)) co_yield id;
    for (stage_id id : f_and_b(1)) co_yield id;
  }
  // 5: p - r - 1 times B1 then F1&B0.
  for (std::size_t k = 0; k + 1 < p - rank; ++k) {
    for (stage_id id : b(1)) co_yield id;
    for (stage_id id : f_and_b(1)) co_yield id;
  }
  // 6: r + 1 times B1 B0, switching to I (W queued) half way: before B1 on odd ranks, before B0
  // on even ones.
  bool split = false;
  for (std::size_t k = 0; k <= rank; ++k) {
    if (k == (rank + 1) / 2 && rank % 2 == 1) split = true;
    for (stage_id id : split ? i(1) : b(1)) co_yield id;
    if (k == (rank + 1) / 2 && rank % 2 == 0) split = true;
    for (stage_id id : split ? i(0) : b(0)) co_yield id;
  }
  // 7: p - r - 1 times a queued W then B0 (or I0).  8: the r + 1 W still queued.
  for (std::size_t k = 0; k + 1 < p - rank; ++k) {
    for (stage_id id : oldest_w()) co_yield id;
    for (stage_id id : split ? i(0) : b(0)) co_yield id;
  }
  for (std::size_t k = 0; k <= rank; ++k)
    for (stage_id id : oldest_w()) co_yield id;
}

}  // namespace detail

// GPipe: all m forwards, then all m backwards, both in microbatch order (as PyTorch's
// ScheduleGPipe). Keeps all m microbatches' activations. Needs one chunk per rank.
// The generator holds `graph` (shared), so the graph outlives it.
inline generator<stage_id> gpipe(std::shared_ptr<const stage_graph> graph, rank_id rank) {
  const pipeline_shape shape = detail::check_baseline(graph, rank, "gpipe");
  return detail::gpipe_order(std::move(graph), rank.index(), shape);
}

// 1F1B / PipeDream-flush: rank r runs min(p - r - 1, m) warm-up forwards, then alternates one
// forward and one backward, then the remaining backwards, so at most p - r microbatches are in
// flight on rank r. Needs one chunk per rank. The generator holds `graph` (shared).
inline generator<stage_id> one_f_one_b(std::shared_ptr<const stage_graph> graph, rank_id rank) {
  const pipeline_shape shape = detail::check_baseline(graph, rank, "1f1b");
  return detail::one_f_one_b_order(std::move(graph), rank.index(), shape);
}

// Megatron's interleaved 1F1B with v = chunks per rank (inferred from the graph): warm-up of
// min(2 (p - r - 1) + (v - 1) p, m v) forwards, then 1F1B over (chunk, microbatch) pairs in
// Megatron's order. Bubble (p - 1) / (v m + p - 1) for uniform stages. With v = 1 it is 1F1B
// with that deeper warm-up (same makespan for uniform stages, more memory). Throws
// dip::error(errc::invalid_argument) unless m is a multiple of p, as Megatron does. The
// generator holds `graph` (shared).
inline generator<stage_id> interleaved_one_f_one_b(std::shared_ptr<const stage_graph> graph, rank_id rank) {
  const pipeline_shape shape = detail::check_baseline(graph, rank, "interleaved");
  require(shape.microbatches % shape.ranks == 0, errc::invalid_argument, "interleaved",
          "the number of microbatches (" + std::to_string(shape.microbatches) +
              ") must be a multiple of the number of pipeline ranks (" + std::to_string(shape.ranks) +
              "), as in Megatron-LM's interleaved schedule");
  return detail::interleaved_order(std::move(graph), rank.index(), shape);
}

// Zero Bubble ZB-H1 (Qi et al., ICLR 2024; the handcrafted schedule of sail-sg's
// zero-bubble-pipeline-parallelism, its "official" uniform-split variant as in their
// ZeroBubbleH1Pipeline): 1F1B with each backward split into I (input gradient, on
// the critical path) and W (weight gradient, deferrable). Rank r runs min(p - r - 1, m)
// forwards, r times F I, then F I W while forwards remain, then I W, then its r deferred W.
// With F = I = W = T and m >= p the makespan is (3m + p - 1) T: the bubble is (p - 1) T per
// rank against 1F1B's (p - 1) 3T. Peak in-flight microbatches min(p, m) on every rank, which
// is 1F1B's peak over ranks. Needs one chunk per rank and a graph built with
// split_backward = true. The generator holds `graph` (shared).
inline generator<stage_id> zb1p(std::shared_ptr<const stage_graph> graph, rank_id rank) {
  const pipeline_shape shape = detail::check_baseline(graph, rank, "zb1p");
  return detail::zb1p_order(std::move(graph), rank.index(), shape);
}

// ZB-V (Qi et al., "Pipeline Parallelism with Controllable Memory", NeurIPS 2024), in the order
// of PyTorch's ScheduleZBVZeroBubble: on the V (two chunks per rank, chunk_order::v_shape),
// rank r runs 2(p - r) - 1 forwards of its first chunk, r times F1 F0, p - r times F1 I1 W1,
// then F0 I0 W0 F1 I1 W1 while forwards remain, then r times I0 I1, p - r times I0 W0, and its
// deferred W. With F = I = W = t per chunk, m >= 2p - 1 and free communication no rank idles
// between its first and its last stage: the makespan is (6m + p - 1) t, the p - 1 forwards the
// last rank waits for at the start being the only bubble (ZB-H1: (p - 1) 2t more). Peak
// in-flight activations 2p chunks' on rank 0, 1F1B's peak (p whole-stage microbatches). Needs
// a graph built with split_backward = true. The generator holds `graph` (shared).
inline generator<stage_id> zbv(std::shared_ptr<const stage_graph> graph, rank_id rank) {
  const pipeline_shape shape = detail::check_baseline(graph, rank, "zbv");
  return detail::zbv_order(std::move(graph), rank.index(), shape);
}

// DualPipeV (DeepSeek-V3's DualPipe cut in half onto the V; PyTorch's ScheduleDualPipeV):
// pairs the forward of one chunk with the full backward of the other through its steady state
// and splits I from W in the ramps. DualPipe overlaps each F&B pair's communication with the
// other's compute; dip runs the pair one after the other and prices the communication as for
// every schedule, so F&B = F + I + W here. Needs the V (chunk_order::v_shape), a graph built
// with split_backward = true and at least 2p microbatches, as PyTorch does. The generator holds
// `graph` (shared).
inline generator<stage_id> dualpipev(std::shared_ptr<const stage_graph> graph, rank_id rank) {
  const pipeline_shape shape = detail::check_baseline(graph, rank, "dualpipev");
  require(shape.microbatches >= 2 * shape.ranks, errc::invalid_argument, "dualpipev",
          "needs at least as many microbatches as stages (2 x " + std::to_string(shape.ranks) +
              " ranks = " + std::to_string(2 * shape.ranks) + "), got " + std::to_string(shape.microbatches) +
              ", as PyTorch's ScheduleDualPipeV does");
  return detail::dualpipev_order(std::move(graph), rank.index(), shape);
}

// The names plan_baseline accepts.
inline std::vector<std::string> baseline_names() {
  return {"gpipe", "1f1b", "interleaved", "zb1p", "zbv", "dualpipev"};
}

// Runs the named baseline for every rank and turns the orders into a plan (dip::make_plan).
// Throws dip::error(errc::not_found) listing the known names for an unknown one, and whatever
// the generator throws for a graph it cannot schedule.
inline plan plan_baseline(std::string_view schedule_name, std::shared_ptr<const stage_graph> graph) {
  using make_fn = generator<stage_id> (*)(std::shared_ptr<const stage_graph>, rank_id);
  make_fn make = nullptr;
  if (schedule_name == "gpipe") make = &gpipe;
  else if (schedule_name == "1f1b") make = &one_f_one_b;
  else if (schedule_name == "interleaved") make = &interleaved_one_f_one_b;
  else if (schedule_name == "zb1p") make = &zb1p;
  else if (schedule_name == "zbv") make = &zbv;
  else if (schedule_name == "dualpipev") make = &dualpipev;
  if (make == nullptr) {
    std::string known;
    for (const std::string& name : baseline_names()) {
      if (!known.empty()) known += ", ";
      known += name;
    }
    throw error(errc::not_found, "baseline schedule '" + std::string(schedule_name) + "'",
                "unknown; the known baselines are " + known);
  }
  require(graph != nullptr, errc::invalid_argument, std::string(schedule_name), "no stage graph");
  std::vector<std::vector<stage_id>> orders(std::size_t(graph->ranks()));
  for (std::size_t r = 0; r < orders.size(); ++r) {
    for (stage_id id : make(graph, rank_id::from_index(r))) orders[r].push_back(id);
  }
  return make_plan(std::move(graph), orders);
}

}  // namespace dip
