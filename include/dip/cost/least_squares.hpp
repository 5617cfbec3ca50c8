// dip::least_squares_fit: ordinary least squares y ~ X c, with a report of how well it fits.
//
// Profiled cost models turn a few timed runs into a formula (a + b n + c n^2 and friends); a fit
// that silently returns garbage when the runs cannot determine the formula (every run at one
// size) or when an input is NaN would poison every plan built on it. So the fit checks its input,
// refuses rank-deficient problems with a dip::error that says what samples are missing, and
// reports its residuals so a user can judge the fit before trusting it.
#pragma once

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dip/core/error.hpp"

namespace dip {

// The outcome of one fit. Residuals are y - X c in the units of y.
struct fit_report {
  std::vector<double> coefficients;    // one per feature column, in the caller's units
  double rms_residual = 0.0;           // sqrt(mean(residual^2))
  double max_abs_residual = 0.0;       // max |residual|
  double max_relative_residual = 0.0;  // max |residual| / |y| over samples with y != 0 (0 if none)
  double r_squared = 1.0;              // 1 - SS_res / SS_tot; see least_squares_fit for constant y
  std::size_t samples = 0;
};

namespace detail {

// %g, because std::to_string prints 1e-7 as "0.000000" and a user must see the bad value.
inline std::string fit_number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

// How many distinct rows the design has: the rank can be at most that, so it names how many
// distinct sizes a user measured.
inline std::size_t distinct_rows(const Eigen::MatrixXd& design) {
  std::vector<std::vector<double>> rows(static_cast<std::size_t>(design.rows()));
  for (Eigen::Index i = 0; i < design.rows(); ++i) {
    rows[static_cast<std::size_t>(i)].assign(design.row(i).begin(), design.row(i).end());
  }
  std::sort(rows.begin(), rows.end());
  return static_cast<std::size_t>(std::unique(rows.begin(), rows.end()) - rows.begin());
}

}  // namespace detail

// Relative pivot below which the column-pivoted QR of the column-scaled design treats a column
// as a combination of the others. Well above rounding (~1e-16) so that columns equal up to
// rounding (every sample the same size) are caught; far below what real size ranges produce
// (n in [1000, 1010] still gives ~1e-6 for the n^2 column), so thin but real spreads pass.
inline constexpr double least_squares_rank_tolerance = 1e-10;

// Fits c minimising |y - X c|_2, for X = `design` (one row per sample, one column per feature).
// Columns are scaled by their max-abs value first (n^2 is 1e8 times n at n = 1e4, and the QR's
// rank decision must not depend on units), then solved with a column-pivoted Householder QR.
// Throws dip::error(errc::invalid_argument, where, ...) for an empty design, mismatched sizes,
// a NaN or infinite entry (naming the sample), or a rank-deficient design: fewer samples, or
// fewer distinct sizes, than coefficients. `rank_hint`, when given, replaces the generic advice in
// that last message so a caller can say, in its own terms, which samples to add.
// r_squared is 1 - SS_res / SS_tot; for a constant y (SS_tot = 0) it is 1 when the fit reproduces
// y to 1e-9 relative and 0 otherwise.
inline fit_report least_squares_fit(const Eigen::MatrixXd& design, const Eigen::VectorXd& y, std::string_view where,
                                    std::string_view rank_hint = {}) {
  const std::string location(where);
  const Eigen::Index n = design.rows();
  const Eigen::Index k = design.cols();
  require(n > 0, errc::invalid_argument, location, "no samples to fit");
  require(k > 0, errc::invalid_argument, location, "no features (coefficients) to fit");
  require(y.size() == n, errc::invalid_argument, location,
          std::to_string(n) + " feature rows but " + std::to_string(y.size()) + " measured values");
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < k; ++j) {
      require(std::isfinite(design(i, j)), errc::invalid_argument, location,
              "sample " + std::to_string(i) + " feature " + std::to_string(j) + " is " +
                  detail::fit_number_text(design(i, j)) + "; features must be finite");
    }
    require(std::isfinite(y(i)), errc::invalid_argument, location,
            "sample " + std::to_string(i) + " value is " + detail::fit_number_text(y(i)) +
                "; measured values must be finite");
  }

  const auto rank_error = [&](Eigen::Index rank) {
    const std::string what = "cannot determine " + std::to_string(k) + " coefficients from " + std::to_string(n) +
                             " samples at " + std::to_string(detail::distinct_rows(design)) +
                             " distinct sizes (the samples fix only " + std::to_string(rank) + "); ";
    const std::string advice = !rank_hint.empty() ? std::string(rank_hint)
                                                  : "a fit of " + std::to_string(k) +
                                                        " coefficients needs samples at >= " + std::to_string(k) +
                                                        " distinct sizes whose features are not linearly dependent";
    return error(errc::invalid_argument, location, what + advice);
  };
  if (n < k) throw rank_error(n);

  Eigen::VectorXd scale(k);
  for (Eigen::Index j = 0; j < k; ++j) {
    const double largest = design.col(j).cwiseAbs().maxCoeff();
    scale(j) = largest > 0.0 ? largest : 1.0;  // an all-zero column stays zero: rank-deficient
  }
  const Eigen::MatrixXd scaled = design * scale.cwiseInverse().asDiagonal();
  Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(scaled);
  qr.setThreshold(least_squares_rank_tolerance);
  if (qr.rank() < k) throw rank_error(qr.rank());

  const Eigen::VectorXd solution = qr.solve(y).cwiseQuotient(scale);
  const Eigen::VectorXd residual = y - design * solution;

  fit_report report;
  report.coefficients.assign(solution.begin(), solution.end());
  report.samples = static_cast<std::size_t>(n);
  const double ss_res = residual.squaredNorm();
  report.rms_residual = std::sqrt(ss_res / static_cast<double>(n));
  report.max_abs_residual = residual.cwiseAbs().maxCoeff();
  for (Eigen::Index i = 0; i < n; ++i) {
    if (y(i) != 0.0) {
      report.max_relative_residual = std::max(report.max_relative_residual, std::fabs(residual(i)) / std::fabs(y(i)));
    }
  }
  const double ss_tot = (y.array() - y.mean()).square().sum();
  if (ss_tot > 0.0) {
    report.r_squared = 1.0 - ss_res / ss_tot;
  } else {
    report.r_squared = report.max_abs_residual <= 1e-9 * y.cwiseAbs().maxCoeff() ? 1.0 : 0.0;
  }
  return report;
}

