// dip memory solver, the Lagrangian bounds (internal): two relaxations of a component, each
// raised by subgradient ascent with Polyak's step, whose values are lower bounds on its least
// total time; every few steps the relaxed choice is repaired into a primal candidate
// (repair.hpp). Their multipliers also price candidates for the decision diagram and branch
// and bound (reduced costs).
// Cost per ascent step: knapsack rows O(S + C), covers O(sum over candidates of the segments
// their item covers), with S segments and C candidates; plus a repair every 8 steps.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
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
// it leaves unchanged; load and alive are repair scratch.
inline knapsack_dual knapsack_ascent(const memory_component& c, int iterations, component_result& result,
                                     std::vector<double>& load, std::vector<std::uint32_t>& alive) {
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
    if (result.value - dual.bound <= proof_tolerance(result.value) || norm == 0 || step_size.exhausted()) break;
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
  // need_s and q_s of every segment. O(sum of spans + S * A log A).
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
    std::vector<std::vector<double>> savings(m);
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t s = c_.sa[i]; s < c_.sb[i]; ++s) {
        if (need_[s] > 0) savings[s].push_back(c_.k(i, c_.count(i) - 1));
      }
    }
    for (std::size_t s = 0; s < m; ++s) {
      if (need_[s] <= 0) continue;
      std::sort(savings[s].begin(), savings[s].end(), std::greater<double>());
      double sum = 0;
      for (double v : savings[s]) {
        if (sum >= need_[s]) break;
        sum += v;
        fewest_[s] += 1;
      }
    }
  }

  // reduced[cand] for every candidate under (mu, nu) (reduced has one entry per candidate);
  // returns the constant term.
  double price(const std::vector<double>& mu, const std::vector<double>& nu, std::vector<double>& reduced) {
    const std::size_t n = c_.size(), m = c_.slack.size();
    prefix_sums_into(nu, prefix_);
    double constant = 0;
    for (std::size_t s = 0; s < m; ++s) constant += need_[s] > 0 ? mu[s] + nu[s] * fewest_[s] : 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t last = c_.count(i) - 1;
      const double fast = c_.k(i, last), big_nu = prefix_[c_.sb[i]] - prefix_[c_.sa[i]];
      for (std::uint32_t k = 0; k <= last; ++k) {
        const double saved = fast - c_.k(i, k);
        double a = 0;
        if (saved > 0) {
          for (std::size_t s = c_.sa[i]; s < c_.sb[i]; ++s) {
            if (need_[s] > 0 && mu[s] > 0) a += mu[s] * std::min(saved, need_[s]) / need_[s];
          }
          a += big_nu;
        }
        reduced[c_.cand_begin[i] + k] = c_.t(i, k) - a;
      }
    }
    return constant;
  }

  // Subgradient ascent from mu = nu = 0, at most `iterations` steps. Every better dual value
  // raises result.bound (the ascent stops once it proves result.value); every few steps the
  // relaxed choice is repaired into a feasible one that may replace the incumbent. load and
  // alive are repair scratch.
  cover_dual ascent(int iterations, component_result& result, std::vector<double>& load,
                    std::vector<std::uint32_t>& alive) {
    const std::size_t n = c_.size(), m = c_.slack.size();
    std::vector<std::uint32_t> x(n);
    std::vector<double> mu(m, 0.0), nu(m, 0.0), g_mu(m, 0.0), g_nu(m + 1, 0.0), reduced(c_.time.size(), 0.0);
    cover_dual dual{-std::numeric_limits<double>::infinity(), std::vector<double>(m, 0.0), std::vector<double>(m, 0.0)};
    polyak_step step_size;
    for (int it = 0; it < iterations; ++it) {
      double value = price(mu, nu, reduced);
      std::fill(g_mu.begin(), g_mu.end(), 1.0);
      std::fill(g_nu.begin(), g_nu.end(), 0.0);
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
          for (std::size_t s = c_.sa[i]; s < c_.sb[i]; ++s) {
            if (need_[s] > 0) g_mu[s] -= std::min(saved, need_[s]) / need_[s];
          }
          g_nu[c_.sa[i]] -= 1;
          g_nu[c_.sb[i]] += 1;
        }
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
      if (result.value - result.bound <= proof_tolerance(result.value) || norm == 0 || step_size.exhausted()) break;
      const double step = step_size.length(result.value, value, norm);
      for (std::size_t s = 0; s < m; ++s) {
        mu[s] = std::max(0.0, mu[s] + step * g_mu[s]);
        nu[s] = std::max(0.0, nu[s] + step * g_nu[s]);
      }
    }
    return dual;
  }

 private:
  const memory_component& c_;
  std::vector<double> need_;    // per segment (one spare entry): bytes to save from all-fastest
  std::vector<double> fewest_;  // per segment: q_s, the fewest items whose savings reach need_s
  std::vector<double> prefix_;  // scratch: prefix sums of nu
};

}  // namespace dip::detail
