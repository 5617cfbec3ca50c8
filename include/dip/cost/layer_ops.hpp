// The operations inside one layer's forward pass, with their FLOPs and memory traffic, and the
// activation bytes the layer keeps for its backward pass. This is the arithmetic under the
// analytic cost model, kept apart so it can be checked against hand-worked formulas.
//
// Conventions (n = tokens, P = sum of squared sequence lengths, C = conditioning tokens,
// Q = sum of length x context length, h = hidden, f = FFN, a = heads, g = KV groups,
// d = h / a, kv = 2 g d):
// - a matmul of (m x k) by (k x c) is 2 m k c FLOPs and reads/writes both inputs and its output;
// - attention (flash-style, nothing quadratic stored) is 4 P h FLOPs (Q K^T and A V) with no
//   causal discount, as in the usual 24 n h^2 + 4 n^2 h per-layer formula;
// - norms, activations and residual adds are memory-bound elementwise passes;
// - tensors are 2-byte BF16; flash attention's log-sum-exp is FP32.
// Without GQA and with f = 4h, a non-gated block is exactly 24 n h^2 + 4 P h FLOPs forward.
#pragma once

#include <cstdint>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/work.hpp"
#include "dip/model/layer.hpp"

namespace dip {

enum class op_kind {
  matmul,       // backward: input gradient and weight gradient, each as many FLOPs as forward
  attention,    // backward: twice the forward FLOPs and traffic, all of it input gradient
  elementwise,  // backward: twice the traffic, input gradient only
  gather,       // embedding lookup; backward: a scatter-add into the weight gradient
};

struct layer_op {
  op_kind kind;
  double flops;    // forward FLOPs
  double traffic;  // forward bytes read + written
};

inline constexpr double bf16_bytes = 2.0;

namespace detail {

inline layer_op matmul_op(double m, double k, double c) {
  return {op_kind::matmul, 2.0 * m * k * c, bf16_bytes * (m * k + k * c + m * c)};
}
inline layer_op elementwise_op(double elements_touched) {
  return {op_kind::elementwise, 0.0, bf16_bytes * elements_touched};
}

inline void append_self_attention(std::vector<layer_op>& ops, double n, double pairs, double h, double kv) {
  ops.push_back(elementwise_op(2 * n * h));  // input norm: read + write
  ops.push_back(matmul_op(n, h, h + kv));    // fused Q, K, V projection
  ops.push_back({op_kind::attention, 4 * pairs * h, bf16_bytes * (2 * n * h + n * kv)});
  ops.push_back(matmul_op(n, h, h));         // output projection
  ops.push_back(elementwise_op(3 * n * h));  // residual add
}

inline void append_mlp(std::vector<layer_op>& ops, double n, double h, double f, bool gated) {
  ops.push_back(elementwise_op(2 * n * h));  // norm
  if (gated) {
    ops.push_back(matmul_op(n, h, 2 * f));     // gate and up, fused
    ops.push_back(elementwise_op(3 * n * f));  // SiLU(gate) * up
  } else {
    ops.push_back(matmul_op(n, h, f));
    ops.push_back(elementwise_op(2 * n * f));  // GELU
  }
  ops.push_back(matmul_op(n, f, h));         // down projection
  ops.push_back(elementwise_op(3 * n * h));  // residual add
}

}  // namespace detail

// Forward operations of `layer` on `work` (for the whole layer, before tensor parallelism).
// An opaque layer has no known operations: it is a dip::error to ask.
inline std::vector<layer_op> forward_operations(const layer_spec& layer, const work_unit& work) {
  using namespace detail;
  const double n = work.tokens;
  std::vector<layer_op> ops;
  std::visit(overloaded{
                 [&](const transformer_block& b) {
                   const double h = double(b.hidden), kv = 2.0 * double(b.kv_groups) * (h / double(b.heads));
                   append_self_attention(ops, n, work.token_pairs, h, kv);
                   append_mlp(ops, n, h, double(b.ffn), b.gated_mlp);
                 },
                 [&](const dit_block& b) {
                   const double h = double(b.hidden), kv = 2.0 * double(b.kv_groups) * (h / double(b.heads));
                   append_self_attention(ops, n, work.token_pairs, h, kv);
                   // Cross-attention: queries from the latent tokens, keys/values from the conditioning.
                   ops.push_back(elementwise_op(2 * n * h));
                   ops.push_back(matmul_op(n, h, h));
                   ops.push_back(matmul_op(work.context_tokens, h, kv));
                   ops.push_back({op_kind::attention, 4 * work.context_pairs * h,
                                  bf16_bytes * (2 * n * h + work.context_tokens * kv)});
                   ops.push_back(matmul_op(n, h, h));
                   ops.push_back(elementwise_op(3 * n * h));
                   append_mlp(ops, n, h, double(b.ffn), b.gated_mlp);
                   ops.push_back(elementwise_op(9 * n * h));  // adaLN scale, shift and gate
                 },
                 [&](const embedding& e) {
                   ops.push_back({op_kind::gather, 0.0, bf16_bytes * 2 * n * double(e.hidden)});
                 },
                 [&](const lm_head& head) {
                   ops.push_back(elementwise_op(2 * n * double(head.hidden)));  // final norm
                   ops.push_back(matmul_op(n, double(head.hidden), double(head.vocab)));
                   ops.push_back(elementwise_op(2 * n * double(head.vocab)));  // softmax cross-entropy
                 },
                 [&](const linear_layer& l) { ops.push_back(matmul_op(n, double(l.input), double(l.output))); },
                 [&](const projector& p) {
                   ops.push_back(matmul_op(n, double(p.input), double(p.hidden)));
                   ops.push_back(elementwise_op(2 * n * double(p.hidden)));  // GELU
                   ops.push_back(matmul_op(n, double(p.hidden), double(p.output)));
                 },
                 [&](const opaque_layer& o) {
                   throw error(errc::not_found, "layer '" + o.name + "'",
                               "an opaque layer has no architecture to derive operations from; give its "
                               "cost in a fixed cost table");
                 },
             },
             layer);
  return ops;
}

struct layer_flops {
  double forward = 0;
  double backward_input = 0;
  double backward_weight = 0;
  double total() const { return forward + backward_input + backward_weight; }
};

// Input-gradient and weight-gradient FLOPs follow from the operation kinds (see op_kind).
inline layer_flops flops_of(const layer_spec& layer, const work_unit& work) {
  layer_flops result;
  for (const layer_op& op : forward_operations(layer, work)) {
    result.forward += op.flops;
    switch (op.kind) {
      case op_kind::matmul:
        result.backward_input += op.flops;
        result.backward_weight += op.flops;
        break;
      case op_kind::attention: result.backward_input += 2 * op.flops; break;
      case op_kind::elementwise:
      case op_kind::gather: break;
    }
  }
  return result;
}

// Bytes the layer keeps from forward to backward (before tensor parallelism): the inputs of
// every matmul, norm and activation, following Korthikanti et al. 2022 ("Reducing Activation
// Recomputation in Large Transformer Models"), with flash attention (no n^2 term).
inline double activation_bytes_of(const layer_spec& layer, const work_unit& work) {
  using namespace detail;
  const double n = work.tokens;
  return std::visit(overloaded{
                        [&](const transformer_block& b) {
                          const double h = double(b.hidden), f = double(b.ffn);
                          const double kv = 2.0 * double(b.kv_groups) * (h / double(b.heads));
                          const double mlp = (b.gated_mlp ? 3.0 : 2.0) * f;
                          return bf16_bytes * n * (5 * h + (h + kv) + mlp) + 4.0 * n * double(b.heads);
                        },
                        [&](const dit_block& b) {
                          const double h = double(b.hidden), f = double(b.ffn);
                          const double kv = 2.0 * double(b.kv_groups) * (h / double(b.heads));
                          const double mlp = (b.gated_mlp ? 3.0 : 2.0) * f;
                          const double self = n * (5 * h + (h + kv) + mlp);
                          const double cross = n * 4 * h + work.context_tokens * kv;
                          const double modulation = 2 * n * h;
                          return bf16_bytes * (self + cross + modulation) + 8.0 * n * double(b.heads);
                        },
                        [&](const embedding&) { return 0.0; },  // token ids only
                        [&](const lm_head& head) {
                          // Input of the projection plus FP32 logits kept for the loss's backward.
                          return bf16_bytes * n * double(head.hidden) + 4.0 * n * double(head.vocab);
                        },
                        [&](const linear_layer& l) { return bf16_bytes * n * double(l.input); },
                        [&](const projector& p) { return bf16_bytes * n * double(p.input + 2 * p.hidden); },
                        [&](const opaque_layer&) { return 0.0; },
                    },
                    layer);
}

// Collectives a tensor-parallel layer issues per pass (forward, or backward input gradient),
// each over n x hidden BF16 values: one after attention and one after the MLP, as in Megatron.
inline int tensor_parallel_collectives(const layer_spec& layer) {
  return std::visit(detail::overloaded{
                        [](const transformer_block&) { return 2; },
                        [](const dit_block&) { return 3; },
                        [](const embedding&) { return 1; },
                        [](const lm_head&) { return 1; },
                        [](const linear_layer&) { return 1; },
                        [](const projector&) { return 1; },
                        [](const opaque_layer&) { return 0; },
                    },
                    layer);
}

// Width of the tensor the collectives move (the layer's hidden size).
inline double collective_width(const layer_spec& layer) {
  return std::visit(detail::overloaded{
                        [](const transformer_block& b) { return double(b.hidden); },
                        [](const dit_block& b) { return double(b.hidden); },
                        [](const embedding& e) { return double(e.hidden); },
                        [](const lm_head& h) { return double(h.hidden); },
                        [](const linear_layer& l) { return double(l.output); },
                        [](const projector& p) { return double(p.output); },
                        [](const opaque_layer&) { return 0.0; },
                    },
                    layer);
}

}  // namespace dip
