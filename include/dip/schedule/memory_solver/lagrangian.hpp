// dip memory solver, the Lagrangian bounds (internal): two relaxations of a component, each
// raised by subgradient ascent with Polyak's step, whose values are lower bounds on its least
// total time; every few steps the relaxed choice is repaired into a primal candidate
// (repair.hpp). Their multipliers also price candidates for the decision diagram and branch
// and bound (reduced costs).
// Cost per ascent step: knapsack rows O(S + C), covers O(S + R) with R the runs over which a
// candidate's saving covers all or none of the needs (cover_relaxation::cut_runs: about three
// per candidate), with S segments and C candidates; plus a repair every 8 steps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <stop_token>
#include <vector>

#include "dip/schedule/memory_solver/component.hpp"
#include "dip/schedule/memory_solver/repair.hpp"

namespace dip::detail {

// Polyak's step length for the subgradient ascents below: theta * (target - value) / |g|^2,
// theta starting at 2 and halving after 8 steps without a better dual value.
struct polyak_step {
  double theta = 2.0;
  int stall = 0;

  // Records a step's dual value; true when it beats `best` (updated), so the caller keeps the
  // multipliers that gave it.
  bool record(double value, double& best) {
    if (value > best) {
      best = value;
      stall = 0;
      return true;
    }
    if (++stall >= 8) {
      theta *= 0.5;
      stall = 0;
    }
    return false;
  }
  bool exhausted() const noexcept { return theta < 1e-6; }
  double length(double target, double value, double norm) const noexcept { return theta * (target - value) / norm; }
};

// --- first relaxation: the knapsack rows -----------------------------------------------------

struct knapsack_dual {
  double bound = 0;            // the best dual value, at least the bound the ascent started from
  std::vector<double> lambda;  // per segment: the multipliers that gave it (all 0 if none beat the start)
};

// The knapsack rows sum_i dk_i <= slack_s with multipliers lambda_s,
// L = sum_i min_c (t_c + dk_c Lambda_i) - sum_s lambda_s slack_s (Lambda_i: lambda summed over
// i's segments). Subgradient steps with Polyak's rule from lambda = 0, at most `iterations`;
// every few steps the relaxed choice is repaired into a feasible one that may replace the
// incumbent of `result` (whose value is the ascent's target). Starts from result.bound, which
// it leaves unchanged; load and alive are repair scratch. Ends early once `stop` is requested.
inline knapsack_dual knapsack_ascent(const memory_component& c, int iterations, component_result& result,
                                     std::vector<double>& load, std::vector<std::uint32_t>& alive,
                                     const std::stop_token& stop = {}) {
  const std::size_t n = c.size(), m = c.slack.size();
  std::vector<std::uint32_t> x(n);
  std::vector<double> lambda(m, 0.0), lambda_prefix(m + 1, 0.0), g(m + 1, 0.0);
  knapsack_dual dual{result.bound, std::vector<double>(m, 0.0)};
  polyak_step step_size;
  for (int it = 0; it < iterations; ++it) {
    prefix_sums_into(lambda, lambda_prefix);
    double value = 0;
    for (std::size_t s = 0; s < m; ++s) value -= lambda[s] * c.slack[s];
    std::fill(g.begin(), g.end(), 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      const double big_lambda = lambda_prefix[c.sb[i]] - lambda_prefix[c.sa[i]];
      std::uint32_t best = 0;
      double best_value = std::numeric_limits<double>::infinity();
      for (std::uint32_t k = 0; k < c.count(i); ++k) {
        const double v = c.t(i, k) + c.k(i, k) * big_lambda;
        if (v <= best_value) {
          best_value = v;
          best = k;
        }
      }
      value += best_value;
      x[i] = best;
      g[c.sa[i]] += c.k(i, best);
      g[c.sb[i]] -= c.k(i, best);
    }
    if (step_size.record(value, dual.bound)) dual.lambda = lambda;
    double norm = 0, run = 0;
    for (std::size_t s = 0; s < m; ++s) {
      run += g[s];
      g[s] = run - c.slack[s];
      if (lambda[s] > 0 || g[s] > 0) norm += g[s] * g[s];
    }
    if (it % 8 == 0 || norm == 0) repair_and_offer(c, x, result, load, alive);
    if (result.value - dual.bound <= proof_tolerance(result.value) || norm == 0 || step_size.exhausted() ||
        stop.stop_requested()) {
      break;
    }
    const double step = step_size.length(result.value, value, norm);
    for (std::size_t s = 0; s < m; ++s) lambda[s] = std::max(0.0, lambda[s] + step * g[s]);
  }
  return dual;
}

// Reduced costs under knapsack multipliers: reduced[cand] = t + dk * Lambda_i for every
// candidate (reduced has one entry per candidate); returns the constant term -sum_s lambda_s slack_s.
inline double knapsack_reduced_costs(const memory_component& c, const std::vector<double>& lambda,
                                     std::vector<double>& reduced) {
  const std::size_t n = c.size(), m = c.slack.size();
  std::vector<double> lambda_prefix(m + 1, 0.0);
  prefix_sums_into(lambda, lambda_prefix);
  double constant = 0;
  for (std::size_t s = 0; s < m; ++s) constant -= lambda[s] * c.slack[s];
  for (std::size_t i = 0; i < n; ++i) {
    const double big_lambda = lambda_prefix[c.sb[i]] - lambda_prefix[c.sa[i]];
    for (std::uint32_t k = 0; k < c.count(i); ++k) reduced[c.cand_begin[i] + k] = c.t(i, k) + c.k(i, k) * big_lambda;
  }
  return constant;
}

// --- second relaxation: truncated knapsacks and cardinality covers ----------------------------
//
// Measured from the all-fastest choice, segment s needs need_s bytes saved. Two families of
// valid inequalities, each item's saving sav (fastest kept - chosen kept):
//   truncated knapsack  sum_i min(sav_i, need_s) / need_s >= 1   (multiplier mu_s)
//   cardinality cover   #{i alive: sav_i > 0} >= q_s             (multiplier nu_s)
// where q_s is the fewest alive items whose largest savings reach need_s. Their Lagrangian,
// L = sum_i min_c (t_c - A_ic - [sav_c > 0] N_i) + sum_s (mu_s + nu_s q_s), with A_ic the
// mu-weighted truncated savings over i's segments and N_i the sum of nu over them, is a lower
// bound for any mu, nu >= 0 (truncation keeps it stronger than the plain knapsack rows when
// one item saves more than a segment needs); subgradient steps raise it.

struct cover_dual {
  double bound = -std::numeric_limits<double>::infinity();  // the best dual value (-inf: no step)
  std::vector<double> mu, nu;                               // per segment: the multipliers that gave it
};

// Holds a reference to the component: it must outlive the relaxation.
class cover_relaxation {
 public:
  // need_s and q_s of every segment. O(n log n + S + the additions while segments fall short).
  explicit cover_relaxation(const memory_component& c)
      : c_(c), need_(c.slack.size() + 1, 0.0), fewest_(c.slack.size(), 0.0), prefix_(c.slack.size() + 1, 0.0) {
    const std::size_t n = c_.size(), m = c_.slack.size();
    for (std::size_t i = 0; i < n; ++i) {
      const double k = c_.k(i, c_.count(i) - 1);
      need_[c_.sa[i]] += k;
      need_[c_.sb[i]] -= k;
    }
    for (std::size_t s = 1; s < m; ++s) need_[s] += need_[s - 1];
    for (std::size_t s = 0; s < m; ++s) need_[s] -= c_.slack[s];
    // q_s: the items by largest saving, each adding to the segments it covers that are still
    // short (the sums of a per-segment sort, in the same order); next_short[s] skips to the first
    // short segment at or after s (path halving), so covered segments cost nothing more.
    std::vector<std::uint32_t> by_saving(n);
    std::iota(by_saving.begin(), by_saving.end(), 0u);
    std::stable_sort(by_saving.begin(), by_saving.end(), [&](std::uint32_t a, std::uint32_t b) {
      return c_.k(a, c_.count(a) - 1) > c_.k(b, c_.count(b) - 1);
    });
    std::vector<double> sum(m, 0.0);
    std::vector<std::uint32_t> next_short(m + 1);
    for (std::size_t s = 0; s <= m; ++s) next_short[s] = std::uint32_t(s < m && need_[s] <= 0 ? s + 1 : s);
    const auto first_short = [&](std::uint32_t s) {
      while (next_short[s] != s) {
        next_short[s] = next_short[next_short[s]];
        s = next_short[s];
      }
      return s;
    };
    for (const std::uint32_t i : by_saving) {
      const double saving = c_.k(i, c_.count(i) - 1);
      for (std::uint32_t s = first_short(c_.sa[i]); s < c_.sb[i]; s = first_short(s + 1)) {
        sum[s] += saving;
        fewest_[s] += 1;
        if (sum[s] >= need_[s]) next_short[s] = s + 1;
      }
    }
    cut_runs();
  }

