// Tests for dip::least_squares_fit, dip::fit_polynomial and dip::profiled_cost_model: known
// coefficients are recovered (exactly without noise, within a few percent with 1% noise), bad and
// rank-deficient input is refused with the right error, and the profiled model prices layers,
// chunks and packed sequences as the ground truth does.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dip/cost/cost_model.hpp"
#include "dip/cost/fixed_table.hpp"
#include "dip/cost/least_squares.hpp"
#include "dip/cost/profiled.hpp"

#include "test_files.hpp"

namespace {

using dip::bytes;
using dip::duration;
using dip::errc;
using dip::profile_basis;
using dip::profile_sample;
using dip::work_unit;

// Ground truth a + b * tokens + c * token_pairs (a + b n + c n^2 for one sequence).
struct truth {
  double a = 0.0;
  double b = 0.0;
  double c = 0.0;
  double operator()(double n) const { return a + b * n + c * n * n; }
  double at(const work_unit& w) const { return a + b * w.tokens + c * w.token_pairs; }
};

// Five truths, one per output of a layer, each with its own shape.
struct layer_truth {
  truth forward;
  truth backward_input;
  truth backward_weight;
  truth activation;
  truth output;

  profile_sample sample(const work_unit& w) const {
    return {w,
            duration(forward.at(w)),
            duration(backward_input.at(w)),
            duration(backward_weight.at(w)),
            bytes(activation.at(w)),
            bytes(output.at(w))};
  }
};

const layer_truth vit_block{{1e-3, 2e-7, 1.5e-11},
                            {1.2e-3, 2.5e-7, 2e-11},
                            {0.8e-3, 1.8e-7, 0.0},
                            {4096.0, 3.0e4, 16.0},
                            {0.0, 2048.0, 0.0}};
const layer_truth embedding_layer{{2e-4, 1e-8, 0.0},
                                  {1e-4, 5e-9, 0.0},
                                  {3e-4, 2e-8, 0.0},
                                  {0.0, 8192.0, 0.0},
                                  {0.0, 8192.0, 0.0}};

std::vector<profile_sample> single_sequence_samples(const layer_truth& t, const std::vector<double>& lengths) {
  std::vector<profile_sample> samples;
  for (double n : lengths) samples.push_back(t.sample(work_unit::sequence(n)));
  return samples;
}

dip::module_spec module_with_layers(std::string name, std::size_t count) {
  dip::module_spec module;
  module.name = std::move(name);
  for (std::size_t i = 0; i < count; ++i) {
    module.layers.emplace_back(dip::opaque_layer{"block", 1000, 1024});
  }
  return module;
}

bool close(double actual, double expected, double relative) {
  return std::fabs(actual - expected) <= relative * std::fabs(expected);
}

void check_cost_matches(const dip::layer_cost& cost, const layer_truth& t, const work_unit& w) {
  CHECK(close(cost.forward.base(), t.forward.at(w), 1e-9));
  CHECK(close(cost.backward_input.base(), t.backward_input.at(w), 1e-9));
  CHECK(close(cost.backward_weight.base(), t.backward_weight.at(w), 1e-9));
  CHECK(close(cost.activation.base(), t.activation.at(w), 1e-9));
  CHECK(close(cost.output.base(), t.output.at(w), 1e-9));
}

// Runs `call`, which must throw dip::error; returns it so its code and text can be checked.
template <class F>
dip::error thrown_error(F&& call) {
  try {
    call();
  } catch (const dip::error& e) {
    return e;
  }
  FAIL("expected a dip::error");
  return dip::error(errc::invalid_argument, "", "");
}

using dip_test::contains;

// Random numbers from the raw std::mt19937_64 stream, whose output the standard fixes: the
// std:: distributions differ between standard libraries, and a seeded test must draw the same
// samples everywhere.
double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1p-53;  // [0, 1)
}
double uniform_size(std::mt19937_64& rng, int low, int high) {  // an integer in [low, high]
  return std::floor(low + uniform01(rng) * (high - low + 1));
}
double gaussian(std::mt19937_64& rng, double sigma) {  // Box-Muller
  const double u = 1.0 - uniform01(rng);               // (0, 1]: log(u) is finite
  return sigma * std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * 3.14159265358979323846 * uniform01(rng));
}

}  // namespace

