// The DIP planner: one call from a stage graph (a placement and a batch) to a validated plan.
//
// Phase 1 (pass reordering by tree search, pass_search.hpp) picks the pass order within
// a budget, unless the caller gives one; phase 2 (dual-queue interleaving, dual_queue.hpp) turns
// it into per-rank stage orders within the memory cap; phase 3 (memory strategies,
// memory_strategy.hpp) lets phase 2 run with a looser cap, more microbatches in flight and fewer
// bubbles, and brings memory back under the real cap by recomputing or offloading the
// activations that cost least to treat so. The planner tries phase 2 at the real cap, under
// 1F1B's in-flight limit, and at looser caps (`relaxations`: the activation budget above the
// weights times 1.25, 1.5, 2, and no cap), prices each with phase 3 and the simulator, and
// keeps the fastest plan.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/parallel_for.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/dual_queue.hpp"
#include "dip/schedule/in_flight_caps.hpp"
#include "dip/schedule/memory_chooser.hpp"
#include "dip/schedule/pass_search.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/validate.hpp"
#include "dip/sim/simulator.hpp"

namespace dip {

struct dip_planner_options {
  std::optional<bytes> memory_cap;   // per GPU, weights included; nullopt: unlimited
  std::vector<bytes> weight_memory;  // per rank static memory; empty: zeros
  communication_model comm;          // the link the interleaver estimates arrivals with
  double search_ms = 0;              // phase 1 budget; 0 with search_rollouts 0: no search (natural order)
  std::size_t search_rollouts = 0;   // phase 1 rollout budget (reproducible for a given thread count)
  unsigned threads = 1;
  std::uint64_t seed = 1;
  bool memory_strategies = true;                         // phase 3 (needs a memory cap)
  std::vector<double> relaxations{1.25, 1.5, 2.0, 0.0};  // looser activation budgets to try; 0: no cap
  memory_strategy_model strategy_model{};
  // Phase 3's solver while the planner prices its candidate plans: without the decision diagram,
  // which tightens the proven gap (memory_solver.hpp) but chose the same strategies on every
  // preset we measured, at about 3x the time (VLM-L: 1.27 s against 0.37 s per batch).
  memory_solver_options memory_solver = [] {
    memory_solver_options o;
    o.dd_width = 0;
    return o;
  }();
  // Ends planning early (a deadline passed): the search returns its best order, phase 3 its
  // feasible choice so far, and plan_dip the best plan priced by then (or the first, if none
  // was). Every phase checks it at least every few milliseconds.
  std::stop_token stop{};
};

// What the phases and the checks need from the planner's options, built in one place.
inline interleave_options interleave_options_of(const stage_graph& graph, const dip_planner_options& options) {
  interleave_options interleave;
  interleave.weight_memory = options.weight_memory;
  interleave.comm = options.comm;
  if (options.memory_cap) interleave.memory_cap.assign(std::size_t(graph.ranks()), *options.memory_cap);
  return interleave;
}

inline pass_search_options search_options_of(const stage_graph& graph, const dip_planner_options& options) {
  pass_search_options search;
  search.time_budget_ms = options.search_ms;
  search.max_rollouts = options.search_rollouts;
  search.threads = options.threads;
  search.seed = options.seed;
  search.interleave = interleave_options_of(graph, options);
  search.stop = options.stop;
  return search;
}

inline simulation_options simulation_options_of(const dip_planner_options& options) {
  return {.comm = options.comm,
          .weight_memory = options.weight_memory,
          .record_timeline = false,
          .memory_strategies = options.strategy_model};
}

inline validation_options validation_options_of(const dip_planner_options& options) {
  return {.memory_cap = options.memory_cap, .weight_memory = options.weight_memory};
}

// Phase 3's solver options, stopped by the planner's stop token (as the search is).
inline memory_solver_options memory_solver_options_of(const dip_planner_options& options) {
  memory_solver_options solver = options.memory_solver;
  solver.stop = options.stop;
  return solver;
}

// Makes `p` fit `cap` with the cheapest recompute/offload choice (phase 3's chooser, `threads`
// ranks at a time) where it does not fit as it is; a plan that fits is left alone. Returns whether
// it changed `p` (false: it fit). Throws what the chooser throws: dip::error(errc::infeasible)
// when even the smallest strategies exceed the cap.
inline bool fit_memory(plan& p, bytes cap, const std::vector<bytes>& weight_memory,
                       const memory_strategy_model& model = {}, const memory_solver_options& solver = {},
                       unsigned threads = 1) {
  // The memory rule alone: callers validate the plan after fitting, and a plan that fits was
  // validated whole twice (1.3 ms each at PP 16 x 64).
  if (memory_fits(p, cap, weight_memory)) return false;
  apply_memory_choice(
      p,
      choose_memory_strategies(
          p,
          {.memory_cap = cap, .weight_memory = weight_memory, .model = model, .solver = solver, .threads = threads}));
  return true;
}

// Plans `graph` with dual-queue interleaving under `priority` (empty: the searched order, or the
// natural one without a search budget), and validates the plan, the memory cap included.
// Phase 2 runs under several per-rank caps and the fastest simulated plan within the real cap
// wins: the real cap; 1F1B's in-flight limit (in_flight_caps.hpp: filling memory up to the cap
// is not always faster, and this makes the planner never slower than static-dip's order); and,
// with memory strategies, the looser `relaxations`, each brought back under the real cap by
// phase 3. Throws dip::error(errc::invalid_plan) naming the violation when nothing fits.
// Candidates are priced in order of their makespan before phase 3, and one not faster than the
// best plan priced so far is not fitted at all (phase 3 only adds time): the plan is the fastest
// of all candidates either way. Phase 2 builds the candidates, and phase 3 solves the ranks, on
// options.threads threads. Once options.stop is requested, the candidates not yet priced are
// skipped (the plan is valid, only possibly slower).
inline plan plan_dip(std::shared_ptr<const stage_graph> graph, const dip_planner_options& options,
                     std::span<const std::uint32_t> priority = {}) {
  require(graph != nullptr, errc::invalid_argument, "plan_dip", "no stage graph");
  const pass_index passes(*graph);
  const std::vector<std::uint32_t> natural = default_pass_priority(passes);
  const interleave_options at_cap = interleave_options_of(*graph, options);
  std::vector<std::uint32_t> searched;
  if (priority.empty() && (options.search_ms > 0 || options.search_rollouts > 0)) {
    searched = search_pass_order(*graph, search_options_of(*graph, options)).priority;
    priority = searched;
  }
  const std::span<const std::uint32_t> chosen = priority.empty() ? std::span(natural) : priority;
  const validation_options checks = validation_options_of(options);
  const simulation_options sim = simulation_options_of(options);
  const bool use_strategies = options.memory_cap && options.memory_strategies;

  // The candidates: each (order, caps) interleaved by phase 2 and simulated as it is, on the
  // planner's threads (they are independent: 14% of the planning time at PP 16 x 128 on one
  // thread). Caps that interleave to the same per-rank orders (1F1B's limit and the real cap;
  // the last relaxations, once nothing binds) give one candidate, the first.
  struct candidate {
    std::vector<std::vector<stage_id>> order;
    plan unfitted;
    duration makespan;  // before phase 3, which only adds time
  };
  struct candidate_input {
    std::span<const std::uint32_t> order;
    interleave_options caps;
  };
  std::vector<candidate_input> inputs;
  interleave_options in_flight = at_cap;
  in_flight.memory_cap = one_f_one_b_caps(*graph, options.weight_memory, options.memory_cap);
  inputs.push_back({chosen, at_cap});
  inputs.push_back({chosen, in_flight});
  if (!searched.empty()) {
    // The search scores orders at the real cap only; the natural order keeps the result from
    // ever being slower than planning without a search.
    inputs.push_back({natural, at_cap});
    inputs.push_back({natural, in_flight});
  }
  if (use_strategies) {
    for (double factor : options.relaxations) {
      interleave_options loose = at_cap;
      if (factor > 0) {
        for (std::size_t r = 0; r < loose.memory_cap.size(); ++r) {
          const bytes w = options.weight_memory.empty() ? bytes{} : options.weight_memory[r];
          loose.memory_cap[r] = w + (*options.memory_cap - w) * factor;
        }
      } else {
        loose.memory_cap.clear();
      }
      inputs.push_back({chosen, std::move(loose)});
    }
  }
  std::vector<std::optional<candidate>> built(inputs.size());
  parallel_for(inputs.size(), options.threads, [&](std::size_t k) {
    // Stopped: phase 2 does not look at the stop token, so nothing past the first candidate.
    if (k > 0 && options.stop.stop_requested()) return;
    std::vector<std::vector<stage_id>> stage_order =
        interleave_stages(*graph, passes, inputs[k].order, inputs[k].caps).order;
    plan p = make_plan(graph, stage_order);
    const duration t = simulate(p, sim).makespan;
    built[k] = candidate{std::move(stage_order), std::move(p), t};
  });
  std::vector<candidate> candidates;
  for (std::optional<candidate>& c : built) {
    if (!c || std::any_of(candidates.begin(), candidates.end(),
                          [&](const candidate& other) { return other.order == c->order; })) {
      continue;
    }
    candidates.push_back(std::move(*c));
  }

  // Priced fastest-before-fitting first. Phase 3 only adds time (recompute, offload) to a fixed
  // order, so once a plan is priced, every candidate not faster than it before fitting is
  // skipped unfitted. Where the cap binds hard the loosest caps win by far (ViT-22B + GPT-175B
  // at PP 8 x 64: 27.7 s against 82.4 s at the real cap), and pricing them first skips fitting
  // the rest. Stopped before anything is priced: a candidate that fits as it is goes first.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const candidate& a, const candidate& b) { return a.makespan < b.makespan; });
  if (options.stop.stop_requested()) {
    const auto fits = std::find_if(candidates.begin(), candidates.end(),
                                   [&](const candidate& c) { return !first_violation(c.unfitted, checks); });
    if (fits != candidates.end()) std::rotate(candidates.begin(), fits, fits + 1);
  }
  const memory_solver_options solver = memory_solver_options_of(options);
  std::optional<plan> best;
  duration best_time = duration(std::numeric_limits<double>::infinity());
  for (candidate& c : candidates) {
    if (best && (options.stop.stop_requested() || !(c.makespan < best_time))) break;
    plan& p = c.unfitted;
    if (use_strategies) {
      try {
        fit_memory(p, *options.memory_cap, options.weight_memory, options.strategy_model, solver, options.threads);
      } catch (const error& e) {
        if (e.code() != errc::infeasible) throw;
        continue;  // even recompute and offload cannot fit this order
      }
      // Stopped while fitting: the fit was cut short, and checking it would only delay the return.
      if (best && options.stop.stop_requested()) break;
    }
    if (first_violation(p, checks)) continue;
    if (options.stop.stop_requested()) return std::move(p);  // stopped with no plan before: this one, unpriced
    const duration t = simulate(p, sim).makespan;
    if (t < best_time) {
      best_time = t;
      best = std::move(p);
    }
  }
  if (!best) {
    // Nothing fits: validating the plan at the real cap throws, naming the violation.
    validate(make_plan(graph, interleave_stages(*graph, passes, chosen, at_cap).order), checks);
    throw error(errc::invalid_plan, "plan_dip", "no order fits the memory cap");
  }
  return std::move(*best);
}

}  // namespace dip