  // reduced[cand] for every candidate under (mu, nu) (reduced has one entry per candidate);
  // returns the constant term.
  double price(const std::vector<double>& mu, const std::vector<double>& nu, std::vector<double>& reduced) {
    const std::size_t n = c_.size(), m = c_.slack.size();
    prefix_sums_into(nu, prefix_);
    // Over the segments that need bytes: a saving adds a segment's whole mu where it covers the
    // need, saved * mu / need where it does not; prefix sums of both make each run O(1).
    double constant = 0;
    for (std::size_t s = 0; s < m; ++s) {
      const bool needs = need_[s] > 0;
      constant += needs ? mu[s] + nu[s] * fewest_[s] : 0.0;
      mu_prefix_[s + 1] = mu_prefix_[s] + (needs ? mu[s] : 0.0);
      mu_per_need_prefix_[s + 1] = mu_per_need_prefix_[s] + (needs ? mu[s] / need_[s] : 0.0);
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t last = c_.count(i) - 1;
      const double fast = c_.k(i, last), big_nu = prefix_[c_.sb[i]] - prefix_[c_.sa[i]];
      for (std::uint32_t k = 0; k <= last; ++k) {
        const std::size_t cand = c_.cand_begin[i] + k;
        const double saved = fast - c_.k(i, k);
        double a = 0;
        if (saved > 0) {
          for (std::uint32_t r = run_begin_[cand]; r < run_begin_[cand + 1]; ++r) {
            const coverage_run& run = runs_[r];
            a += run.covered ? mu_prefix_[run.to] - mu_prefix_[run.from]
                             : saved * (mu_per_need_prefix_[run.to] - mu_per_need_prefix_[run.from]);
          }
          a += big_nu;
        }
        reduced[cand] = c_.t(i, k) - a;
      }
    }
    return constant;
  }

