// DIP's phase 1: pass reordering by Monte Carlo tree search.
//
// A schedule is decided by the order of its passes (pass_index: one sub-microbatch's pass
// through one chain): position i in the order is the pass's priority in the dual-queue
// interleaver (phase 2, dual_queue.hpp), which turns the order into per-rank stage orders and
// an estimated makespan. The search looks for the order with the shortest makespan within the
// memory cap.
//
// Tree: a node is a prefix of the order; its children append one more pass. Pruning (the
// paper's): the sub-microbatches of one chain within one microbatch keep their order, so a
// node's candidates are, per (microbatch, chain), its next unplaced sub-microbatch.
// One iteration:
// - selection: from the root, while a node has tried all its candidates, descend to the child
//   maximising  s^alpha + beta * sqrt(ln N_parent / N_child), where s = best makespan found
//   anywhere / best makespan found below the child (in (0, 1], 1 for the best subtree);
// - expansion: try the node's next untried candidate, in natural order (so the first path
//   explored is the natural order itself);
// - rollout: complete the order: with probability 1 - epsilon the eligible pass earliest in
//   the reference order (the best order found so far), else a random eligible one; score it
//   with phase 2;
// - back-propagation: the best (smallest) makespan along the path (visits were counted when
//   the path was selected, so that concurrent threads spread over the tree).
// Before the tree, cheap seeds are scored (natural order; heaviest microbatches first; every
// producer chain's passes of a window of microbatches before their consumers), so that a tiny
// budget already returns a good order; the best seed is the rollouts' first reference.
//
// Threads: each of `threads` workers grows a tree of its own from the seeds' best order, with its
// own random stream (from the seed and its index) and its own reference; the result is the best
// order over the workers (ties: the lowest index). A worker's rollouts do not depend on the clock
// or on the other workers, only on how many it is allowed, so:
// - with a rollout budget (split evenly over the workers) the result is a function of the seed
//   and the thread count;
// - a longer time budget runs every worker's rollouts of a shorter one and then more, so it
//   never returns a worse order (a tree shared by the workers did: which thread expanded what
//   depended on timing, and a 10 s search could end worse than a 1 s one).
// The workers share only the rollout count, the progress record and on_improvement, under a lock.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <random>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/schedule/dual_queue.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

struct pass_search_options {
  double time_budget_ms = 100;   // wall-clock budget for the tree (seeds always run); <= 0: none
  std::size_t max_rollouts = 0;  // 0: unlimited (then a time budget is required)
  unsigned threads = 1;
  std::uint64_t seed = 1;
  double alpha = 4;               // sharpens the exploitation term s^alpha
  double beta = 0.3;              // exploration weight
  double epsilon = 0.15;          // rollout randomness
  interleave_options interleave;  // memory caps and the link for phase 2
  std::stop_token stop;           // stops the search early (the best order so far is returned)
  // Called on every improvement with the new best priority and its makespan, under the search's
  // lock: keep it short (an asynchronous planner offers a plan from it).
  std::function<void(const std::vector<std::uint32_t>& priority, duration makespan)> on_improvement;
};

struct search_progress_point {
  double elapsed_ms = 0;
  std::size_t rollouts = 0;
  double best_makespan_ms = 0;
};

struct pass_search_result {
  std::vector<std::uint32_t> priority;  // per pass; feed to interleave_stages / plan_dip
  duration makespan{};                  // phase 2's estimate for it
  bool within_cap = true;               // false: even the best order had to exceed a memory cap
  std::string found_by;                 // "natural", "heaviest-first", "producers-first" or "tree"
  std::size_t rollouts = 0;
  double elapsed_ms = 0;
  std::vector<search_progress_point> progress;  // every improvement, for quality-vs-time curves
};

namespace detail {

// The priority of each pass under `order`: its position in it.
inline std::vector<std::uint32_t> priority_of(const std::vector<std::uint32_t>& order) {
  std::vector<std::uint32_t> priority(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) priority[order[i]] = std::uint32_t(i);
  return priority;
}

// Scores an order: phase 2's estimated makespan, +infinity-like penalty when over the cap.
struct order_scorer {
  const stage_graph& graph;
  const pass_index& passes;
  const interleave_options& options;

