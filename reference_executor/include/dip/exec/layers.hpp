// Executable layers: dip::layer_spec made runnable on the CPU, forward and hand-written backward.
//
// They are stand-ins that keep a real layer's data flow and cost shape at small sizes, not the
// architectures themselves:
// - transformer_block: pre-norm RMSNorm, one softmax-attention head (query/key width
//   hidden / heads, values full width) over the tokens of each sequence, output projection,
//   residual; RMSNorm, a SiLU MLP (hidden -> ffn -> hidden; gated_mlp is not modelled),
//   residual.
// - dit_block: the same, and after the attention each row is scaled by (1 + c_r Wm), c_r being
//   the row's context: the mean of its clip's caption rows (exec/data.hpp; zero for a clip
//   without a caption): a cheap stand-in for cross-attention to the clip's own caption.
// - linear_layer: x W + b. embedding: x E, where x is a fixed per-token feature row of width
//   vocab (a dense stand-in for a one-hot token). projector: SiLU MLP with biases.
// - lm_head: logits x W; the loss is computed outside the layer (exec/data.hpp).
// - opaque_layer: not executable, a dip::error naming the module and layer.
//
// Backward is split as zero-bubble pipelines split it: backward_input computes the gradient of
// the layer's input (and of c) and leaves one `weight_job` per parameter; running the jobs
// (backward_weight) gives the parameter gradients. A job holds the saved activation and the
// output gradient the weight gradient needs, so it can run any time later.
// Parameters are initialised from (module, layer, parameter) alone with a seeded RNG.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/model/layer.hpp"
#include "dip/model/module.hpp"

namespace dip::exec {

struct parameter {
  std::string name;
  tensor value;
};

// What a layer keeps from its forward for its backward.
struct layer_tape {
  std::vector<tensor> saved;
  std::size_t bytes() const noexcept {
    std::size_t total = 0;
    for (const tensor& t : saved) total += byte_size(t);
    return total;
  }
};

// A weight gradient still to compute: lhs^T rhs for a matrix, or `value` ready (norm gains,
// biases: as cheap as the bookkeeping, so done in backward_input).
struct weight_job {
  std::size_t parameter = 0;
  tensor lhs, rhs;
  tensor value;
  bool ready = false;
  std::size_t bytes() const noexcept { return byte_size(lhs) + byte_size(rhs) + byte_size(value); }
};

// Lengths of the sequences that attention mixes tokens within; they sum to the rows.
using sequence_lengths = std::vector<std::int64_t>;

namespace detail {

inline tensor silu(const tensor& u) { return u.array() / (1.0 + (-u.array()).exp()); }

inline tensor silu_derivative(const tensor& u) {
  const Eigen::ArrayXXd s = 1.0 / (1.0 + (-u.array()).exp());
  return (s * (1.0 + u.array() * (1.0 - s))).matrix();
}

inline constexpr double rms_epsilon = 1e-6;

// y = x / rms(x) * g, row by row; returns y and stores 1/rms per row in `inverse`.
inline tensor rms_norm(const tensor& x, const tensor& gain, tensor& inverse) {
  inverse = ((x.array().square().rowwise().sum() / double(x.cols())) + rms_epsilon).sqrt().inverse().matrix();
  tensor y = x;
  for (std::int64_t i = 0; i < x.rows(); ++i) y.row(i) = x.row(i).cwiseProduct(gain.row(0)) * inverse(i, 0);
  return y;
}

// Input gradient of rms_norm; the gain's gradient goes to `gain_gradient`.
inline tensor rms_norm_backward(const tensor& x, const tensor& inverse, const tensor& gain, const tensor& dy,
                                tensor& gain_gradient) {
  tensor xhat = x;
  for (std::int64_t i = 0; i < x.rows(); ++i) xhat.row(i) *= inverse(i, 0);
  gain_gradient = dy.cwiseProduct(xhat).colwise().sum();
  tensor a = dy;
  for (std::int64_t i = 0; i < a.rows(); ++i) a.row(i) = a.row(i).cwiseProduct(gain.row(0));
  tensor dx(x.rows(), x.cols());
  for (std::int64_t i = 0; i < x.rows(); ++i) {
    const double m = a.row(i).dot(xhat.row(i)) / double(x.cols());
    dx.row(i) = (a.row(i) - xhat.row(i) * m) * inverse(i, 0);
  }
  return dx;
}

inline tensor add_row(tensor y, const tensor& row) {
  for (std::int64_t i = 0; i < y.rows(); ++i) y.row(i) += row.row(0);
  return y;
}

}  // namespace detail

// One executable layer. `context_width` > 0: a dit block of a module with a context (reads c).
class layer {
 public:
  virtual ~layer() = default;
  layer() = default;
  layer(const layer&) = delete;
  layer& operator=(const layer&) = delete;