  // Subgradient ascent from mu = nu = 0, at most `iterations` steps. Every better dual value
  // raises result.bound (the ascent stops once it proves result.value); every few steps the
  // relaxed choice is repaired into a feasible one that may replace the incumbent. load and
  // alive are repair scratch. Ends early once `stop` is requested.
  cover_dual ascent(int iterations, component_result& result, std::vector<double>& load,
                    std::vector<std::uint32_t>& alive, const std::stop_token& stop = {}) {
    const std::size_t n = c_.size(), m = c_.slack.size();
    std::vector<std::uint32_t> x(n);
    std::vector<double> mu(m, 0.0), nu(m, 0.0), g_mu(m, 0.0), g_nu(m + 1, 0.0), reduced(c_.time.size(), 0.0);
    // The truncated savings' subgradient as difference arrays over the chosen candidates' runs:
    // where a saving covers the need it adds 1 (covered), elsewhere saved / need (partial).
    std::vector<double> covered(m + 1, 0.0), partial(m + 1, 0.0);
    cover_dual dual{-std::numeric_limits<double>::infinity(), std::vector<double>(m, 0.0), std::vector<double>(m, 0.0)};
    polyak_step step_size;
    for (int it = 0; it < iterations; ++it) {
      double value = price(mu, nu, reduced);
      std::fill(g_nu.begin(), g_nu.end(), 0.0);
      std::fill(covered.begin(), covered.end(), 0.0);
      std::fill(partial.begin(), partial.end(), 0.0);
      for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t best = 0;
        double best_value = std::numeric_limits<double>::infinity();
        for (std::uint32_t k = 0; k < c_.count(i); ++k) {
          const double v = reduced[c_.cand_begin[i] + k];
          if (v <= best_value) {  // ties to the faster (later) candidate
            best_value = v;
            best = k;
          }
        }
        value += best_value;
        x[i] = best;
        const double saved = c_.k(i, c_.count(i) - 1) - c_.k(i, best);
        if (saved > 0) {
          const std::size_t cand = c_.cand_begin[i] + best;
          for (std::uint32_t r = run_begin_[cand]; r < run_begin_[cand + 1]; ++r) {
            const coverage_run& run = runs_[r];
            std::vector<double>& diff = run.covered ? covered : partial;
            const double add = run.covered ? 1.0 : saved;
            diff[run.from] += add;
            diff[run.to] -= add;
          }
          g_nu[c_.sa[i]] -= 1;
          g_nu[c_.sb[i]] += 1;
        }
      }
      double covered_run = 0, partial_run = 0;
      for (std::size_t s = 0; s < m; ++s) {
        covered_run += covered[s];
        partial_run += partial[s];
        g_mu[s] = need_[s] > 0 ? 1.0 - covered_run - partial_run / need_[s] : 1.0;
      }
      if (step_size.record(value, dual.bound)) {
        result.bound = std::max(result.bound, value);
        dual.mu = mu;
        dual.nu = nu;
      }
      double norm = 0, run = 0;
      for (std::size_t s = 0; s < m; ++s) {
        run += g_nu[s];
        g_nu[s] = fewest_[s] + run;
        if (need_[s] <= 0) {
          g_mu[s] = g_nu[s] = 0;
          continue;
        }
        if (mu[s] > 0 || g_mu[s] > 0) norm += g_mu[s] * g_mu[s];
        if (nu[s] > 0 || g_nu[s] > 0) norm += g_nu[s] * g_nu[s];
      }
      if (it % 8 == 0 || norm == 0) repair_and_offer(c_, x, result, load, alive);
      if (result.value - result.bound <= proof_tolerance(result.value) || norm == 0 || step_size.exhausted() ||
          stop.stop_requested()) {
        break;
      }
      const double step = step_size.length(result.value, value, norm);
      for (std::size_t s = 0; s < m; ++s) {
        mu[s] = std::max(0.0, mu[s] + step * g_mu[s]);
        nu[s] = std::max(0.0, nu[s] + step * g_nu[s]);
      }
    }
    return dual;
  }

