// DIP's planner behind the asynchronous planner: batch i+1 is searched while batch i trains.
//
//   dip::async_planner<dip::plan> planner({.workers = 1, .max_ahead = 2}, {}, {});
//   dip::submit_dip_batch(planner, i + 1, graph_of(i + 1), options);   // while batch i runs
//   const auto next = planner.get(i + 1, deadline);                     // next.plan is validated
//
// The worker first offers the fallback (under a cap twice: with phase 3 stopped at once, ready
// soonest, then with phase 3 solved), then the search (phase 1 with phase 2 scoring) offers a
// validated plan at every improvement, so a deadline returns the best so far; when the search
// ends it offers the full plan (phase 3 included). The fallback is the static-dip plan (natural
// order, 1F1B's in-flight rule) made to fit the memory cap with phase 3's strategies: always
// available, never searched. The quick fallback (phase 3 stopped at once) is made once per
// batch, by whichever of the worker and get() asks first: get() past a deadline with nothing
// offered takes the worker's if it is made, waits for it while the worker makes it (the worker
// started sooner, so it is ready sooner than one get() would start), and makes it itself only
// when the batch never started. The batch's deadline stops every phase.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <utility>
#include <vector>

#include "dip/core/units.hpp"
#include "dip/planner/async_planner.hpp"
#include "dip/planner/dip_planner.hpp"
#include "dip/planner/modality_baselines.hpp"
#include "dip/schedule/memory_chooser.hpp"
#include "dip/schedule/pass_search.hpp"
#include "dip/sim/simulator.hpp"

namespace dip {

namespace detail {

// static-dip's order under 1F1B's in-flight caps (lowered by the memory cap), not yet fitted to
// the cap or validated.
inline plan static_dip_unfitted(const std::shared_ptr<const stage_graph>& graph, const dip_planner_options& options) {
  require(graph != nullptr, errc::invalid_argument, "static-dip", "no stage graph");
  const pass_index passes(*graph);
  return interleave_with_order(graph, options, passes, default_pass_priority(passes));
}

// Brings `p` under options.memory_cap with phase 3's strategies (if there is a cap) and validates
// it, once. Returns whether phase 3 changed it (false: it fit as it was).
inline bool fit_and_validate(plan& p, const dip_planner_options& options) {
  const bool fitted = options.memory_cap &&
                      fit_memory(p, *options.memory_cap, options.weight_memory, options.strategy_model,
                                 memory_solver_options_of(options), options.threads);
  validate(p, validation_options_of(options));
  return fitted;
}

// Sets every action's memory strategy to keep: undoes fit_memory, which changes nothing else.
inline void keep_every_pair(plan& p) {
  for (std::vector<action>& list : p.ranks) {
    for (action& a : list) a.strategy = memory_strategy::keep;
  }
}

// `options` with its stop already requested: phase 3 gives every pair that must free memory its
// smallest strategy without solving anything (valid, possibly slower, and ready in a fraction of
// the time: at PP 16 x 64, 6 against 27 ms).
inline dip_planner_options stopped_at_once(dip_planner_options options) {
  std::stop_source stop;
  stop.request_stop();
  options.stop = stop.get_token();
  return options;
}

// A value made at most once, by the first caller of get(make); later callers (concurrent ones
// included) wait for it and get a copy of it, or what making it threw. Thread-safe.
template <class T>
class made_once {
 public:
  template <class Make>
  T get(Make&& make) {
    std::call_once(once_, [&] {
      try {
        value_.emplace(std::forward<Make>(make)());
      } catch (...) {
        failure_ = std::current_exception();
      }
    });
    if (failure_) std::rethrow_exception(failure_);
    return *value_;
  }

