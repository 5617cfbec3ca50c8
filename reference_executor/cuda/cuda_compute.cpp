// The CUDA backend's device helpers (device.hpp) and compute backend (cuda_compute.hpp).
#include "cuda_compute.hpp"

#include <cmath>
#include <numeric>

#include "kernels.cuh"

namespace dip::exec::cuda {

// --- device.hpp -----------------------------------------------------------------------------------

device_tensor upload(const tensor& t, cudaStream_t stream) {
  device_tensor d(t.rows(), t.cols(), stream);
  if (t.size() == 0) return d;
  std::vector<float> host(t.data(), t.data() + t.size());
  // From pageable memory the copy has taken `host` in when it returns.
  check(cudaMemcpyAsync(d.data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice, stream), "upload");
  return d;
}

namespace {

std::vector<float> download_floats(const device_tensor& t, cudaStream_t stream) {
  std::vector<float> host(std::size_t(t.size()));
  if (!host.empty()) {
    check(cudaMemcpyAsync(host.data(), t.data(), host.size() * sizeof(float), cudaMemcpyDeviceToHost, stream),
          "download");
  }
  check(cudaStreamSynchronize(stream), "download");
  return host;
}

device_tensor upload_floats(const std::vector<float>& host, tensor_shape shape, cudaStream_t stream) {
  device_tensor d(shape.rows, shape.cols, stream);
  if (!host.empty()) {
    check(cudaMemcpyAsync(d.data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice, stream),
          "upload");
  }
  return d;
}

}  // namespace

tensor download(const device_tensor& t, cudaStream_t stream) {
  const std::vector<float> host = download_floats(t, stream);
  tensor out(t.rows(), t.cols());
  for (std::size_t i = 0; i < host.size(); ++i) out.data()[i] = double(host[i]);
  return out;
}

device_tensor zeros(std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  device_tensor d(rows, cols, stream);
  kernels::fill(d.data(), 0.0f, std::size_t(d.size()), stream);
  return d;
}

device_tensor clone(const device_tensor& t, cudaStream_t stream) {
  device_tensor d(t.rows(), t.cols(), stream);
  if (t.size() > 0) {
    check(cudaMemcpyAsync(d.data(), t.data(), byte_size(t), cudaMemcpyDeviceToDevice, stream), "clone");
  }
  return d;
}

void gemm(const device_context& ctx, float* c, matrix_ref a, bool ta, matrix_ref b, bool tb, float alpha, float beta) {
  const std::int64_t m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols;
  const std::int64_t n = tb ? b.rows : b.cols, kb = tb ? b.cols : b.rows;
  require(k == kb, errc::invalid_argument, "cuda gemm",
          "inner dimensions differ: " + std::to_string(k) + " and " + std::to_string(kb));
  if (m == 0 || n == 0) return;
  const cudaStream_t stream = ctx.compute();
  if (k == 0) {
    if (beta == 0.0f) kernels::fill(c, 0.0f, std::size_t(m * n), stream);
    return;
  }
  // bf16 copies of the inputs (two per 4-byte float slot).
  const std::size_t na = std::size_t(a.rows * a.cols), nb = std::size_t(b.rows * b.cols);
  const device_buffer a16((na + 1) / 2, stream), b16((nb + 1) / 2, stream);
  kernels::to_bf16(a.data, a16.data(), na, stream);
  kernels::to_bf16(b.data, b16.data(), nb, stream);
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T; a row-major X seen
  // column-major is X^T with leading dimension X.cols.
  check(cublasGemmEx(ctx.blas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k),
                     &alpha, b16.data(), CUDA_R_16BF, int(b.cols), a16.data(), CUDA_R_16BF, int(a.cols), &beta, c,
                     CUDA_R_32F, int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

// --- small operations -------------------------------------------------------------------------------

device_tensor matmul(const device_context& ctx, const device_tensor& a, bool ta, const device_tensor& b, bool tb,
                     float alpha) {
  device_tensor c(ta ? a.cols() : a.rows(), tb ? b.rows() : b.cols(), ctx.compute());
  gemm(ctx, c.data(), ref(a), ta, ref(b), tb, alpha, 0.0f);
  return c;
}

device_tensor rms_norm(const device_context& ctx, const device_tensor& x, const device_tensor& gain,
                       device_tensor& inverse) {
  device_tensor y(x.rows(), x.cols(), ctx.compute());
  inverse = device_tensor(x.rows(), 1, ctx.compute());
  kernels::rms_norm(y.data(), inverse.data(), x.data(), gain.data(), x.rows(), x.cols(), float(detail::rms_epsilon),
                    ctx.compute());
  return y;
}

device_tensor silu(const device_context& ctx, const device_tensor& u) {
  device_tensor y(u.rows(), u.cols(), ctx.compute());
  kernels::silu(y.data(), u.data(), std::size_t(u.size()), ctx.compute());
  return y;
}

namespace {

// base + op(a) op(b), a new tensor.
device_tensor matmul_add(const device_context& ctx, const device_tensor& base, const device_tensor& a, bool ta,
                         const device_tensor& b, bool tb) {
  device_tensor c = clone(base, ctx.compute());
  gemm(ctx, c.data(), ref(a), ta, ref(b), tb, 1.0f, 1.0f);
  return c;
}

device_tensor column_sum(const device_context& ctx, const device_tensor& a, const device_tensor* b = nullptr,
                         const device_tensor* row_scale = nullptr) {
  device_tensor out(1, a.cols(), ctx.compute());
  kernels::column_sum(out.data(), a.data(), b ? b->data() : nullptr, row_scale ? row_scale->data() : nullptr, 1.0f,
                      false, a.rows(), a.cols(), ctx.compute());
  return out;
}

device_tensor add(const device_context& ctx, const device_tensor& a, const device_tensor& b) {
  device_tensor out(a.rows(), a.cols(), ctx.compute());
  kernels::axpby(out.data(), a.data(), 1.0f, b.data(), 1.0f, std::size_t(a.size()), ctx.compute());
  return out;
}

// Input gradient of rms_norm; its gain's gradient goes to `gain_gradient`.
device_tensor rms_norm_backward(const device_context& ctx, const device_tensor& x, const device_tensor& inverse,
                                const device_tensor& gain, const device_tensor& dy, device_tensor& gain_gradient) {
  gain_gradient = column_sum(ctx, dy, &x, &inverse);
  device_tensor dx(x.rows(), x.cols(), ctx.compute());
  kernels::rms_norm_backward(dx.data(), x.data(), inverse.data(), gain.data(), dy.data(), x.rows(), x.cols(),
                             ctx.compute());
  return dx;
}

// 1 + c W, row by row (the dit block's modulation factor).
device_tensor modulation(const device_context& ctx, const device_tensor& c, const device_tensor& w) {
  device_tensor f(c.rows(), w.cols(), ctx.compute());
  kernels::fill(f.data(), 1.0f, std::size_t(f.size()), ctx.compute());
  gemm(ctx, f.data(), ref(c), false, ref(w), false, 1.0f, 1.0f);
  return f;
}

device_tensor multiply(const device_context& ctx, const device_tensor& a, const device_tensor& b) {
  device_tensor y(a.rows(), a.cols(), ctx.compute());
  kernels::multiply(y.data(), a.data(), b.data(), std::size_t(a.size()), ctx.compute());
  return y;
}

std::size_t index_of(const layer& l, const std::string& name) {
  const auto& ps = l.parameters();
  for (std::size_t i = 0; i < ps.size(); ++i) {
    if (ps[i].name == name) return i;
  }
  return ps.size();
}

}  // namespace

// --- cuda_compute ---------------------------------------------------------------------------------

const std::vector<device_tensor>& cuda_compute::params(std::size_t module, std::size_t index) {
  auto [it, fresh] = params_.try_emplace({module, index});
  if (fresh) {
    for (const parameter& p : model_->at(module, index).parameters()) {
      it->second.push_back(upload(p.value, ctx_->compute()));
    }
  }
  return it->second;
}

device_tensor cuda_compute::layer_forward(std::size_t module, std::size_t index, const device_tensor& x,
                                          const device_tensor& c, const sequence_lengths& lengths, gpu_tape& tape) {
  const device_context& ctx = *ctx_;
  const cudaStream_t stream = ctx.compute();
  const layer& l = model_->at(module, index);
  const std::vector<device_tensor>& p = params(module, index);
  const std::string where = "module " + std::to_string(module) + " layer " + std::to_string(index) + " (cuda)";
  require(x.cols() == l.input_width(), errc::invalid_argument, where,
          "input has " + std::to_string(x.cols()) + " features, the layer takes " + std::to_string(l.input_width()));
  device_tensor y;
  if (dynamic_cast<const dense_layer*>(&l) != nullptr) {
    tape.saved = {x};
    y = matmul(ctx, x, false, p[0], false);
    if (const std::size_t b = index_of(l, "bias"); b < p.size())
      kernels::add_row(y.data(), p[b].data(), y.rows(), y.cols(), stream);
  } else if (dynamic_cast<const mlp_layer*>(&l) != nullptr) {
    device_tensor u = matmul(ctx, x, false, p[0], false);
    kernels::add_row(u.data(), p[1].data(), u.rows(), u.cols(), stream);
    device_tensor z = silu(ctx, u);
    y = matmul(ctx, z, false, p[2], false);
    kernels::add_row(y.data(), p[3].data(), y.rows(), y.cols(), stream);
    tape.saved = {x, std::move(u), std::move(z)};
  } else if (dynamic_cast<const block_layer*>(&l) != nullptr) {
    enum param : std::size_t { g1, wq, wk, wv, wo, g2, w1, w2, wm };
    enum slot : std::size_t { sx, sinv1, sa, sq, sk, sv, so, sh, sh2, sinv2, sb, su, sz, sp };
    const bool modulated = index_of(l, "modulation") < p.size();
    const std::int64_t hidden = x.cols(), head = p[wq].cols();
    std::vector<device_tensor>& s = tape.saved;
    s.assign(sp, device_tensor{});
    s[sx] = x;
    s[sa] = rms_norm(ctx, x, p[g1], s[sinv1]);
    s[sq] = matmul(ctx, s[sa], false, p[wq], false);
    s[sk] = matmul(ctx, s[sa], false, p[wk], false);
    s[sv] = matmul(ctx, s[sa], false, p[wv], false);
    s[so] = device_tensor(x.rows(), hidden, stream);
    const float scale = float(1.0 / std::sqrt(double(head)));
    std::int64_t begin = 0;
    for (std::int64_t length : lengths) {
      device_tensor scores(length, length, stream);
      gemm(ctx, scores.data(), rows_of(s[sq], begin, length), false, rows_of(s[sk], begin, length), true, scale);
      kernels::softmax_rows(scores.data(), length, length, stream);
      gemm(ctx, s[so].data() + begin * hidden, ref(scores), false, rows_of(s[sv], begin, length), false);
      s.push_back(std::move(scores));
      begin += length;
    }
    require(
        begin == x.rows(), errc::invalid_argument, where,
        "sequence lengths sum to " + std::to_string(begin) + ", the input has " + std::to_string(x.rows()) + " rows");
    s[sh] = matmul_add(ctx, x, s[so], false, p[wo], false);
    s[sh2] = modulated ? multiply(ctx, s[sh], modulation(ctx, c, p[wm])) : s[sh];
    s[sb] = rms_norm(ctx, s[sh2], p[g2], s[sinv2]);
    s[su] = matmul(ctx, s[sb], false, p[w1], false);
    s[sz] = silu(ctx, s[su]);
    y = matmul_add(ctx, s[sh2], s[sz], false, p[w2], false);
  } else {
    throw error(errc::invalid_argument, where, "has no CUDA implementation");
  }
  return y;
}

device_tensor cuda_compute::layer_backward(std::size_t module, std::size_t index, const gpu_tape& tape,
                                           const device_tensor& c, const device_tensor& dy, device_tensor& dc,
                                           std::vector<gpu_job>& jobs) {
  const device_context& ctx = *ctx_;
  const cudaStream_t stream = ctx.compute();
  const layer& l = model_->at(module, index);
  const std::vector<device_tensor>& p = params(module, index);
  if (dynamic_cast<const dense_layer*>(&l) != nullptr) {
    jobs.push_back({0, tape.saved[0], dy, {}, false});
    if (const std::size_t b = index_of(l, "bias"); b < p.size()) jobs.push_back({b, {}, {}, column_sum(ctx, dy), true});
    return matmul(ctx, dy, false, p[0], true);
  }
  if (dynamic_cast<const mlp_layer*>(&l) != nullptr) {
    const device_tensor& x = tape.saved[0];
    const device_tensor& u = tape.saved[1];
    const device_tensor& z = tape.saved[2];
    jobs.push_back({2, z, dy, {}, false});
    jobs.push_back({3, {}, {}, column_sum(ctx, dy), true});
    const device_tensor t = matmul(ctx, dy, false, p[2], true);
    device_tensor du(t.rows(), t.cols(), stream);
    kernels::silu_backward(du.data(), t.data(), u.data(), std::size_t(du.size()), stream);
    jobs.push_back({0, x, du, {}, false});
    jobs.push_back({1, {}, {}, column_sum(ctx, du), true});
    return matmul(ctx, du, false, p[0], true);
  }
  enum param : std::size_t { g1, wq, wk, wv, wo, g2, w1, w2, wm };
  enum slot : std::size_t { sx, sinv1, sa, sq, sk, sv, so, sh, sh2, sinv2, sb, su, sz, sp };
  const std::vector<device_tensor>& s = tape.saved;
  const bool modulated = index_of(l, "modulation") < p.size();
  const std::int64_t hidden = s[sx].cols(), head = p[wq].cols();
  jobs.push_back({w2, s[sz], dy, {}, false});
  const device_tensor t = matmul(ctx, dy, false, p[w2], true);
  device_tensor du(t.rows(), t.cols(), stream);
  kernels::silu_backward(du.data(), t.data(), s[su].data(), std::size_t(du.size()), stream);
  jobs.push_back({w1, s[sb], du, {}, false});
  device_tensor gain_gradient;
  const device_tensor dh2 =
      add(ctx, dy, rms_norm_backward(ctx, s[sh2], s[sinv2], p[g2], matmul(ctx, du, false, p[w1], true), gain_gradient));
  jobs.push_back({g2, {}, {}, std::move(gain_gradient), true});
  device_tensor dh = dh2;
  if (modulated) {
    dh = multiply(ctx, dh2, modulation(ctx, c, p[wm]));
    device_tensor dmod = multiply(ctx, dh2, s[sh]);
    dc = matmul_add(ctx, dc, dmod, false, p[wm], true);
    jobs.push_back({wm, c, std::move(dmod), {}, false});
  }
  jobs.push_back({wo, s[so], dh, {}, false});
  const device_tensor d_o = matmul(ctx, dh, false, p[wo], true);
  device_tensor dq(dh.rows(), head, stream), dk(dh.rows(), head, stream), dv(dh.rows(), hidden, stream);
  const float scale = float(1.0 / std::sqrt(double(head)));
  std::int64_t begin = 0;
  for (std::size_t seq = 0; sp + seq < s.size(); ++seq) {
    const device_tensor& prob = s[sp + seq];
    const std::int64_t length = prob.rows();
    device_tensor d_prob(length, length, stream);
    gemm(ctx, d_prob.data(), rows_of(d_o, begin, length), false, rows_of(s[sv], begin, length), true);
    gemm(ctx, dv.data() + begin * hidden, ref(prob), true, rows_of(d_o, begin, length), false);
    device_tensor d_scores(length, length, stream);
    kernels::softmax_backward(d_scores.data(), prob.data(), d_prob.data(), length, length, stream);
    gemm(ctx, dq.data() + begin * head, ref(d_scores), false, rows_of(s[sk], begin, length), false, scale);
    gemm(ctx, dk.data() + begin * head, ref(d_scores), true, rows_of(s[sq], begin, length), false, scale);
    begin += length;
  }
  jobs.push_back({wq, s[sa], dq, {}, false});
  jobs.push_back({wk, s[sa], dk, {}, false});
  jobs.push_back({wv, s[sa], dv, {}, false});
  device_tensor da = matmul(ctx, dq, false, p[wq], true);
  gemm(ctx, da.data(), ref(dk), false, ref(p[wk]), true, 1.0f, 1.0f);
  gemm(ctx, da.data(), ref(dv), false, ref(p[wv]), true, 1.0f, 1.0f);
  device_tensor dx = add(ctx, dh, rms_norm_backward(ctx, s[sx], s[sinv1], p[g1], da, gain_gradient));
  jobs.push_back({g1, {}, {}, std::move(gain_gradient), true});
  return dx;
}

device_tensor cuda_compute::synthetic(std::size_t j, unit_key key) {
  return upload(synthetic_input(*model_, *batch_, j, key), ctx_->compute());
}

device_tensor cuda_compute::zeros(std::int64_t rows, std::int64_t cols) {
  return cuda::zeros(rows, cols, ctx_->compute());
}

device_tensor cuda_compute::gather(const device_tensor& t, const std::vector<row_range>& ranges) {
  const cudaStream_t stream = ctx_->compute();
  return upload(gather_rows(download(t, stream), ranges), stream);
}

device_tensor cuda_compute::place(device_tensor target, const std::vector<row_range>& ranges,
                                  const device_tensor& part) {
  const cudaStream_t stream = ctx_->compute();
  return upload(place_rows(download(target, stream), ranges, download(part, stream)), stream);
}

device_tensor cuda_compute::scatter_add(device_tensor target, const std::vector<row_range>& ranges,
                                        const device_tensor& part) {
  const cudaStream_t stream = ctx_->compute();
  return upload(scatter_add_rows(download(target, stream), ranges, download(part, stream)), stream);
}

device_tensor cuda_compute::reshape(const device_tensor& t, std::int64_t cols) {
  const cudaStream_t stream = ctx_->compute();
  return upload(reshape_rows(download(t, stream), cols), stream);
}

void cuda_compute::forward_layers(std::size_t j, unit_key key, std::size_t first, std::size_t last, state_type& state,
                                  const unit_info& info, std::vector<gpu_tape>* tapes) {
  const cudaStream_t stream = ctx_->compute();
  const device_tensor c = reads_context(*model_, key, first, last)
                              ? upload(expand_context(download(state.c, stream), info, state.x.rows()), stream)
                              : device_tensor{};
  for (std::size_t i = first; i < last; ++i) {
    gpu_tape tape;
    state.x = layer_forward(key.module, i, state.x, c, info.segments, tape);
    if (i == 0 && model_->start(key.module) == module_start::injection) {
      state.x = place(std::move(state.x), inject_ranges(batch_->microbatches.at(j), info), state.inject);
      state.inject = device_tensor{};
    }
    if (tapes) tapes->push_back(std::move(tape));
  }
}

device_tensor cuda_compute::backward_layers(std::size_t j, unit_key key, std::size_t first, std::size_t last,
                                            const std::vector<gpu_tape>& tapes, const device_tensor& c,
                                            device_tensor dy, device_tensor& dc, device_tensor& d_inject,
                                            const unit_info& info, std::vector<std::vector<gpu_job>>& jobs) {
  const cudaStream_t stream = ctx_->compute();
  jobs.assign(last - first, {});
  const std::int64_t width = model_->context_width(key.module);
  const device_tensor rows_c = reads_context(*model_, key, first, last)
                                   ? upload(expand_context(download(c, stream), info, dy.rows()), stream)
                                   : device_tensor{};
  for (std::size_t i = last; i-- > first;) {
    const bool context = model_->at(key.module, i).context_width() > 0;
    if (i == 0 && model_->start(key.module) == module_start::injection) {
      const std::vector<row_range> ranges = inject_ranges(batch_->microbatches.at(j), info);
      d_inject = gather(dy, ranges);
      dy = place(std::move(dy), ranges, zeros(d_inject.rows(), d_inject.cols()));
    }
    device_tensor d_rows = context ? zeros(dy.rows(), width) : device_tensor{};
    dy = layer_backward(key.module, i, tapes[i - first], context ? rows_c : device_tensor{}, dy, d_rows,
                        jobs[i - first]);
    if (context) {
      const tensor sum = download(dc, stream) + reduce_context(download(d_rows, stream), info, c.rows());
      dc = upload(sum, stream);
    }
  }
  return dy;
}

// The loss on the host, as the CPU backend computes it (exec/data.hpp).
basic_unit_loss<device_tensor> cuda_compute::loss(std::size_t j, unit_key key, const device_tensor& y) {
  const cudaStream_t stream = ctx_->compute();
  unit_loss l = compute_loss(*model_, *batch_, j, key, download(y, stream));
  return {l.value, upload(l.gradient, stream)};
}

std::vector<tensor> cuda_compute::weight_gradients(std::size_t module, std::size_t index,
                                                   const std::vector<gpu_job>& jobs) {
  const cudaStream_t stream = ctx_->compute();
  const std::vector<device_tensor>& p = params(module, index);
  std::vector<device_tensor> grads;
  for (const device_tensor& w : p) grads.push_back(cuda::zeros(w.rows(), w.cols(), stream));
  for (const gpu_job& job : jobs) {
    device_tensor& g = grads.at(job.parameter);
    if (job.ready) {
      kernels::axpby(g.data(), g.data(), 1.0f, job.value.data(), 1.0f, std::size_t(g.size()), stream);
    } else {
      gemm(*ctx_, g.data(), ref(job.lhs), true, ref(job.rhs), false, 1.0f, 1.0f);
    }
  }
  std::vector<tensor> out;
  out.reserve(grads.size());
  for (const device_tensor& g : grads) out.push_back(download(g, stream));
  return out;
}

void cuda_compute::offload(gpu_tape& tape) {
  tape.host.clear();
  tape.shapes.clear();
  for (device_tensor& t : tape.saved) {
    tape.shapes.push_back(t.shape());
    tape.host.push_back(download_floats(t, ctx_->compute()));
    t = device_tensor{};
  }
}

void cuda_compute::restore(gpu_tape& tape) {
  for (std::size_t i = 0; i < tape.host.size(); ++i) {
    tape.saved[i] = upload_floats(tape.host[i], tape.shapes[i], ctx_->compute());
  }
  tape.host.clear();
  tape.shapes.clear();
}

device_message cuda_compute::pack(const basic_payload<device_tensor>& p) {
  return std::make_shared<device_pack>(device_pack{tensor(0, 5), p});
}

basic_payload<device_tensor> cuda_compute::unpack(device_message message, const std::string& where) {
  require(message != nullptr, errc::invalid_argument, where, "no message");
  return std::move(message->tensors);
}

void cuda_compute::finish() {
  check(cudaStreamSynchronize(ctx_->compute()), "finish");
  check(cudaStreamSynchronize(ctx_->comm()), "finish");
}

}  // namespace dip::exec::cuda
