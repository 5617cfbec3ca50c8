// Synthetic workload generators: endless, seeded streams of training samples whose shapes follow
// published statistics of the datasets multimodal models train on.
//
// | name      | sample                                   | shape (and where it comes from)                 |
// |-----------|------------------------------------------|-------------------------------------------------|
// | laion     | 1 image, short caption                   | caption ~ lognormal, mean 16.4 text tokens per  |
// |           |                                          | image (LAION alt-text, as the OBELICS paper     |
// |           |                                          | compares datasets), sigma 0.6, clamped [1, 256] |
// | obelics   | interleaved web document                 | images ~ geometric, mean 2.5 (OBELICS: 353M     |
// |           |                                          | images in 141M documents), at most 30 (its      |
// |           |                                          | filter); text tokens per image log-uniform on   |
// |           |                                          | [0.4, 3115] (heavy-tailed; mean 348, OBELICS    |
// |           |                                          | reports 115B tokens / 353M images = 326)        |
// | scienceqa | at most 1 image, long text               | image with probability 0.476, text ~ lognormal  |
// |           |                                          | (mu 3.876, sigma 0.723: fitted to the ScienceQA |
// |           |                                          | test split in LLaVA format, mean 64, p95 188),  |
// |           |                                          | clamped [10, 2048]                              |
// | video     | 1 clip with its caption                  | clip seconds uniform on [1, 16] (clips up to    |
// |           |                                          | 16 s, the paper's T2V setting; real MSR-VTT     |
// |           |                                          | clips last 10-30 s, see ../shared/data);        |
// |           |                                          | caption ~ lognormal (mu 2.434, sigma 0.415:     |
// |           |                                          | fitted to MSR-VTT's captions, mean 12.5)        |
// | mixed     | a laion, obelics or scienceqa sample     | mix drifts with the sample index i, period      |
// |           |                                          | 4096 samples, phi = 2 pi i / 4096:              |
// |           |                                          | laion 0.5 + 0.3 cos phi, obelics 0.3 - 0.25 cos |
// |           |                                          | phi, scienceqa 0.2 - 0.05 cos phi               |
// Images are at the model's default size (the paper's 728 px images); the model turns clip
// seconds into frames.
//
// Reproducibility: a generator owns its own RNG (splitmix64 seeding xoshiro256**) and samples by
// inverse CDF with plain arithmetic, never std:: distributions (whose algorithms differ between
// standard libraries), so one seed gives the same samples everywhere; only std::log/exp/cos
// enter, and rounding to whole tokens absorbs their last-bit differences.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <string_view>
#include <vector>

#include "dip/batch/trace.hpp"
#include "dip/core/error.hpp"
#include "dip/core/generator.hpp"

namespace dip {

// xoshiro256** seeded through splitmix64 (Blackman and Vigna): small, fast, and the same on every
// platform.
class sample_rng {
 public:
  explicit sample_rng(std::uint64_t seed) noexcept {
    for (std::uint64_t& word : state_) word = splitmix64(seed);
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform on [0, 1) with 53 random bits.
  double uniform() noexcept { return double(next() >> 11) * 0x1.0p-53; }
  double uniform(double low, double high) noexcept { return low + (high - low) * uniform(); }
  bool bernoulli(double p) noexcept { return uniform() < p; }

  // Standard normal by inverse CDF (Acklam's rational approximation, relative error < 1.2e-9).
  double normal() noexcept {
    double u = uniform();
    if (u <= 0.0) u = 0x1.0p-54;
    return inverse_normal_cdf(u);
  }
  double lognormal(double mu, double sigma) noexcept { return std::exp(mu + sigma * normal()); }
  // Log-uniform on [low, high]: heavy-tailed, every decade equally likely.
  double log_uniform(double low, double high) noexcept { return low * std::exp(uniform() * std::log(high / low)); }
  // Number of trials up to the first success, P(k) = (1-p)^(k-1) p, k >= 1 (mean 1/p).
  std::int64_t geometric(double p) noexcept {
    const double u = uniform();
    return 1 + std::int64_t(std::floor(std::log1p(-u) / std::log1p(-p)));
  }

  static double inverse_normal_cdf(double p) noexcept {
    static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                                   1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                   6.680131188771972e+01, -1.328068155288572e+01};
    static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                   -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                   3.754408661907416e+00};
    constexpr double low = 0.02425, high = 1 - low;
    if (p < low) {
      const double q = std::sqrt(-2 * std::log(p));
      return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
             ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > high) {
      const double q = std::sqrt(-2 * std::log1p(-p));
      return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
             ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    const double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::array<std::uint64_t, 4> state_{};
};

// The distribution parameters of the table above, in one place.
namespace synthetic_shapes {
inline constexpr double laion_mean_text_tokens = 16.4;
inline constexpr double laion_text_sigma = 0.6;
inline constexpr double obelics_images_p = 0.4;  // geometric, mean 2.5 images per document
inline constexpr std::int64_t obelics_max_images = 30;
inline constexpr double obelics_min_tokens_per_image = 0.4;
inline constexpr double obelics_max_tokens_per_image = 3115;
inline constexpr double scienceqa_image_probability = 0.476;
inline constexpr double scienceqa_text_mu = 3.876;
inline constexpr double scienceqa_text_sigma = 0.723;
inline constexpr double video_min_seconds = 1;
inline constexpr double video_max_seconds = 16;
inline constexpr double video_caption_mu = 2.434;
inline constexpr double video_caption_sigma = 0.415;
inline constexpr double mixed_period_samples = 4096;
}  // namespace synthetic_shapes

inline std::vector<std::string> synthetic_source_names() { return {"laion", "obelics", "scienceqa", "video", "mixed"}; }

inline bool is_synthetic_source(std::string_view name) {
  for (const std::string& known : synthetic_source_names()) {
    if (known == name) return true;
  }
  return false;
}

// The (laion, obelics, scienceqa) shares of the `mixed` source at sample `index`.
inline std::array<double, 3> mixed_source_weights(std::uint64_t index) noexcept {
  const double phi = 2 * std::numbers::pi * double(index % std::uint64_t(synthetic_shapes::mixed_period_samples)) /
                     synthetic_shapes::mixed_period_samples;
  const double c = std::cos(phi);
  return {0.5 + 0.3 * c, 0.3 - 0.25 * c, 0.2 - 0.05 * c};
}

// An endless, seeded stream of one synthetic source's samples. Copyable: a copy continues
// from the same point with the same state.
class synthetic_samples {
 public:
  // Throws dip::error(not_found) listing the known names for an unknown one.
  synthetic_samples(std::string_view name, std::uint64_t seed) : name_(name), rng_(seed) {
    if (!is_synthetic_source(name)) {
      std::string known;
      for (const std::string& n : synthetic_source_names()) known += (known.empty() ? "" : ", ") + n;
      throw error(errc::not_found, "synthetic data",
                  "unknown source '" + std::string(name) + "' (known: " + known + ")");
    }
  }