  std::vector<parameter>& parameters() noexcept { return params_; }
  const std::vector<parameter>& parameters() const noexcept { return params_; }
  virtual std::int64_t input_width() const = 0;
  virtual std::int64_t output_width() const = 0;
  std::int64_t context_width() const noexcept { return context_width_; }

  // `c` is the per-row context (rows x context width), empty when the layer reads none.
  tensor forward(const tensor& x, const tensor& c, const sequence_lengths& lengths, layer_tape& tape) const {
    check_input(x, c);
    return forward_core(x, c, lengths, tape);
  }

  // Gradient of the input; adds this layer's share to `dc` (same shape as c) and appends
  // the weight jobs.
  tensor backward_input(const layer_tape& tape, const tensor& c, const tensor& dy, tensor& dc,
                        std::vector<weight_job>& jobs) const {
    return backward_core(tape, c, dy, dc, jobs);
  }

 protected:
  void add_parameter(std::string name, std::int64_t rows, std::int64_t cols, std::uint64_t seed, bool gain = false) {
    const std::uint64_t s = mix_seed({seed, params_.size()});
    tensor value = gain ? (tensor::Ones(rows, cols) + random_tensor(rows, cols, 0.1, s)).eval()
                        : random_tensor(rows, cols, 1.0 / std::sqrt(double(rows)), s);
    params_.push_back({std::move(name), std::move(value)});
  }
  const tensor& p(std::size_t i) const { return params_[i].value; }

  std::string where_;

 private:
  virtual tensor forward_core(const tensor& x, const tensor& c, const sequence_lengths& lengths,
                              layer_tape& tape) const = 0;
  virtual tensor backward_core(const layer_tape& tape, const tensor& c, const tensor& dy, tensor& dc,
                               std::vector<weight_job>& jobs) const = 0;

  void check_input(const tensor& x, const tensor& c) const {
    require(x.cols() == input_width(), errc::invalid_argument, where_,
            "input has " + std::to_string(x.cols()) + " features, the layer takes " + std::to_string(input_width()));
    require(context_width_ == 0 || (c.rows() == x.rows() && c.cols() == context_width_), errc::invalid_argument, where_,
            "context has shape " + to_string(shape_of(c)) + ", expected " + std::to_string(x.rows()) + "x" +
                std::to_string(context_width_));
  }

  std::vector<parameter> params_;
  std::int64_t context_width_ = 0;

  friend std::unique_ptr<layer> make_layer(const module_spec&, std::size_t, std::int64_t);
};

// x W + b (linear_layer), x E (embedding), x W (lm_head's logits).
class dense_layer final : public layer {
 public:
  dense_layer(std::int64_t in, std::int64_t out, bool bias, std::uint64_t seed) : in_(in), out_(out), bias_(bias) {
    add_parameter("weight", in, out, seed);
    if (bias) add_parameter("bias", 1, out, seed);
  }
  std::int64_t input_width() const override { return in_; }
  std::int64_t output_width() const override { return out_; }

