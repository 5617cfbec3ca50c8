// The paper's dynamic workload (`dip-plan --data dynamic`): the number of images per microbatch
// rises and falls over the iterations, so the modality mix a static plan was tuned for stops
// holding. Each microbatch of iteration i holds a count of images drawn uniformly from
// [low(i), high(i)] (integers, both ends included):
//
//   iteration i (1-based)   low(i)                        high(i)
//   1 .. 5                  0 -> 16 linearly (4 per step) 32
//   5 .. 20                 16 -> 0 linearly              32 -> 0 linearly
//   20 and after            0                             0 (text only)
//
// Linear values are rounded to the nearest integer (halves away from zero). The microbatch
// itself is DESIGN.md's packed sequence (8192 LLM tokens, images at the default size, the rest
// text), see batch/source.hpp; this header only draws the counts, reproducibly from a seed
// (sample_rng, no std:: distributions).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dip/batch/synthetic.hpp"
#include "dip/core/error.hpp"

namespace dip {

struct image_count_bounds {
  std::size_t low = 0;
  std::size_t high = 0;
  friend bool operator==(const image_count_bounds&, const image_count_bounds&) = default;
};

namespace dynamic_workload {
inline constexpr std::uint64_t rise_until = 5;   // low reaches its peak at this iteration
inline constexpr std::uint64_t fall_until = 20;  // both bounds reach 0 here and stay there
inline constexpr double peak_low = 16;
inline constexpr double peak_high = 32;
}  // namespace dynamic_workload

// Images per microbatch allowed at 1-based `iteration` (0 is treated as 1).
inline image_count_bounds dynamic_image_bounds(std::uint64_t iteration) noexcept {
  using namespace dynamic_workload;
  const double i = double(iteration < 1 ? 1 : iteration);
  const auto round = [](double x) { return std::size_t(std::llround(x)); };
  if (i <= double(rise_until)) {
    return {round(peak_low * (i - 1) / double(rise_until - 1)), round(peak_high)};
  }
  if (i <= double(fall_until)) {
    const double left = (double(fall_until) - i) / double(fall_until - rise_until);  // 1 -> 0
    return {round(peak_low * left), round(peak_high * left)};
  }
  return {0, 0};
}

// Draws each microbatch's image count, iteration after iteration. Copyable: a copy continues
// from the same iteration with the same random state.
class dynamic_image_counts {
 public:
  explicit dynamic_image_counts(std::uint64_t seed) noexcept : rng_(seed) {}

  // The 1-based iteration the next call to next_batch draws for.
  std::uint64_t next_iteration() const noexcept { return iteration_ + 1; }

  // One count per microbatch of the next iteration, each within dynamic_image_bounds.
  std::vector<std::size_t> next_batch(std::size_t microbatches) {
    require(microbatches >= 1, errc::invalid_argument, "--microbatches", "must be >= 1");
    const image_count_bounds b = dynamic_image_bounds(++iteration_);
    std::vector<std::size_t> counts(microbatches);
    for (std::size_t& c : counts) {
      const double span = double(b.high - b.low + 1);
      const std::size_t offset = std::size_t(rng_.uniform() * span);  // uniform() < 1: offset <= high - low
      c = b.low + offset;
    }
    return counts;
  }

 private:
  sample_rng rng_;
  std::uint64_t iteration_ = 0;
};

}  // namespace dip
