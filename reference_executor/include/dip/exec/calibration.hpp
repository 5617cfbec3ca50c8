// Calibrating the cost model against the executor (issue: reference executor, part 5): time
// every layer of every module on the CPU backend at a few sizes (forward, backward-input and
// backward-weight apart; the bytes the forward keeps and the output's size), fit a
// dip::profiled_cost_model per layer, and plan with it. dip-exec then compares the simulated
// iteration time of the plan (under the fitted model) with the measured one.
//
// Sizes: attention layers (transformer and dit blocks) are fitted on [1, tokens, token pairs]
// and so are timed at several sequence lengths and counts (one length alone cannot tell tokens
// from token pairs); the others on [1, tokens]. Each time is the minimum over `repeats` runs,
// the usual estimate of a kernel's cost on a machine with other load.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/profiled.hpp"
#include "dip/cost/work.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/tensor.hpp"

namespace dip::exec {

struct sequence_shape {
  std::int64_t sequences = 1;
  std::int64_t length = 1;
};

struct calibration_options {
  // Shapes timed per attention layer: distinct lengths and counts so that tokens and token
  // pairs are both determined.
  std::vector<sequence_shape> attention_shapes{{1, 16}, {1, 64}, {4, 32}, {1, 192}, {2, 128}, {8, 16}};
  std::vector<std::int64_t> linear_tokens{16, 64, 192, 512};  // other layers: one sequence of n
  int repeats = 3;
};

// One layer's fit, for the report.
struct layer_calibration {
  std::string module;
  std::size_t layer = 0;
  profile_report report;
};

struct calibration {
  profiled_cost_model costs;
  std::vector<layer_calibration> layers;
  double seconds = 0;  // wall time the calibration took

  // The worst relative residual of any layer's forward/backward fits (how well the basis fits).
  double worst_time_residual() const {
    double worst = 0;
    for (const layer_calibration& l : layers) {
      worst = std::max({worst, l.report.forward.max_relative_residual, l.report.backward_input.max_relative_residual,
                        l.report.backward_weight.max_relative_residual});
    }
    return worst;
  }
};

namespace detail {

inline bool has_attention(const layer_spec& spec) {
  return std::holds_alternative<transformer_block>(spec) || std::holds_alternative<dit_block>(spec);
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Times one layer on `lengths` (sequence lengths summing to the rows): the minimum over
// `repeats` of forward, backward-input and backward-weight, with the forward's kept bytes and
// output bytes.
inline profile_sample time_layer(const layer& l, const sequence_lengths& lengths, int repeats, std::uint64_t seed) {
  std::int64_t rows = 0;
  for (std::int64_t n : lengths) rows += n;
  const tensor x = random_tensor(rows, l.input_width(), 1.0, mix_seed({seed, 1}));
  const tensor c = l.context_width() > 0 ? random_tensor(rows, l.context_width(), 1.0, mix_seed({seed, 2})) : tensor{};
  const tensor dy = random_tensor(rows, l.output_width(), 1.0, mix_seed({seed, 3}));
  double forward = std::numeric_limits<double>::infinity(), input = forward, weight = forward;
  std::size_t kept = 0, output = 0;
  for (int r = 0; r < std::max(repeats, 1); ++r) {
    layer_tape tape;
    auto start = std::chrono::steady_clock::now();
    const tensor y = l.forward(x, c, lengths, tape);
    forward = std::min(forward, seconds_since(start));
    kept = tape.bytes();
    output = byte_size(y);
    tensor dc = c.size() > 0 ? tensor::Zero(c.rows(), c.cols()) : tensor{};
    std::vector<weight_job> jobs;
    start = std::chrono::steady_clock::now();
    const tensor dx = l.backward_input(tape, c, dy, dc, jobs);
    input = std::min(input, seconds_since(start));
    start = std::chrono::steady_clock::now();
    const std::vector<tensor> grads = backward_weight(l, jobs);
    weight = std::min(weight, seconds_since(start));
    // Read the results so that an optimiser cannot drop the work being timed.
    volatile double sink = dx.size() > 0 ? dx(0, 0) : 0.0;
    for (const tensor& g : grads) sink = sink + (g.size() > 0 ? g(0, 0) : 0.0);
  }
  work_unit work;
  work.sequences = double(lengths.size());
  for (std::int64_t n : lengths) {
    work.tokens += double(n);
    work.token_pairs += double(n) * double(n);
  }
  return {work, duration(forward), duration(input), duration(weight), bytes(double(kept)), bytes(double(output))};
}

}  // namespace detail

// Times every layer of `model` and fits one profile per layer. Throws what the fit throws
// (dip::error naming the module and layer) if the samples cannot determine a fit.
inline calibration calibrate_cpu(const executable_model& model, const calibration_options& options = {}) {
  const auto start = std::chrono::steady_clock::now();
  calibration result;
  const multimodal_model& spec = model.model();
  for (std::size_t m = 0; m < spec.module_count(); ++m) {
    const module_spec& module = spec.modules()[m];
    for (std::size_t i = 0; i < module.layers.size(); ++i) {
      const layer& l = model.at(m, i);
      const bool attention = detail::has_attention(module.layers[i]);
      std::vector<profile_sample> samples;
      if (attention) {
        for (const sequence_shape& s : options.attention_shapes) {
          samples.push_back(detail::time_layer(l, sequence_lengths(std::size_t(s.sequences), s.length), options.repeats,
                                               mix_seed({m, i, std::uint64_t(s.sequences), std::uint64_t(s.length)})));
        }
      } else {
        for (std::int64_t n : options.linear_tokens) {
          samples.push_back(
              detail::time_layer(l, sequence_lengths{n}, options.repeats, mix_seed({m, i, std::uint64_t(n)})));
        }
      }
      result.layers.push_back(
          {module.name, i,
           result.costs.add_layer_samples(module.name, i, samples,
                                          attention ? profile_basis::quadratic : profile_basis::linear)});
    }
  }
  result.seconds = detail::seconds_since(start);
  return result;
}

}  // namespace dip::exec