// The same fit with the design given as one feature vector per sample (all of one length).
inline fit_report least_squares_fit(std::span<const std::vector<double>> rows, std::span<const double> y,
                                    std::string_view where, std::string_view rank_hint = {}) {
  require(!rows.empty(), errc::invalid_argument, where, "no samples to fit");
  const std::size_t k = rows.front().size();
  Eigen::MatrixXd design(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(k));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    require(rows[i].size() == k, errc::invalid_argument, where,
            "sample " + std::to_string(i) + " has " + std::to_string(rows[i].size()) + " features but sample 0 has " +
                std::to_string(k));
    for (std::size_t j = 0; j < k; ++j) {
      design(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = rows[i][j];
    }
  }
  const Eigen::VectorXd values = Eigen::Map<const Eigen::VectorXd>(y.data(), static_cast<Eigen::Index>(y.size()));
  return least_squares_fit(design, values, where, rank_hint);
}

// Fits y ~ c0 + c1 x + ... + c_degree x^degree; coefficients come lowest power first.
// Needs samples at >= degree + 1 distinct x; throws dip::error naming `where` otherwise, and for
// a negative degree, mismatched sizes, empty or non-finite input.
inline fit_report fit_polynomial(std::span<const double> x, std::span<const double> y, int degree,
                                 std::string_view where) {
  require(degree >= 0, errc::invalid_argument, where, "polynomial degree must be >= 0, got " + std::to_string(degree));
  require(!x.empty(), errc::invalid_argument, where, "no samples to fit");
  require(x.size() == y.size(), errc::invalid_argument, where,
          std::to_string(x.size()) + " x values but " + std::to_string(y.size()) + " y values");
  Eigen::MatrixXd design(static_cast<Eigen::Index>(x.size()), degree + 1);
  for (std::size_t i = 0; i < x.size(); ++i) {
    require(std::isfinite(x[i]), errc::invalid_argument, where,
            "sample " + std::to_string(i) + " x is " + detail::fit_number_text(x[i]) + "; x values must be finite");
    double power = 1.0;
    for (int p = 0; p <= degree; ++p) {
      design(static_cast<Eigen::Index>(i), p) = power;
      power *= x[i];
    }
  }
  const Eigen::VectorXd values = Eigen::Map<const Eigen::VectorXd>(y.data(), static_cast<Eigen::Index>(y.size()));
  const std::string hint = "a degree-" + std::to_string(degree) +
                           " polynomial needs samples at >= " + std::to_string(degree + 1) + " distinct x values";
  return least_squares_fit(design, values, where, hint);
}

}  // namespace dip