static_assert(dip::cost_model_like<dip::profiled_cost_model>);

TEST_CASE("fit_polynomial recovers a + b n + c n^2 exactly from noiseless samples") {
  const truth t{1e-3, 2e-7, 1.5e-11};
  std::mt19937_64 rng(7);
  std::vector<double> x, y;
  for (int i = 0; i < 50; ++i) {
    x.push_back(uniform_size(rng, 128, 16384));
    y.push_back(t(x.back()));
  }
  const dip::fit_report report = dip::fit_polynomial(x, y, 2, "noiseless");
  REQUIRE(report.coefficients.size() == 3);
  CHECK(close(report.coefficients[0], t.a, 1e-9));
  CHECK(close(report.coefficients[1], t.b, 1e-9));
  CHECK(close(report.coefficients[2], t.c, 1e-9));
  CHECK(report.samples == 50);
  CHECK(report.max_relative_residual < 1e-12);
  CHECK(report.r_squared == doctest::Approx(1.0).epsilon(1e-12));

  // The same fit through the general interface, one feature row per sample.
  std::vector<std::vector<double>> rows;
  for (double n : x) rows.push_back({1.0, n, n * n});
  const dip::fit_report general = dip::least_squares_fit(rows, y, "rows");
  REQUIRE(general.coefficients.size() == 3);
  for (std::size_t j = 0; j < 3; ++j) {
    CHECK(close(general.coefficients[j], report.coefficients[j], 1e-9));
  }
}

TEST_CASE("fit_polynomial recovers coefficients within a few percent from 1% noise") {
  const truth t{1e-3, 2e-7, 1.5e-11};
  std::mt19937_64 rng(20240611);
  std::vector<double> x, y;
  for (int i = 0; i < 50; ++i) {
    x.push_back(uniform_size(rng, 128, 16384));
    y.push_back(t(x.back()) * (1.0 + gaussian(rng, 0.01)));
  }
  const dip::fit_report report = dip::fit_polynomial(x, y, 2, "noisy");
  REQUIRE(report.coefficients.size() == 3);
  // 1% noise on 50 samples leaves a statistical error of about 1% on a and 1.5% on b and c
  // (medians over 5000 seeds); these bounds hold for 999 seeds in 1000, so they test the fit,
  // not the luck of this seed. A wrong fit (unscaled coefficients, a dropped column) is off by
  // orders of magnitude.
  CHECK(close(report.coefficients[0], t.a, 0.06));
  CHECK(close(report.coefficients[1], t.b, 0.10));
  CHECK(close(report.coefficients[2], t.c, 0.10));
  CHECK(report.r_squared > 0.99);
  CHECK(report.r_squared < 1.0);
  CHECK(report.samples == 50);

  // The report's residual figures are those of its own coefficients.
  double max_abs = 0.0, max_rel = 0.0, sum_sq = 0.0, mean = 0.0, sum_sq_total = 0.0;
  for (double value : y) mean += value / 50.0;
  for (double value : y) sum_sq_total += (value - mean) * (value - mean);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double fitted = report.coefficients[0] + report.coefficients[1] * x[i] + report.coefficients[2] * x[i] * x[i];
    const double residual = y[i] - fitted;
    max_abs = std::max(max_abs, std::fabs(residual));
    max_rel = std::max(max_rel, std::fabs(residual) / std::fabs(y[i]));
    sum_sq += residual * residual;
  }
  CHECK(report.max_relative_residual == doctest::Approx(max_rel).epsilon(1e-9));
  CHECK(report.max_abs_residual == doctest::Approx(max_abs).epsilon(1e-9));
  CHECK(report.rms_residual == doctest::Approx(std::sqrt(sum_sq / 50.0)).epsilon(1e-9));
  CHECK(report.r_squared == doctest::Approx(1.0 - sum_sq / sum_sq_total).epsilon(1e-9));
  // 1% noise: the worst sample is off by a few percent, the typical one by about 1%.
  CHECK(report.max_relative_residual > 0.01);
  CHECK(report.max_relative_residual < 0.05);
}