  const std::string& name() const noexcept { return name_; }
  // Samples drawn so far (the index of the next one).
  std::uint64_t drawn() const noexcept { return drawn_; }

  training_sample next() {
    const std::uint64_t index = drawn_++;
    if (name_ == "laion") return laion();
    if (name_ == "obelics") return obelics();
    if (name_ == "scienceqa") return scienceqa();
    if (name_ == "video") return video();
    const std::array<double, 3> w = mixed_source_weights(index);
    const double u = rng_.uniform();
    if (u < w[0]) return laion();
    if (u < w[0] + w[1]) return obelics();
    return scienceqa();
  }

 private:
  static std::int64_t clamp_round(double x, std::int64_t low, std::int64_t high) {
    const std::int64_t n = std::int64_t(std::llround(x));
    return n < low ? low : n > high ? high : n;
  }

  training_sample laion() {
    using namespace synthetic_shapes;
    const double sigma = laion_text_sigma;
    const double mu = std::log(laion_mean_text_tokens) - sigma * sigma / 2;  // lognormal mean = 16.4
    return {clamp_round(rng_.lognormal(mu, sigma), 1, 256), {trace_image::default_size()}, {}};
  }
  training_sample obelics() {
    using namespace synthetic_shapes;
    std::int64_t images = rng_.geometric(obelics_images_p);
    if (images > obelics_max_images) images = obelics_max_images;
    const double per_image = rng_.log_uniform(obelics_min_tokens_per_image, obelics_max_tokens_per_image);
    const std::int64_t text = clamp_round(per_image * double(images), 1, std::int64_t{1} << 30);
    return {text, std::vector<trace_image>(std::size_t(images)), {}};
  }
  training_sample scienceqa() {
    using namespace synthetic_shapes;
    const bool has_image = rng_.bernoulli(scienceqa_image_probability);
    const std::int64_t text = clamp_round(rng_.lognormal(scienceqa_text_mu, scienceqa_text_sigma), 10, 2048);
    return {text, std::vector<trace_image>(has_image ? 1 : 0), {}};
  }
  training_sample video() {
    using namespace synthetic_shapes;
    const double seconds = rng_.uniform(video_min_seconds, video_max_seconds);
    const std::int64_t caption = clamp_round(rng_.lognormal(video_caption_mu, video_caption_sigma), 1, 512);
    return {caption, {}, {trace_clip{seconds}}};
  }

  std::string name_;
  sample_rng rng_;
  std::uint64_t drawn_ = 0;
};

namespace detail {
inline generator<training_sample> samples_of(synthetic_samples source) {
  for (;;) co_yield source.next();
}
}  // namespace detail

// The same stream as a coroutine generator (endless: take what you need, e.g. with
// std::views::take). An unknown name throws here, not at the first begin(); the generator owns
// its source, so nothing it reads can dangle.
inline generator<training_sample> synthetic_stream(std::string_view name, std::uint64_t seed) {
  return detail::samples_of(synthetic_samples(name, seed));
}

}  // namespace dip