 private:
  // A maximal run of segments [from, to) of an item over which one candidate's saving covers
  // every need (need <= saved), or none; segments that need nothing join either kind.
  struct coverage_run {
    std::uint32_t from = 0, to = 0;
    bool covered = false;
  };

  // The runs of every candidate that saves bytes, cut once: the needs and the savings do not
  // change during the ascent, only the multipliers do. Unimodal needs (memory rising through the
  // forwards, falling through the backwards) give at most three runs per candidate, so pricing
  // a candidate costs O(1) rather than the segments its item covers.
  void cut_runs() {
    const std::size_t m = c_.slack.size();
    run_begin_.assign(c_.time.size() + 1, 0);
    for (std::size_t i = 0; i < c_.size(); ++i) {
      const std::uint32_t last = c_.count(i) - 1;
      for (std::uint32_t k = 0; k <= last; ++k) {
        const std::size_t cand = c_.cand_begin[i] + k;
        run_begin_[cand] = std::uint32_t(runs_.size());
        const double saved = c_.k(i, last) - c_.k(i, k);
        if (saved <= 0) continue;
        const std::size_t first = runs_.size();
        for (std::uint32_t s = c_.sa[i]; s < c_.sb[i]; ++s) {
          if (need_[s] <= 0) continue;
          const bool covered = need_[s] <= saved;
          if (runs_.size() > first && runs_.back().covered == covered) {
            runs_.back().to = s + 1;
          } else {
            runs_.push_back({s, s + 1, covered});
          }
        }
      }
    }
    run_begin_.back() = std::uint32_t(runs_.size());
    mu_prefix_.assign(m + 1, 0.0);
    mu_per_need_prefix_.assign(m + 1, 0.0);
  }

  const memory_component& c_;
  std::vector<double> need_;                            // per segment (one spare entry): bytes to save from all-fastest
  std::vector<double> fewest_;                          // per segment: q_s, the fewest items whose savings reach need_s
  std::vector<double> prefix_;                          // scratch: prefix sums of nu
  std::vector<coverage_run> runs_;                      // per saving candidate, in candidate order
  std::vector<std::uint32_t> run_begin_;                // candidate c's runs: [run_begin_[c], run_begin_[c + 1])
  std::vector<double> mu_prefix_, mu_per_need_prefix_;  // scratch of price()
};

}  // namespace dip::detail
