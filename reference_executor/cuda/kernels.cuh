// Launchers of the CUDA backend's own kernels (kernels.cu). Plain C++ declarations, so the host
// code that calls them (cuda_compute.cpp) is compiled by the host compiler, not nvcc.
// Every buffer is device memory, fp32, row-major; every launch goes to `stream` and returns at
// once. Outputs never alias inputs unless said.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace dip::exec::cuda::kernels {

// y = bf16(x), n elements (`y` points to __nv_bfloat16).
void to_bf16(const float* x, void* y, std::size_t n, cudaStream_t stream);
// y = v.
void fill(float* y, float v, std::size_t n, cudaStream_t stream);
// out = alpha a + beta b (b may be null: out = alpha a).
void axpby(float* out, const float* a, float alpha, const float* b, float beta, std::size_t n, cudaStream_t stream);
// out = a .* b.
void multiply(float* out, const float* a, const float* b, std::size_t n, cudaStream_t stream);
// y[i, :] += row (in place).
void add_row(float* y, const float* row, std::int64_t rows, std::int64_t cols, cudaStream_t stream);
// y[i, :] = row.
void broadcast_row(float* y, const float* row, std::int64_t rows, std::int64_t cols, cudaStream_t stream);
// y[i, j] = x[i, j] * factor[j].
void scale_columns(float* y, const float* x, const float* factor, std::int64_t rows, std::int64_t cols,
                   cudaStream_t stream);
// SiLU: y = u sigmoid(u); backward: out = g .* silu'(u).
void silu(float* y, const float* u, std::size_t n, cudaStream_t stream);
void silu_backward(float* out, const float* g, const float* u, std::size_t n, cudaStream_t stream);
// GELU (tanh form), forward and backward like SiLU's (no layer uses it yet).
void gelu(float* y, const float* u, std::size_t n, cudaStream_t stream);
void gelu_backward(float* out, const float* g, const float* u, std::size_t n, cudaStream_t stream);
// RMSNorm per row: y = x / rms(x) * gain, inverse[i] = 1 / sqrt(mean(x_i^2) + eps).
void rms_norm(float* y, float* inverse, const float* x, const float* gain, std::int64_t rows, std::int64_t cols,
              float eps, cudaStream_t stream);
// Its input gradient: a = dy .* gain, xhat = x inverse, dx = (a - xhat mean(a .* xhat)) inverse.
void rms_norm_backward(float* dx, const float* x, const float* inverse, const float* gain, const float* dy,
                       std::int64_t rows, std::int64_t cols, cudaStream_t stream);
// out[j] = (accumulate ? out[j] : 0) + alpha sum_i a[i, j] (b ? b[i, j] : 1) (row_scale ? row_scale[i] : 1).
// Column sums, gain gradients (b = x, row_scale = inverse) and row means.
void column_sum(float* out, const float* a, const float* b, const float* row_scale, float alpha, bool accumulate,
                std::int64_t rows, std::int64_t cols, cudaStream_t stream);
// Row softmax (in place).
void softmax_rows(float* p, std::int64_t rows, std::int64_t cols, cudaStream_t stream);
// ds = p .* (dp - rowsum(p .* dp)).
void softmax_backward(float* ds, const float* p, const float* dp, std::int64_t rows, std::int64_t cols,
                      cudaStream_t stream);
// Cross-entropy of each row's softmax to labels[i]: gradient (softmax - onehot) / rows, and
// the row's loss (log-sum-exp - y[label]) in row_loss[i].
void cross_entropy(float* gradient, float* row_loss, const float* y, const std::int32_t* labels, std::int64_t rows,
                   std::int64_t cols, cudaStream_t stream);
// Half the squared error to target: gradient (y - target) / rows, row_loss[i] = 0.5 |y_i - t_i|^2.
void squared_error(float* gradient, float* row_loss, const float* y, const float* target, std::int64_t rows,
                   std::int64_t cols, cudaStream_t stream);

}  // namespace dip::exec::cuda::kernels