 private:
  std::once_flag once_;
  std::optional<T> value_;      // written once, inside call_once; read after it
  std::exception_ptr failure_;  // likewise
};

}  // namespace detail

// The static fallback: static-dip's order, with recompute/offload where it would exceed the cap.
// Once options.stop is requested, phase 3 keeps what it has (each rank's problems not yet solved
// take their smallest strategies): the plan is valid, only possibly slower.
inline plan static_dip_fallback(const std::shared_ptr<const stage_graph>& graph, const dip_planner_options& options) {
  plan result = detail::static_dip_unfitted(graph, options);
  detail::fit_and_validate(result, options);
  return result;
}

// Submits batch `index` (its stage graph on a modality-aware placement) to `planner`, whose plans
// are `Plan`s made from a dip::plan by `deliver` (for dip::plan itself: as it is; dip::planner
// wraps each plan into a validated, simulated planned_batch). The search budget is
// options.search_ms (or search_rollouts). Scores are simulated makespans in ms. `deliver` runs on
// the worker (searched plans) or in get() (the fallback) and must be thread-safe.
template <std::movable Plan, class Deliver>
void submit_dip_batch(async_planner<Plan>& planner, std::size_t index, const std::shared_ptr<const stage_graph>& graph,
                      const dip_planner_options& options, Deliver deliver) {
  require(options.search_ms > 0 || options.search_rollouts > 0, errc::invalid_argument, "submit_dip_batch",
          "needs a search budget (search_ms or search_rollouts)");
  // Set when the search returns (or throws). Until then get() needs the fallback because a
  // deadline came first (or the batch never started): it is late already, so phase 3 stops at once.
  auto returned = std::make_shared<std::atomic<bool>>(false);
  // The quick fallback, shared by the worker (which makes it first) and get().
  auto quick = std::make_shared<detail::made_once<plan>>();
  auto search = [graph, options, deliver, returned, quick](std::size_t, planning_context<Plan>& ctx) {
    struct on_return {
      std::atomic<bool>& flag;
      ~on_return() { flag.store(true); }
    } mark{*returned};
    const simulation_options sim = simulation_options_of(options);
    const validation_options checks = validation_options_of(options);
    dip_planner_options stoppable = options;
    stoppable.stop = ctx.stop_token();  // a deadline ends phases 2 and 3 too, within milliseconds
    try {
      // The fallback first, made here rather than in get(): at scale no order the search scores
      // may fit the cap before phase 3, and a deadline would then make get() build it late.
      // First with phase 3 stopped at once (ready soonest, for a deadline soon after submit);
      // then, if phase 3 had anything to do (the order exceeds the cap), with phase 3 solved.
      bool made_here = false, fitted = false;
      plan first = quick->get([&] {
        made_here = true;
        plan p = detail::static_dip_unfitted(graph, stoppable);
        fitted = detail::fit_and_validate(p, detail::stopped_at_once(options));
        return p;
      });
      // The order before phase 3, for phase 3 solved: the quick plan with every pair back at
      // keep (phase 3 changes strategies only), copied once get() can have the quick plan rather
      // than before it is made.
      std::optional<plan> unfitted;
      if (made_here && fitted) {
        unfitted.emplace(first);
        detail::keep_every_pair(*unfitted);
      }
      const auto offer = [&](plan p) {
        const double ms = to_milliseconds(simulate(p, sim).makespan);
        ctx.offer(deliver(std::move(p)), ms);
      };
      offer(std::move(first));
      // Not made here (get() made it: the batch is delivered), or nothing to solve: done.
      if (unfitted && !ctx.cancelled()) {
        detail::fit_and_validate(*unfitted, stoppable);
        offer(std::move(*unfitted));
      }
    } catch (const error&) {
      // No static plan fits: the search may still find one; get() reports the fallback's error.
    }
    if (ctx.cancelled()) return;
    const pass_index passes(*graph);
    pass_search_options budget = search_options_of(*graph, options);
    budget.stop = ctx.stop_token();
    budget.on_improvement = [&](const std::vector<std::uint32_t>& priority, duration) {
      // Phase 2 only: cheap, and valid under the cap whenever the search says it is.
      plan candidate = make_plan(graph, interleave_stages(*graph, passes, priority, budget.interleave).order);
      if (first_violation(candidate, checks)) return;
      const double ms = to_milliseconds(simulate(candidate, sim).makespan);
      ctx.offer(deliver(std::move(candidate)), ms);
    };
    const pass_search_result found = search_pass_order(*graph, budget);
    if (ctx.cancelled()) return;
    plan full = plan_dip(graph, stoppable, found.priority);  // phase 3 on the best order
    if (ctx.cancelled()) return;                             // cut short: the plans offered so far stand
    const double ms = to_milliseconds(simulate(full, sim).makespan);
    ctx.offer(deliver(std::move(full)), ms);
  };
  auto fallback = [graph, options, deliver, returned, quick](std::size_t) {
    if (returned->load()) return deliver(static_dip_fallback(graph, options));  // the search failed: no hurry
    return deliver(quick->get([&] { return static_dip_fallback(graph, detail::stopped_at_once(options)); }));
  };
  planner.submit(index, std::move(search), std::move(fallback));
}

inline void submit_dip_batch(async_planner<plan>& planner, std::size_t index,
                             const std::shared_ptr<const stage_graph>& graph, const dip_planner_options& options) {
  submit_dip_batch(planner, index, graph, options, [](plan p) { return p; });
}

}  // namespace dip