 private:
  tensor forward_core(const tensor& x, const tensor&, const sequence_lengths&, layer_tape& tape) const override {
    tape.saved = {x};
    tensor y = x * p(0);
    return bias_ ? detail::add_row(std::move(y), p(1)) : y;
  }
  tensor backward_core(const layer_tape& tape, const tensor&, const tensor& dy, tensor&,
                       std::vector<weight_job>& jobs) const override {
    jobs.push_back({0, tape.saved[0], dy, {}, false});
    if (bias_) jobs.push_back({1, {}, {}, dy.colwise().sum(), true});
    return dy * p(0).transpose();
  }
  std::int64_t in_, out_;
  bool bias_;
};

// Two dense layers with SiLU between them, biases on both (projector).
class mlp_layer final : public layer {
 public:
  mlp_layer(std::int64_t in, std::int64_t hidden, std::int64_t out, std::uint64_t seed) : in_(in), out_(out) {
    add_parameter("w1", in, hidden, seed);
    add_parameter("b1", 1, hidden, seed);
    add_parameter("w2", hidden, out, seed);
    add_parameter("b2", 1, out, seed);
  }
  std::int64_t input_width() const override { return in_; }
  std::int64_t output_width() const override { return out_; }

 private:
  tensor forward_core(const tensor& x, const tensor&, const sequence_lengths&, layer_tape& tape) const override {
    tensor u = detail::add_row(x * p(0), p(1));
    tensor z = detail::silu(u);
    tensor y = detail::add_row(z * p(2), p(3));
    tape.saved = {x, std::move(u), std::move(z)};
    return y;
  }
  tensor backward_core(const layer_tape& tape, const tensor&, const tensor& dy, tensor&,
                       std::vector<weight_job>& jobs) const override {
    const tensor& x = tape.saved[0];
    const tensor& u = tape.saved[1];
    const tensor& z = tape.saved[2];
    jobs.push_back({2, z, dy, {}, false});
    jobs.push_back({3, {}, {}, dy.colwise().sum(), true});
    const tensor du = (dy * p(2).transpose()).cwiseProduct(detail::silu_derivative(u));
    jobs.push_back({0, x, du, {}, false});
    jobs.push_back({1, {}, {}, du.colwise().sum(), true});
    return du * p(0).transpose();
  }
  std::int64_t in_, out_;
};

// transformer_block and dit_block (modulated = true); see the file comment.
class block_layer final : public layer {
 public:
  enum param : std::size_t { g1, wq, wk, wv, wo, g2, w1, w2, wm };

  block_layer(std::int64_t hidden, std::int64_t ffn, std::int64_t heads, bool modulated, std::int64_t context,
              std::uint64_t seed)
      : hidden_(hidden), head_(hidden / heads), modulated_(modulated && context > 0) {
    add_parameter("norm1", 1, hidden, seed, true);
    add_parameter("wq", hidden, head_, seed);
    add_parameter("wk", hidden, head_, seed);
    add_parameter("wv", hidden, hidden, seed);
    add_parameter("wo", hidden, hidden, seed);
    add_parameter("norm2", 1, hidden, seed, true);
    add_parameter("w1", hidden, ffn, seed);
    add_parameter("w2", ffn, hidden, seed);
    if (modulated_) add_parameter("modulation", context, hidden, seed);
  }
  std::int64_t input_width() const override { return hidden_; }
  std::int64_t output_width() const override { return hidden_; }

 private:
  // saved: x, inv1, a, q, k, v, o, h, h2, inv2, b, u, z, then one softmax matrix per sequence.
  enum slot : std::size_t { sx, sinv1, sa, sq, sk, sv, so, sh, sh2, sinv2, sb, su, sz, sp };

