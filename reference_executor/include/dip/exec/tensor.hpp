// dip::exec::tensor: the reference executor's dense matrix, row-major doubles on Eigen.
//
// A row is one token, a column one feature. Double precision keeps finite-difference checks
// tight; row-major matches how activations of consecutive tokens sit in memory on a GPU.
// A `tensor_pack` is what one message of the plan carries: several tensors (one per
// sub-microbatch and module), in an order both ends compute from the plan.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include <Eigen/Dense>

namespace dip::exec {

using tensor = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_vector = Eigen::Matrix<double, 1, Eigen::Dynamic>;

struct tensor_shape {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  friend bool operator==(const tensor_shape&, const tensor_shape&) = default;
};

inline tensor_shape shape_of(const tensor& t) noexcept { return {t.rows(), t.cols()}; }

inline std::string to_string(const tensor_shape& s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

using tensor_pack = std::vector<tensor>;

inline std::size_t byte_size(const tensor& t) noexcept { return std::size_t(t.size()) * sizeof(double); }

inline std::size_t byte_size(const tensor_pack& pack) noexcept {
  std::size_t total = 0;
  for (const tensor& t : pack) total += byte_size(t);
  return total;
}

// A deterministic seed from a few integers (splitmix64 steps), so that parameters and inputs
// depend only on what they are for, never on the order in which they are created.
inline std::uint64_t mix_seed(std::initializer_list<std::uint64_t> parts) noexcept {
  std::uint64_t h = 0x9e3779b97f4a7c15ull;
  for (std::uint64_t p : parts) {
    h ^= p + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h += 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

// rows x cols values uniform in [-scale, scale) from `seed`. The values come from the 64-bit
// Mersenne Twister's raw output, not std::uniform_real_distribution, so they are the same with
// every standard library.
inline tensor random_tensor(std::int64_t rows, std::int64_t cols, double scale, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  tensor t(rows, cols);
  for (std::int64_t i = 0; i < t.size(); ++i) {
    const double unit = double(rng() >> 11) * 0x1.0p-53;  // [0, 1)
    t.data()[i] = (2.0 * unit - 1.0) * scale;
  }
  return t;
}

// Largest absolute elementwise difference (infinity when the shapes differ).
inline double max_abs_difference(const tensor& a, const tensor& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return INFINITY;
  if (a.size() == 0) return 0.0;
  return (a - b).cwiseAbs().maxCoeff();
}

// Bitwise equality of values (and shapes): what the executor promises against the sequential run.
inline bool bitwise_equal(const tensor& a, const tensor& b) noexcept {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (std::int64_t i = 0; i < a.size(); ++i) {
    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bitwise equality is the point
    if (std::memcmp(a.data() + i, b.data() + i, sizeof(double)) != 0) return false;
  }
  return true;
}

}  // namespace dip::exec