  std::pair<double, bool> operator()(const std::vector<std::uint32_t>& order) const {
    const interleave_result r = interleave_stages(graph, passes, priority_of(order), options);
    // An order that breaks the cap is worse than any that keeps it, but still comparable.
    return {to_seconds(r.estimated_makespan) * (r.over_cap ? 1e3 : 1.0), !r.over_cap};
  }
};

// Passes grouped by (microbatch, chain), each group's subs in order.
struct passes_by_microbatch_chain {
  std::vector<std::vector<std::uint32_t>> groups;
  std::vector<std::uint32_t> group_of;
  explicit passes_by_microbatch_chain(const pass_index& passes) {
    group_of.resize(passes.size());
    for (std::uint32_t s = 0; s < passes.size(); ++s) {
      const auto& seg = passes.at(s);
      if (seg.sub == 0) groups.emplace_back();
      groups.back().push_back(s);
      group_of[s] = std::uint32_t(groups.size() - 1);
    }
  }
};

}  // namespace detail

inline pass_search_result search_pass_order(const stage_graph& graph, const pass_search_options& options) {
  require(options.time_budget_ms > 0 || options.max_rollouts > 0, errc::invalid_argument, "pass search",
          "needs a time budget or a rollout budget");
  require(options.threads >= 1, errc::invalid_argument, "pass search", "needs at least one thread");
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed_ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  const pass_index passes(graph);
  const detail::passes_by_microbatch_chain groups(passes);
  const detail::order_scorer score{graph, passes, options.interleave};
  const std::size_t n = passes.size();

  pass_search_result result;
  double best = std::numeric_limits<double>::infinity();
  std::vector<std::uint32_t> best_order;
  const auto consider = [&](const std::vector<std::uint32_t>& order, double value, bool ok, const char* by) {
    if (value < best) {
      best = value;
      best_order = order;
      result.within_cap = ok;
      result.found_by = by;
      result.progress.push_back({elapsed_ms(), result.rollouts, value * 1e3});
      if (options.on_improvement && ok) options.on_improvement(detail::priority_of(order), seconds(value));
    }
  };

  // Seeds.
  std::vector<std::uint32_t> natural(n);
  for (std::uint32_t i = 0; i < n; ++i) natural[i] = i;
  {
    const auto [v, ok] = score(natural);
    consider(natural, v, ok, "natural");
  }
  {
    // Heaviest microbatches first (longest-processing-time first over microbatches).
    std::vector<double> work(graph.microbatch_count(), 0.0);
    for (const stage& st : graph.stages()) work[st.microbatch.index()] += to_seconds(st.time);
    std::vector<std::uint32_t> order = natural;
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
      const std::size_t ma = passes.at(a).microbatch, mb = passes.at(b).microbatch;
      return work[ma] != work[mb] ? work[ma] > work[mb] : ma < mb;
    });
    const auto [v, ok] = score(order);
    consider(order, v, ok, "heaviest-first");
  }
  {
    // Producer chains run ahead: within each window of `ranks` microbatches, all passes of
    // chain k before those of chain k+1 (encoders fill the pipeline before the LLM starts).
    const std::size_t window = std::max<std::size_t>(1, std::size_t(graph.ranks()));
    std::vector<std::uint32_t> order = natural;
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
      const auto& sa = passes.at(a);
      const auto& sb = passes.at(b);
      const std::size_t wa = sa.microbatch / window, wb = sb.microbatch / window;
      if (wa != wb) return wa < wb;
      return sa.chain != sb.chain ? sa.chain < sb.chain : sa.microbatch < sb.microbatch;
    });
    const auto [v, ok] = score(order);
    consider(order, v, ok, "producers-first");
  }

  // The trees: one per worker.
  struct node {
    std::int32_t parent = -1;
    std::uint32_t pass = 0;  // the choice leading here
    std::vector<std::int32_t> children;
    std::uint32_t tried = 0;       // candidates expanded so far
    std::uint32_t candidates = 0;  // eligible passes at this prefix (set on first visit)
    std::uint32_t visits = 0;
    double best = std::numeric_limits<double>::infinity();
  };
  struct worker_best {
    double value;
    bool ok;
    std::vector<std::uint32_t> order;
  };
  const worker_best seeds_best{best, result.within_cap, best_order};
  std::vector<worker_best> worker_results(options.threads, seeds_best);
  std::mutex mutex;  // guards best, best_order, result (the record shared by the workers)

  const auto worker = [&](unsigned id) {
    const std::size_t quota = options.max_rollouts / options.threads +
                              (id < options.max_rollouts % options.threads ? 1 : 0);
    std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ULL + id);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    worker_best& mine = worker_results[id];
    std::vector<node> tree(1);
    // The rollouts' reference: each pass's position in this worker's best order so far.
    std::vector<std::uint32_t> reference = detail::priority_of(mine.order);
    std::vector<std::uint32_t> next_sub(groups.groups.size());
    std::vector<std::uint32_t> order;
    std::vector<std::int32_t> path;
    const auto eligible = [&] {
      std::vector<std::uint32_t> list;
      for (std::size_t g = 0; g < groups.groups.size(); ++g) {
        if (next_sub[g] < groups.groups[g].size()) list.push_back(groups.groups[g][next_sub[g]]);
      }
      return list;
    };
    const auto place = [&](std::uint32_t s) {
      order.push_back(s);
      ++next_sub[groups.group_of[s]];
    };
    for (std::size_t done = 0;; ++done) {
      if (options.stop.stop_requested() || (options.max_rollouts > 0 && done >= quota) ||
          (options.time_budget_ms > 0 && elapsed_ms() >= options.time_budget_ms)) {
        return;
      }
      std::fill(next_sub.begin(), next_sub.end(), 0);
      order.clear();
      path.assign(1, 0);
      // Selection.
      std::int32_t current = 0;
      while (true) {
        node& v = tree[std::size_t(current)];
        if (order.size() == n) break;
        std::vector<std::uint32_t> candidates = eligible();
        std::sort(candidates.begin(), candidates.end(),
                  [&](std::uint32_t a, std::uint32_t b) { return reference[a] < reference[b]; });
        v.candidates = std::uint32_t(candidates.size());
        if (v.tried < v.candidates) {
          // Expansion: the next untried candidate in reference order.
          std::uint32_t pick = 0;
          for (std::uint32_t c : candidates) {
            bool used = false;
            for (std::int32_t child : v.children) used = used || tree[std::size_t(child)].pass == c;
            if (!used) {
              pick = c;
              break;
            }
          }
          ++tree[std::size_t(current)].tried;
          node child;
          child.parent = current;
          child.pass = pick;
          tree.push_back(child);
          const std::int32_t index = std::int32_t(tree.size() - 1);
          tree[std::size_t(current)].children.push_back(index);
          place(pick);
          path.push_back(index);
          break;
        }
        // All tried: UCB over the children.
        const double log_parent = std::log(double(std::max<std::uint32_t>(v.visits, 1)));
        std::int32_t chosen = -1;
        double chosen_value = -1;
        for (std::int32_t c : v.children) {
          const node& child = tree[std::size_t(c)];
          const double exploit = std::isfinite(child.best) ? std::pow(mine.value / child.best, options.alpha) : 0.0;
          const double explore = options.beta *
                                 std::sqrt(log_parent / double(std::max<std::uint32_t>(child.visits, 1)));
          if (exploit + explore > chosen_value) {
            chosen_value = exploit + explore;
            chosen = c;
          }
        }
        place(tree[std::size_t(chosen)].pass);
        path.push_back(chosen);
        current = chosen;
      }
      for (std::int32_t v : path) ++tree[std::size_t(v)].visits;
      // Rollout.
      while (order.size() < n) {
        const std::vector<std::uint32_t> candidates = eligible();
        std::uint32_t pick = candidates.front();
        if (unit(rng) < options.epsilon) {
          pick = candidates[std::size_t(rng() % candidates.size())];
        } else {
          for (std::uint32_t c : candidates) {
            if (reference[c] < reference[pick]) pick = c;
          }
        }
        place(pick);
      }
      const auto [value, ok] = score(order);
      // Back-propagation.
      for (std::int32_t v : path) {
        node& x = tree[std::size_t(v)];
        x.best = std::min(x.best, value);
      }
      if (value < mine.value) {
        mine = {value, ok, order};
        reference = detail::priority_of(order);
      }
      std::lock_guard lock(mutex);
      ++result.rollouts;
      consider(order, value, ok, "tree");
    }
  };
  if (options.threads == 1) {
    worker(0);
  } else {
    std::vector<std::jthread> pool;
    for (unsigned t = 0; t < options.threads; ++t) pool.emplace_back(worker, t);
  }
  // The best over the workers, the lowest index first among equals: not whichever thread got
  // there first, so that the result does not depend on timing.
  const worker_best* winner = &seeds_best;
  for (const worker_best& w : worker_results) {
    if (w.value < winner->value) winner = &w;
  }
  if (winner != &seeds_best) {
    best = winner->value;
    best_order = winner->order;
    result.within_cap = winner->ok;
    result.found_by = "tree";
  }

  result.priority = detail::priority_of(best_order);
  result.makespan = seconds(result.within_cap ? best : best / 1e3);
  result.elapsed_ms = elapsed_ms();
  return result;
}

}  // namespace dip