  tensor forward_core(const tensor& x, const tensor& c, const sequence_lengths& lengths,
                      layer_tape& tape) const override {
    std::vector<tensor>& s = tape.saved;
    s.assign(sp, tensor{});
    s[sx] = x;
    s[sa] = detail::rms_norm(x, p(g1), s[sinv1]);
    s[sq] = s[sa] * p(wq);
    s[sk] = s[sa] * p(wk);
    s[sv] = s[sa] * p(wv);
    s[so] = tensor(x.rows(), hidden_);
    const double scale = 1.0 / std::sqrt(double(head_));
    std::int64_t begin = 0;
    for (std::int64_t length : lengths) {
      tensor scores = s[sq].middleRows(begin, length) * s[sk].middleRows(begin, length).transpose() * scale;
      for (std::int64_t i = 0; i < length; ++i) {
        const double top = scores.row(i).maxCoeff();
        scores.row(i) = (scores.row(i).array() - top).exp().matrix();
        scores.row(i) /= scores.row(i).sum();
      }
      s[so].middleRows(begin, length) = scores * s[sv].middleRows(begin, length);
      s.push_back(std::move(scores));
      begin += length;
    }
    require(
        begin == x.rows(), errc::invalid_argument, where_,
        "sequence lengths sum to " + std::to_string(begin) + ", the input has " + std::to_string(x.rows()) + " rows");
    s[sh] = x + s[so] * p(wo);
    if (modulated_) {
      const tensor factor = (c * p(wm)).array() + 1.0;
      s[sh2] = s[sh].cwiseProduct(factor);
    } else {
      s[sh2] = s[sh];
    }
    s[sb] = detail::rms_norm(s[sh2], p(g2), s[sinv2]);
    s[su] = s[sb] * p(w1);
    s[sz] = detail::silu(s[su]);
    return s[sh2] + s[sz] * p(w2);
  }

  tensor backward_core(const layer_tape& tape, const tensor& c, const tensor& dy, tensor& dc,
                       std::vector<weight_job>& jobs) const override {
    const std::vector<tensor>& s = tape.saved;
    jobs.push_back({w2, s[sz], dy, {}, false});
    const tensor du = (dy * p(w2).transpose()).cwiseProduct(detail::silu_derivative(s[su]));
    jobs.push_back({w1, s[sb], du, {}, false});
    tensor gain_gradient;
    tensor dh2 = dy + detail::rms_norm_backward(s[sh2], s[sinv2], p(g2), du * p(w1).transpose(), gain_gradient);
    jobs.push_back({g2, {}, {}, std::move(gain_gradient), true});
    tensor dh = dh2;
    if (modulated_) {
      const tensor factor = (c * p(wm)).array() + 1.0;
      dh = dh2.cwiseProduct(factor);
      const tensor dmod = dh2.cwiseProduct(s[sh]);
      jobs.push_back({wm, c, dmod, {}, false});
      dc += dmod * p(wm).transpose();
    }
    jobs.push_back({wo, s[so], dh, {}, false});
    const tensor d_o = dh * p(wo).transpose();
    tensor dq(dh.rows(), head_), dk(dh.rows(), head_), dv(dh.rows(), hidden_);
    const double scale = 1.0 / std::sqrt(double(head_));
    std::int64_t begin = 0;
    for (std::size_t seq = 0; sp + seq < s.size(); ++seq) {
      const tensor& prob = s[sp + seq];
      const std::int64_t length = prob.rows();
      const tensor d_prob = d_o.middleRows(begin, length) * s[sv].middleRows(begin, length).transpose();
      dv.middleRows(begin, length) = prob.transpose() * d_o.middleRows(begin, length);
      tensor d_scores = prob.cwiseProduct(d_prob);
      const Eigen::VectorXd row_dot = d_scores.rowwise().sum();
      for (std::int64_t i = 0; i < length; ++i) d_scores.row(i) -= prob.row(i) * row_dot(i);
      dq.middleRows(begin, length) = d_scores * s[sk].middleRows(begin, length) * scale;
      dk.middleRows(begin, length) = d_scores.transpose() * s[sq].middleRows(begin, length) * scale;
      begin += length;
    }
    jobs.push_back({wq, s[sa], dq, {}, false});
    jobs.push_back({wk, s[sa], dk, {}, false});
    jobs.push_back({wv, s[sa], dv, {}, false});
    const tensor da = dq * p(wq).transpose() + dk * p(wk).transpose() + dv * p(wv).transpose();
    tensor dx = dh + detail::rms_norm_backward(s[sx], s[sinv1], p(g1), da, gain_gradient);
    jobs.push_back({g1, {}, {}, std::move(gain_gradient), true});
    return dx;
  }

