// Synthetic generators: reproducible from the seed, and shaped as documented in synthetic.hpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <dip/batch/synthetic.hpp>

namespace {

std::vector<dip::training_sample> draw(const std::string& name, std::uint64_t seed, std::size_t n) {
  dip::synthetic_samples source(name, seed);
  std::vector<dip::training_sample> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(source.next());
  return out;
}

double mean_of(const std::vector<double>& xs) {
  double s = 0;
  for (double x : xs) s += x;
  return s / double(xs.size());
}

}  // namespace

TEST_CASE("the RNG is the documented xoshiro256** and its inverse normal CDF is accurate") {
  dip::sample_rng a(42), b(42), c(43);
  std::vector<std::uint64_t> xa, xb, xc;
  for (int i = 0; i < 100; ++i) {
    xa.push_back(a.next());
    xb.push_back(b.next());
    xc.push_back(c.next());
  }
  CHECK(xa == xb);
  CHECK(xa != xc);
  // Pinned: the stream must not change between platforms or releases.
  dip::sample_rng pinned(1);
  CHECK(pinned.next() == 0xb3f2af6d0fc710c5ULL);
  for (int i = 0; i < 10000; ++i) {
    const double u = a.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
  }
  CHECK(dip::sample_rng::inverse_normal_cdf(0.5) == doctest::Approx(0.0));
  CHECK(dip::sample_rng::inverse_normal_cdf(0.975) == doctest::Approx(1.959964).epsilon(1e-6));
  CHECK(dip::sample_rng::inverse_normal_cdf(0.001) == doctest::Approx(-3.090232).epsilon(1e-6));
  CHECK(dip::sample_rng::inverse_normal_cdf(0.99999) == doctest::Approx(4.264891).epsilon(1e-6));
}

TEST_CASE("same seed, same samples; different seed, different samples") {
  for (const std::string& name : dip::synthetic_source_names()) {
    CAPTURE(name);
    const auto first = draw(name, 7, 500);
    CHECK(first == draw(name, 7, 500));
    CHECK(first != draw(name, 8, 500));
    // The coroutine stream yields the same samples.
    std::vector<dip::training_sample> streamed;
    for (const dip::training_sample& s : dip::synthetic_stream(name, 7)) {
      streamed.push_back(s);
      if (streamed.size() == 500) break;
    }
    CHECK(streamed == first);
  }
}

TEST_CASE("laion: one image and a short caption, 16.4 text tokens on average") {
  std::vector<double> text;
  for (const auto& s : draw("laion", 1, 20000)) {
    REQUIRE(s.images.size() == 1);
    REQUIRE(s.clips.empty());
    REQUIRE(s.text_tokens >= 1);
    text.push_back(double(s.text_tokens));
  }
  CHECK(mean_of(text) == doctest::Approx(dip::synthetic_shapes::laion_mean_text_tokens).epsilon(0.03));
}

TEST_CASE("obelics: several images, heavy-tailed text per image") {
  std::vector<double> images, per_image;
  for (const auto& s : draw("obelics", 1, 20000)) {
    REQUIRE(s.images.size() >= 1);
    REQUIRE(s.images.size() <= 30);
    images.push_back(double(s.images.size()));
    const double ratio = double(s.text_tokens) / double(s.images.size());
    REQUIRE(ratio <= 3115.5);
    per_image.push_back(ratio);
  }
  CHECK(mean_of(images) == doctest::Approx(2.5).epsilon(0.03));
  CHECK(*std::max_element(images.begin(), images.end()) >= 10);
  std::sort(per_image.begin(), per_image.end());
  const double p50 = per_image[per_image.size() / 2], p99 = per_image[per_image.size() * 99 / 100];
  CHECK(p50 == doctest::Approx(std::sqrt(0.4 * 3115)).epsilon(0.15));  // log-uniform median
  CHECK(p99 > 20 * p50);                                               // heavy tail
  CHECK(per_image.front() < 1.0);
  CHECK(mean_of(per_image) == doctest::Approx(348).epsilon(0.08));
}

TEST_CASE("scienceqa: at most one image (about half have one), longer text") {
  std::size_t with_image = 0;
  std::vector<double> text;
  const auto samples = draw("scienceqa", 1, 20000);
  for (const auto& s : samples) {
    REQUIRE(s.images.size() <= 1);
    with_image += s.images.size();
    REQUIRE(s.text_tokens >= 10);
    text.push_back(double(s.text_tokens));
  }
  CHECK(double(with_image) / double(samples.size()) == doctest::Approx(0.476).epsilon(0.03));
  CHECK(mean_of(text) == doctest::Approx(64).epsilon(0.08));  // the real test split: 64
}

TEST_CASE("video: one clip of at most 16 s with a caption") {
  std::vector<double> seconds;
  for (const auto& s : draw("video", 1, 20000)) {
    REQUIRE(s.clips.size() == 1);
    REQUIRE(s.images.empty());
    REQUIRE(s.clips[0].seconds >= 1.0);
    REQUIRE(s.clips[0].seconds <= 16.0);
    REQUIRE(s.text_tokens >= 1);
    seconds.push_back(s.clips[0].seconds);
  }
  CHECK(mean_of(seconds) == doctest::Approx(8.5).epsilon(0.03));
}

TEST_CASE("mixed: the blend drifts over the stream") {
  for (std::uint64_t i : {0ULL, 1000ULL, 2048ULL, 3000ULL, 4096ULL}) {
    const auto w = dip::mixed_source_weights(i);
    CHECK(w[0] + w[1] + w[2] == doctest::Approx(1.0));
    CHECK(w[0] > 0);
    CHECK(w[1] > 0);
    CHECK(w[2] > 0);
  }
  CHECK(dip::mixed_source_weights(0)[1] == doctest::Approx(0.05));     // mostly laion at first
  CHECK(dip::mixed_source_weights(2048)[1] == doctest::Approx(0.55));  // mostly obelics half a period on
  // Images per sample follow the mix: about 1.0 at the start, about 1.7 half a period later.
  const auto samples = draw("mixed", 3, 4096);
  const auto images_in = [&](std::size_t from, std::size_t to) {
    double n = 0;
    for (std::size_t i = from; i < to; ++i) n += double(samples[i].images.size());
    return n / double(to - from);
  };
  CHECK(images_in(0, 400) < 1.3);
  CHECK(images_in(1848, 2248) > 1.4);
}

TEST_CASE("an unknown source lists the known ones") {
  try {
    dip::synthetic_samples bad("laoin", 1);
    FAIL("unknown source accepted");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::not_found);
    CHECK(std::string(e.what()).find("known: laion, obelics, scienceqa, video, mixed") != std::string::npos);
  }
  CHECK_THROWS_AS(dip::synthetic_stream("nope", 1), dip::error);
}