TEST_CASE("least squares refuses rank-deficient and malformed input") {
  SUBCASE("every sample at one size") {
    const std::vector<double> x(10, 4096.0);
    std::vector<double> y(10, 1e-3);
    y[3] = 1.1e-3;
    const dip::error e = thrown_error([&] { dip::fit_polynomial(x, y, 2, "vit forward"); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(e.where() == "vit forward");
    CHECK(contains(e.detail(), "1 distinct sizes"));
    CHECK(contains(e.detail(), ">= 3 distinct x values"));
  }
  SUBCASE("two sizes cannot fix three coefficients") {
    const std::vector<double> x{512, 512, 1024, 1024, 512, 1024};
    const std::vector<double> y{1, 1.1, 2, 2.1, 0.9, 1.9};
    const dip::error e = thrown_error([&] { dip::fit_polynomial(x, y, 2, "two sizes"); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(contains(e.detail(), "2 distinct sizes"));
    // A line through the same two sizes is determined.
    CHECK(dip::fit_polynomial(x, y, 1, "two sizes").coefficients.size() == 2);
  }
  SUBCASE("fewer samples than coefficients") {
    const std::vector<double> x{512, 1024};
    const std::vector<double> y{1, 2};
    CHECK(thrown_error([&] { dip::fit_polynomial(x, y, 2, "short"); }).code() == errc::invalid_argument);
  }
  SUBCASE("a linearly dependent feature column") {
    std::vector<std::vector<double>> rows;
    std::vector<double> y;
    for (double n : {128.0, 256.0, 512.0, 1024.0}) {
      rows.push_back({1.0, n, 3.0 * n});
      y.push_back(n);
    }
    CHECK(thrown_error([&] { dip::least_squares_fit(rows, y, "dependent"); }).code() == errc::invalid_argument);
    // Equal up to 1e-13 relative is dependent too: the "coefficients" would be noise times 1e13.
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i][2] = rows[i][1] * (1.0 + 1e-13 * (i % 2));
    CHECK(thrown_error([&] { dip::least_squares_fit(rows, y, "nearly dependent"); }).code() == errc::invalid_argument);
  }
  SUBCASE("NaN and infinity name the sample") {
    std::vector<double> x{128, 256, 512, 1024, 2048, 4096, 8192, 16384};
    std::vector<double> y(x.size(), 1.0);
    y[5] = std::numeric_limits<double>::quiet_NaN();
    dip::error e = thrown_error([&] { dip::fit_polynomial(x, y, 2, "nan"); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(e.where() == "nan");
    CHECK(contains(e.detail(), "sample 5"));
    y[5] = 1.0;
    x[2] = std::numeric_limits<double>::infinity();
    e = thrown_error([&] { dip::fit_polynomial(x, y, 2, "inf"); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(contains(e.detail(), "sample 2"));
  }
  SUBCASE("empty, mismatched, ragged, negative degree") {
    const std::vector<double> none;
    const std::vector<double> three{1, 2, 3};
    const std::vector<double> two{1, 2};
    CHECK(thrown_error([&] { dip::fit_polynomial(none, none, 1, "empty"); }).code() == errc::invalid_argument);
    const dip::error mismatch = thrown_error([&] { dip::fit_polynomial(three, two, 1, "sizes"); });
    CHECK(mismatch.code() == errc::invalid_argument);
    CHECK(mismatch.where() == "sizes");
    CHECK(thrown_error([&] { dip::fit_polynomial(three, three, -1, "degree"); }).code() == errc::invalid_argument);
    const std::vector<std::vector<double>> ragged{{1, 2}, {1, 3}, {1}};
    const dip::error e = thrown_error([&] { dip::least_squares_fit(ragged, three, "ragged"); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(contains(e.detail(), "sample 2"));
  }
  SUBCASE("an all-zero target fits with zero coefficients") {
    const std::vector<double> x{128, 256, 512};
    const std::vector<double> y{0, 0, 0};
    const dip::fit_report report = dip::fit_polynomial(x, y, 2, "zero");
    for (double c : report.coefficients) CHECK(c == 0.0);
    CHECK(report.max_relative_residual == 0.0);
    CHECK(report.r_squared == 1.0);
  }
}

TEST_CASE("profiled_cost_model prices layers and chunks from module-wide and layer fits") {
  const std::vector<double> lengths{128, 512, 1024, 2048, 4096, 8192};
  dip::profiled_cost_model model;
  const dip::profile_report report = model.add_samples("vit", single_sequence_samples(vit_block, lengths));
  CHECK(report.basis == profile_basis::quadratic);
  CHECK(report.samples == lengths.size());
  REQUIRE(report.forward.coefficients.size() == 3);
  CHECK(close(report.forward.coefficients[2], vit_block.forward.c, 1e-9));
  CHECK(close(report.activation.coefficients[1], vit_block.activation.b, 1e-9));
  CHECK(report.forward.max_relative_residual < 1e-9);
  CHECK(model.report("vit").samples == lengths.size());
  CHECK(model.has_profile("vit", 3));
  CHECK_FALSE(model.has_profile("llm", 0));

  const dip::module_spec vit = module_with_layers("vit", 4);
  const work_unit work = work_unit::sequence(3000);  // between the profiled sizes
  check_cost_matches(model.cost(vit, 2, work), vit_block, work);

  SUBCASE("chunk_cost sums the layers' fits") {
    const dip::layer_cost chunk = dip::chunk_cost(model, vit, 0, 4, work);
    CHECK(close(chunk.forward.base(), 4 * vit_block.forward.at(work), 1e-9));
    CHECK(close(chunk.backward_weight.base(), 4 * vit_block.backward_weight.at(work), 1e-9));
    CHECK(close(chunk.activation.base(), 4 * vit_block.activation.at(work), 1e-9));
    CHECK(close(chunk.output.base(), vit_block.output.at(work), 1e-9));  // the last layer's
  }

  SUBCASE("a layer's own fit overrides the module-wide one") {
    model.add_layer_samples("vit", 1, single_sequence_samples(embedding_layer, lengths));
    check_cost_matches(model.cost(vit, 1, work), embedding_layer, work);
    check_cost_matches(model.cost(vit, 0, work), vit_block, work);
    check_cost_matches(model.cost(vit, 2, work), vit_block, work);
    CHECK(close(model.report("vit", 1).forward.coefficients[1], embedding_layer.forward.b, 1e-9));
    CHECK(close(model.report("vit", 0).forward.coefficients[1], vit_block.forward.b, 1e-9));

    const dip::layer_cost chunk = dip::chunk_cost(model, vit, 0, 3, work);
    CHECK(close(chunk.forward.base(), 2 * vit_block.forward.at(work) + embedding_layer.forward.at(work), 1e-9));
    CHECK(close(chunk.backward_input.base(),
                2 * vit_block.backward_input.at(work) + embedding_layer.backward_input.at(work), 1e-9));
    CHECK(close(chunk.output.base(), vit_block.output.at(work), 1e-9));
    CHECK(close(dip::chunk_cost(model, vit, 0, 2, work).output.base(), embedding_layer.output.at(work), 1e-9));
  }

  SUBCASE("unknown modules and layers are not found") {
    const dip::module_spec llm = module_with_layers("llm", 2);
    dip::error e = thrown_error([&] { (void)model.cost(llm, 0, work); });
    CHECK(e.code() == errc::not_found);
    CHECK(e.where() == "module 'llm' layer 0");
    CHECK(contains(e.detail(), "'vit'"));  // says what is profiled
    CHECK(thrown_error([&] { (void)model.report("llm"); }).code() == errc::not_found);

    // Only layer 0 of the LLM is profiled: layer 1 has no fit to fall back on.
    model.add_layer_samples("llm", 0, single_sequence_samples(embedding_layer, lengths));
    check_cost_matches(model.cost(llm, 0, work), embedding_layer, work);
    e = thrown_error([&] { (void)model.cost(llm, 1, work); });
    CHECK(e.code() == errc::not_found);
    CHECK(e.where() == "module 'llm' layer 1");
    CHECK(thrown_error([&] { (void)model.report("llm"); }).code() == errc::not_found);
  }

  SUBCASE("a layer beyond the module and an invalid work unit are refused") {
    CHECK(thrown_error([&] { (void)model.cost(vit, 4, work); }).code() == errc::invalid_argument);
    work_unit bad = work;
    bad.token_pairs = -1.0;
    CHECK(thrown_error([&] { (void)model.cost(vit, 0, bad); }).code() == errc::invalid_argument);
  }

  SUBCASE("empty work is free") { CHECK(model.cost(vit, 0, work_unit{}) == dip::layer_cost{}); }

  SUBCASE("adding samples refits on all of them") {
    const std::vector<double> more{16384, 12000};
    const dip::profile_report refit = model.add_samples("vit", single_sequence_samples(vit_block, more));
    CHECK(refit.samples == lengths.size() + more.size());
    CHECK(model.report("vit").forward.samples == lengths.size() + more.size());
    check_cost_matches(model.cost(vit, 2, work), vit_block, work);
  }

  SUBCASE("a bad sample names the module and sample, and leaves the model as it was") {
    std::vector<profile_sample> samples = single_sequence_samples(vit_block, lengths);
    samples[3].backward_input = duration(std::numeric_limits<double>::quiet_NaN());
    dip::error e = thrown_error([&] { model.add_samples("vit", samples); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(e.where() == "module 'vit' sample 3");
    CHECK(contains(e.detail(), "backward_input"));
    CHECK(model.report("vit").samples == lengths.size());

    samples[3] = vit_block.sample(work_unit::sequence(1024));
    samples[4].activation = bytes(-1.0);
    e = thrown_error([&] { model.add_layer_samples("vit", 2, samples); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(e.where() == "module 'vit' layer 2 sample 4");
    CHECK(model.report("vit", 2).forward.coefficients == model.report("vit").forward.coefficients);

    samples[4] = vit_block.sample(work_unit::sequence(1024));
    samples[0].work = work_unit{};
    e = thrown_error([&] { model.add_samples("vit", samples); });
    CHECK(e.where() == "module 'vit' sample 0");
    CHECK(thrown_error([&] { model.add_samples("vit", std::vector<profile_sample>{}); }).code() ==
          errc::invalid_argument);
  }

  SUBCASE("samples at a single size are rank-deficient") {
    const std::vector<double> one_size(5, 2048.0);
    const dip::error e =
        thrown_error([&] { model.add_samples("projector", single_sequence_samples(vit_block, one_size)); });
    CHECK(e.code() == errc::invalid_argument);
    CHECK(e.where() == "module 'projector'");
    CHECK(contains(e.detail(), "3 distinct sizes"));
    CHECK_FALSE(model.has_profile("projector", 0));
  }
}

TEST_CASE("a fitted negative intercept is clamped at zero") {
  // Cost proportional to tokens above a threshold: the line's intercept is negative.
  const layer_truth t{
      {-1e-4, 1e-7, 0.0}, {-1e-4, 1e-7, 0.0}, {-1e-4, 1e-7, 0.0}, {-2000.0, 10.0, 0.0}, {0.0, 10.0, 0.0}};
  dip::profiled_cost_model model;
  const dip::profile_report report = model.add_samples("mlp", single_sequence_samples(t, {2000, 4000, 8000}));
  CHECK(report.forward.coefficients[0] < 0.0);
  const dip::module_spec mlp = module_with_layers("mlp", 1);
  const dip::layer_cost small = model.cost(mlp, 0, work_unit::sequence(100));
  CHECK(small.forward == duration(0.0));
  CHECK(small.backward_input == duration(0.0));
  CHECK(small.activation == bytes(0.0));
  CHECK(close(small.output.base(), 1000.0, 1e-9));
  const dip::layer_cost large = model.cost(mlp, 0, work_unit::sequence(5000));
  CHECK(close(large.forward.base(), t.forward(5000), 1e-9));
}

TEST_CASE("packed sequences of mixed lengths are priced through token_pairs") {
  const truth t{3e-4, 1.2e-7, 2e-11};
  const layer_truth layer{t, t, t, t, t};
  std::mt19937_64 rng(42);
  const auto packing = [&] {
    work_unit work;
    const double sequences = uniform_size(rng, 1, 8);
    for (double s = 0; s < sequences; ++s) work += work_unit::sequence(uniform_size(rng, 32, 4096));
    return work;
  };

  // 0.2% measurement noise on two outputs; the 1% bound on 200 unseen packings holds for 998
  // seeds in 1000 (the worst packings are single short sequences, priced by the intercept).
  std::vector<profile_sample> samples;
  for (int i = 0; i < 60; ++i) {
    profile_sample sample = layer.sample(packing());
    sample.forward *= 1.0 + gaussian(rng, 0.002);
    sample.activation *= 1.0 + gaussian(rng, 0.002);
    samples.push_back(sample);
  }
  dip::profiled_cost_model model;
  const dip::profile_report report = model.add_samples("llm", samples);
  CHECK(report.forward.r_squared > 0.999);
  CHECK(report.forward.max_relative_residual < 0.02);
  CHECK(close(report.backward_input.coefficients[2], t.c, 1e-9));  // noiseless output

  const dip::module_spec llm = module_with_layers("llm", 2);
  double worst = 0.0;
  for (int i = 0; i < 200; ++i) {
    const work_unit unseen = packing();
    const dip::layer_cost cost = model.cost(llm, 1, unseen);
    const double expected = t.at(unseen);
    worst = std::max(worst, std::fabs(cost.forward.base() - expected) / expected);
    worst = std::max(worst, std::fabs(cost.activation.base() - expected) / expected);
    CHECK(close(cost.backward_weight.base(), expected, 1e-9));
  }
  CHECK(worst < 0.01);

  // Ten 169-token images cost less attention than one 1690-token sequence, and the model sees it.
  const dip::layer_cost images = model.cost(llm, 0, work_unit::sequences_of(10, 169));
  const dip::layer_cost text = model.cost(llm, 0, work_unit::sequence(1690));
  CHECK(close(text.backward_input.base() - images.backward_input.base(), t.c * (1690.0 * 1690.0 - 10 * 169.0 * 169.0),
              1e-6));
}

TEST_CASE("the linear basis fits samples that all share one sequence length") {
  // Images of 169 tokens, 1 to 64 per sample: token_pairs is always 169 * tokens.
  const truth t{5e-4, 1e-7, 2e-11};
  const layer_truth layer{t, t, t, t, t};
  std::vector<profile_sample> samples;
  for (int images : {1, 2, 4, 8, 16, 32, 64}) {
    samples.push_back(layer.sample(work_unit::sequences_of(images, 169)));
  }
  dip::profiled_cost_model model;

  const dip::error e = thrown_error([&] { model.add_samples("vit", samples); });
  CHECK(e.code() == errc::invalid_argument);
  CHECK(contains(e.detail(), "profile_basis::linear"));
  CHECK(contains(e.detail(), "169"));

  const dip::profile_report report = model.add_samples("vit", samples, profile_basis::linear);
  CHECK(report.basis == profile_basis::linear);
  REQUIRE(report.forward.coefficients.size() == 2);
  CHECK(close(report.forward.coefficients[0], t.a, 1e-9));
  CHECK(close(report.forward.coefficients[1], t.b + 169.0 * t.c, 1e-9));  // n^2 folds into n

  const dip::module_spec vit = module_with_layers("vit", 1);
  const work_unit hundred = work_unit::sequences_of(100, 169);
  CHECK(close(model.cost(vit, 0, hundred).forward.base(), t.at(hundred), 1e-9));
  // The linear fit ignores token_pairs, so a 16900-token sequence is priced as 100 images.
  CHECK(close(model.cost(vit, 0, work_unit::sequence(16900)).forward.base(), t.at(hundred), 1e-9));

  // A line still needs two distinct token counts.
  const std::vector<profile_sample> one_count(3, layer.sample(work_unit::sequences_of(4, 169)));
  const dip::error line = thrown_error([&] { model.add_samples("proj", one_count, profile_basis::linear); });
  CHECK(line.code() == errc::invalid_argument);
  CHECK(contains(line.detail(), "2 distinct token counts"));
}

TEST_CASE("covers: a profile in front of another model prices the layers it fitted") {
  const std::vector<double> lengths{128, 512, 1024, 2048, 4096};
  dip::profiled_cost_model model;
  model.add_samples("vit", single_sequence_samples(vit_block, lengths));
  model.add_layer_samples("llm", 1, single_sequence_samples(embedding_layer, lengths));
  const dip::module_spec vit = module_with_layers("vit", 3);
  const dip::module_spec llm = module_with_layers("llm", 3);
  const dip::module_spec other = module_with_layers("projector", 1);
  CHECK(model.covers(vit, 0));
  CHECK(model.covers(vit, 2));
  CHECK_FALSE(model.covers(vit, 3));  // beyond the module's layers: cost() would throw
  CHECK(model.covers(llm, 1));
  CHECK_FALSE(model.covers(llm, 0));  // only layer 1 was profiled
  CHECK_FALSE(model.covers(other, 0));
  CHECK(model.profiled_modules() == std::vector<std::string>{"llm", "vit"});
  static_assert(dip::covering_cost_model_like<dip::profiled_cost_model>);

  // The rest falls through to the model behind it.
  struct constant_model {
    dip::layer_cost cost(const dip::module_spec&, std::size_t, const work_unit&) const {
      return {duration(1.0), duration(2.0), duration(3.0), bytes(4.0), bytes(5.0)};
    }
  };
  const dip::overlay_cost_model<dip::profiled_cost_model, constant_model> overlay(model, constant_model{});
  const work_unit work = work_unit::sequence(700);
  check_cost_matches(overlay.cost(vit, 1, work), vit_block, work);
  check_cost_matches(overlay.cost(llm, 1, work), embedding_layer, work);
  CHECK(overlay.cost(llm, 0, work).forward.base() == 1.0);
  CHECK(overlay.cost(other, 0, work).output.base() == 5.0);
}

TEST_CASE("the per_sequence basis recovers a cost per sequence from packed batches") {
  // The truth: quadratic plus 0.4 ms per sequence (attention launched once per sequence).
  const auto seconds = [](const work_unit& w) {
    return 1e-3 + 2e-7 * w.tokens + 1.5e-11 * w.token_pairs + 4e-4 * w.sequences;
  };
  std::vector<profile_sample> samples;
  std::mt19937 random(7);
  std::uniform_int_distribution<int> length(20, 400);
  std::uniform_int_distribution<int> count(1, 40);
  for (int i = 0; i < 12; ++i) {
    work_unit w;
    for (int s = count(random); s > 0; --s) w += work_unit::sequence(length(random));
    samples.push_back({w, duration(seconds(w)), duration(2 * seconds(w)), duration(seconds(w)), bytes(64 * w.tokens),
                       bytes(8 * w.tokens)});
  }
  dip::profiled_cost_model model;
  const dip::profile_report report = model.add_samples("llm", samples, profile_basis::per_sequence);
  CHECK(report.basis == profile_basis::per_sequence);
  REQUIRE(report.forward.coefficients.size() == 4);
  CHECK(report.forward.coefficients[3] == doctest::Approx(4e-4).epsilon(1e-6));
  CHECK(report.backward_input.coefficients[3] == doctest::Approx(8e-4).epsilon(1e-6));
  CHECK(dip::feature_names(profile_basis::per_sequence).back() == "sequences");

  // A batch it never saw: 30 sequences of 50 tokens against 1 of 1500 (the same tokens).
  const dip::module_spec module = module_with_layers("llm", 2);
  for (const work_unit& w : {work_unit::sequences_of(30, 50), work_unit::sequence(1500)}) {
    CHECK(model.cost(module, 1, w).forward.base() == doctest::Approx(seconds(w)).epsilon(1e-9));
  }
  // The quadratic basis cannot tell them apart by sequences: it misprices one of them.
  dip::profiled_cost_model quadratic;
  quadratic.add_samples("llm", samples, profile_basis::quadratic);
  const double many = quadratic.cost(module, 1, work_unit::sequences_of(30, 50)).forward.base();
  CHECK(std::fabs(many / seconds(work_unit::sequences_of(30, 50)) - 1) > 0.05);
}

TEST_CASE("a stage overhead is paid once per chunk, and an overlay keeps it where the profile prices the chunk") {
  dip::profiled_cost_model model;
  model.add_samples("vit", single_sequence_samples(vit_block, {64, 256, 512, 1024}));
  const dip::module_spec vit = module_with_layers("vit", 4);
  const work_unit w = work_unit::sequence(300);
  const dip::layer_cost bare = dip::chunk_cost(model, vit, 0, 4, w);
  model.set_stage_overhead(dip::milliseconds(2), dip::milliseconds(3), dip::milliseconds(1));
  const dip::layer_cost paid = dip::chunk_cost(model, vit, 0, 4, w);
  CHECK(paid.forward.base() == doctest::Approx(bare.forward.base() + 2e-3));
  CHECK(paid.backward_input.base() == doctest::Approx(bare.backward_input.base() + 3e-3));
  CHECK(paid.backward_weight.base() == doctest::Approx(bare.backward_weight.base() + 1e-3));
  CHECK(paid.activation == bare.activation);
  CHECK(dip::chunk_cost(model, vit, 1, 2, work_unit{}) == dip::layer_cost{});  // empty work: nothing to run

  // In front of a table: all layers profiled -> the overhead stays; none -> the table's sum.
  dip::fixed_cost_table table;
  table.set_uniform("llm", 2, {{dip::milliseconds(5), {}, {}, {}, {}}, 0});
  const dip::overlay_cost_model<dip::profiled_cost_model, dip::fixed_cost_table> overlay(model, table);
  static_assert(dip::chunk_cost_model_like<decltype(overlay)>);
  CHECK(dip::chunk_cost(overlay, vit, 0, 4, w) == paid);
  CHECK(dip::chunk_cost(overlay, module_with_layers("llm", 2), 0, 2, w).forward.base() == doctest::Approx(10e-3));
  CHECK_THROWS_AS(model.set_stage_overhead(dip::milliseconds(-1), {}, {}), dip::error);
}