  std::int64_t hidden_, head_;
  bool modulated_;
};

// The weight gradients of `jobs`, one tensor per parameter of `l` (zeros for a parameter
// without a job). Jobs of one parameter are summed in job order.
inline std::vector<tensor> backward_weight(const layer& l, const std::vector<weight_job>& jobs) {
  std::vector<tensor> grads;
  for (const parameter& p : l.parameters()) grads.push_back(tensor::Zero(p.value.rows(), p.value.cols()));
  for (const weight_job& job : jobs) {
    if (job.ready) {
      grads.at(job.parameter) += job.value;
    } else {
      grads.at(job.parameter) += job.lhs.transpose() * job.rhs;
    }
  }
  return grads;
}

// Features per row a layer reads.
inline std::int64_t input_features(const layer_spec& spec) {
  return std::visit(dip::detail::overloaded{
                        [](const transformer_block& b) { return b.hidden; },
                        [](const dit_block& b) { return b.hidden; },
                        [](const embedding& e) { return e.vocab; },
                        [](const lm_head& h) { return h.hidden; },
                        [](const linear_layer& l) { return l.input; },
                        [](const projector& p) { return p.input; },
                        [](const opaque_layer& o) { return std::int64_t(o.output_features); },
                    },
                    spec);
}

// The executable layer for layer `index` of `module`; `context_width` > 0 when the module
// cross-attends to a producer (its dit blocks modulate with the per-row context).
// Throws dip::error naming the module and layer for an opaque layer.
inline std::unique_ptr<layer> make_layer(const module_spec& module, std::size_t index, std::int64_t context_width) {
  const std::string where = "module '" + module.name + "' layer " + std::to_string(index);
  require(index < module.layers.size(), errc::invalid_argument, where, "does not exist");
  const layer_spec& spec = module.layers[index];
  const std::uint64_t seed = mix_seed({0x1a7e5ull, module.id.valid() ? module.id.index() : 0, index});
  std::unique_ptr<layer> result =
      std::visit(dip::detail::overloaded{
                     [&](const transformer_block& b) -> std::unique_ptr<layer> {
                       return std::make_unique<block_layer>(b.hidden, b.ffn, b.heads, false, 0, seed);
                     },
                     [&](const dit_block& b) -> std::unique_ptr<layer> {
                       return std::make_unique<block_layer>(b.hidden, b.ffn, b.heads, true, context_width, seed);
                     },
                     [&](const embedding& e) -> std::unique_ptr<layer> {
                       return std::make_unique<dense_layer>(e.vocab, e.hidden, false, seed);
                     },
                     [&](const lm_head& h) -> std::unique_ptr<layer> {
                       return std::make_unique<dense_layer>(h.hidden, h.vocab, false, seed);
                     },
                     [&](const linear_layer& l) -> std::unique_ptr<layer> {
                       return std::make_unique<dense_layer>(l.input, l.output, true, seed);
                     },
                     [&](const projector& p) -> std::unique_ptr<layer> {
                       return std::make_unique<mlp_layer>(p.input, p.hidden, p.output, seed);
                     },
                     [&](const opaque_layer& o) -> std::unique_ptr<layer> {
                       throw error(errc::invalid_argument, where,
                                   "is opaque ('" + o.name +
                                       "'): the reference executor runs only layers described by their "
                                       "architecture (transformer, dit, embedding, lm_head, linear, projector)");
                     },
                 },
                 spec);
  result->where_ = where + " (" + kind_name(spec) + ")";
  if (std::holds_alternative<dit_block>(spec)) result->context_width_ = context_width;
  return result;
}

}  // namespace dip::exec
