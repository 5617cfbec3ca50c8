// The CUDA backend's own kernels (declared in kernels.cuh): elementwise maps, activations,
// RMSNorm, softmax, column reductions and losses. Row-wise kernels run one block per row with
// a shared-memory reduction; the rest one thread per element (grid-stride).
#include "kernels.cuh"

#include <cuda_bf16.h>

namespace dip::exec::cuda::kernels {
namespace {

constexpr int threads = 256;

unsigned blocks_for(std::size_t n) {
  const std::size_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 4096 ? (b == 0 ? 1 : b) : 4096);
}

#define DIP_GRID_STRIDE(i, n) \
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < (n); \
       i += std::size_t(gridDim.x) * blockDim.x)

// Sum of v over the block (blockDim.x == threads); every thread gets the result.
__device__ float block_sum(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = threads / 2; s > 0; s /= 2) {
    if (int(threadIdx.x) < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const float total = shared[0];
  __syncthreads();
  return total;
}

__device__ float block_max(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = threads / 2; s > 0; s /= 2) {
    if (int(threadIdx.x) < s) shared[threadIdx.x] = fmaxf(shared[threadIdx.x], shared[threadIdx.x + s]);
    __syncthreads();
  }
  const float total = shared[0];
  __syncthreads();
  return total;
}

__device__ float sigmoid(float u) { return 1.0f / (1.0f + expf(-u)); }

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* y, std::size_t n) {
  DIP_GRID_STRIDE(i, n) y[i] = __float2bfloat16(x[i]);
}
__global__ void fill_kernel(float* y, float v, std::size_t n) {
  DIP_GRID_STRIDE(i, n) y[i] = v;
}
__global__ void axpby_kernel(float* out, const float* a, float alpha, const float* b, float beta, std::size_t n) {
  DIP_GRID_STRIDE(i, n) out[i] = alpha * a[i] + (b != nullptr ? beta * b[i] : 0.0f);
}
__global__ void multiply_kernel(float* out, const float* a, const float* b, std::size_t n) {
  DIP_GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}
__global__ void add_row_kernel(float* y, const float* row, std::size_t n, std::size_t cols) {
  DIP_GRID_STRIDE(i, n) y[i] += row[i % cols];
}
__global__ void broadcast_row_kernel(float* y, const float* row, std::size_t n, std::size_t cols) {
  DIP_GRID_STRIDE(i, n) y[i] = row[i % cols];
}
__global__ void scale_columns_kernel(float* y, const float* x, const float* f, std::size_t n, std::size_t cols) {
  DIP_GRID_STRIDE(i, n) y[i] = x[i] * f[i % cols];
}
__global__ void silu_kernel(float* y, const float* u, std::size_t n) {
  DIP_GRID_STRIDE(i, n) y[i] = u[i] * sigmoid(u[i]);
}
__global__ void silu_backward_kernel(float* out, const float* g, const float* u, std::size_t n) {
  DIP_GRID_STRIDE(i, n) {
    const float s = sigmoid(u[i]);
    out[i] = g[i] * s * (1.0f + u[i] * (1.0f - s));
  }
}
constexpr float gelu_c = 0.7978845608028654f;  // sqrt(2 / pi)
__global__ void gelu_kernel(float* y, const float* u, std::size_t n) {
  DIP_GRID_STRIDE(i, n) {
    const float x = u[i];
    y[i] = 0.5f * x * (1.0f + tanhf(gelu_c * (x + 0.044715f * x * x * x)));
  }
}
__global__ void gelu_backward_kernel(float* out, const float* g, const float* u, std::size_t n) {
  DIP_GRID_STRIDE(i, n) {
    const float x = u[i];
    const float t = tanhf(gelu_c * (x + 0.044715f * x * x * x));
    const float dt = (1.0f - t * t) * gelu_c * (1.0f + 3.0f * 0.044715f * x * x);
    out[i] = g[i] * (0.5f * (1.0f + t) + 0.5f * x * dt);
  }
}

__global__ void rms_norm_kernel(float* y, float* inverse, const float* x, const float* gain, std::int64_t cols,
                                float eps) {
  __shared__ float shared[threads];
  const std::int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float sum = 0;
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) sum += xr[j] * xr[j];
  const float inv = rsqrtf(block_sum(sum, shared) / float(cols) + eps);
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) y[row * cols + j] = xr[j] * gain[j] * inv;
  if (threadIdx.x == 0) inverse[row] = inv;
}

__global__ void rms_norm_backward_kernel(float* dx, const float* x, const float* inverse, const float* gain,
                                         const float* dy, std::int64_t cols) {
  __shared__ float shared[threads];
  const std::int64_t row = blockIdx.x;
  const float inv = inverse[row];
  float dot = 0;
  for (std::int64_t j = threadIdx.x; j < cols; j += threads)
    dot += dy[row * cols + j] * gain[j] * x[row * cols + j] * inv;
  const float m = block_sum(dot, shared) / float(cols);
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) {
    const float a = dy[row * cols + j] * gain[j];
    dx[row * cols + j] = (a - x[row * cols + j] * inv * m) * inv;
  }
}

__global__ void column_sum_kernel(float* out, const float* a, const float* b, const float* row_scale, float alpha,
                                  bool accumulate, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t j = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; j < cols;
       j += std::int64_t(gridDim.x) * blockDim.x) {
    float sum = 0;
    for (std::int64_t i = 0; i < rows; ++i) {
      float v = a[i * cols + j];
      if (b != nullptr) v *= b[i * cols + j];
      if (row_scale != nullptr) v *= row_scale[i];
      sum += v;
    }
    out[j] = (accumulate ? out[j] : 0.0f) + alpha * sum;
  }
}

__global__ void softmax_rows_kernel(float* p, std::int64_t cols) {
  __shared__ float shared[threads];
  float* r = p + std::int64_t(blockIdx.x) * cols;
  float top = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) top = fmaxf(top, r[j]);
  top = block_max(top, shared);
  float sum = 0;
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) {
    r[j] = expf(r[j] - top);
    sum += r[j];
  }
  const float total = block_sum(sum, shared);
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) r[j] /= total;
}

__global__ void softmax_backward_kernel(float* ds, const float* p, const float* dp, std::int64_t cols) {
  __shared__ float shared[threads];
  const std::int64_t base = std::int64_t(blockIdx.x) * cols;
  float dot = 0;
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) dot += p[base + j] * dp[base + j];
  const float total = block_sum(dot, shared);
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) ds[base + j] = p[base + j] * (dp[base + j] - total);
}

__global__ void cross_entropy_kernel(float* gradient, float* row_loss, const float* y, const std::int32_t* labels,
                                     std::int64_t rows, std::int64_t cols) {
  __shared__ float shared[threads];
  const std::int64_t base = std::int64_t(blockIdx.x) * cols;
  float top = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) top = fmaxf(top, y[base + j]);
  top = block_max(top, shared);
  float sum = 0;
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) sum += expf(y[base + j] - top);
  const float total = block_sum(sum, shared);
  const std::int32_t label = labels[blockIdx.x];
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) {
    const float g = expf(y[base + j] - top) / total - (j == label ? 1.0f : 0.0f);
    gradient[base + j] = g / float(rows);
  }
  if (threadIdx.x == 0) row_loss[blockIdx.x] = logf(total) + top - y[base + label];
}

__global__ void squared_error_kernel(float* gradient, float* row_loss, const float* y, const float* target,
                                     std::int64_t rows, std::int64_t cols) {
  __shared__ float shared[threads];
  const std::int64_t base = std::int64_t(blockIdx.x) * cols;
  float sum = 0;
  for (std::int64_t j = threadIdx.x; j < cols; j += threads) {
    const float d = y[base + j] - target[base + j];
    gradient[base + j] = d / float(rows);
    sum += d * d;
  }
  const float total = block_sum(sum, shared);
  if (threadIdx.x == 0) row_loss[blockIdx.x] = 0.5f * total;
}

}  // namespace

void to_bf16(const float* x, void* y, std::size_t n, cudaStream_t stream) {
  if (n) to_bf16_kernel<<<blocks_for(n), threads, 0, stream>>>(x, static_cast<__nv_bfloat16*>(y), n);
}
void fill(float* y, float v, std::size_t n, cudaStream_t stream) {
  if (n) fill_kernel<<<blocks_for(n), threads, 0, stream>>>(y, v, n);
}
void axpby(float* out, const float* a, float alpha, const float* b, float beta, std::size_t n, cudaStream_t stream) {
  if (n) axpby_kernel<<<blocks_for(n), threads, 0, stream>>>(out, a, alpha, b, beta, n);
}
void multiply(float* out, const float* a, const float* b, std::size_t n, cudaStream_t stream) {
  if (n) multiply_kernel<<<blocks_for(n), threads, 0, stream>>>(out, a, b, n);
}
void add_row(float* y, const float* row, std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  const std::size_t n = std::size_t(rows * cols);
  if (n) add_row_kernel<<<blocks_for(n), threads, 0, stream>>>(y, row, n, std::size_t(cols));
}
void broadcast_row(float* y, const float* row, std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  const std::size_t n = std::size_t(rows * cols);
  if (n) broadcast_row_kernel<<<blocks_for(n), threads, 0, stream>>>(y, row, n, std::size_t(cols));
}
void scale_columns(float* y, const float* x, const float* factor, std::int64_t rows, std::int64_t cols,
                   cudaStream_t stream) {
  const std::size_t n = std::size_t(rows * cols);
  if (n) scale_columns_kernel<<<blocks_for(n), threads, 0, stream>>>(y, x, factor, n, std::size_t(cols));
}
void silu(float* y, const float* u, std::size_t n, cudaStream_t stream) {
  if (n) silu_kernel<<<blocks_for(n), threads, 0, stream>>>(y, u, n);
}
void silu_backward(float* out, const float* g, const float* u, std::size_t n, cudaStream_t stream) {
  if (n) silu_backward_kernel<<<blocks_for(n), threads, 0, stream>>>(out, g, u, n);
}
void gelu(float* y, const float* u, std::size_t n, cudaStream_t stream) {
  if (n) gelu_kernel<<<blocks_for(n), threads, 0, stream>>>(y, u, n);
}
void gelu_backward(float* out, const float* g, const float* u, std::size_t n, cudaStream_t stream) {
  if (n) gelu_backward_kernel<<<blocks_for(n), threads, 0, stream>>>(out, g, u, n);
}
void rms_norm(float* y, float* inverse, const float* x, const float* gain, std::int64_t rows, std::int64_t cols,
              float eps, cudaStream_t stream) {
  if (rows > 0) rms_norm_kernel<<<unsigned(rows), threads, 0, stream>>>(y, inverse, x, gain, cols, eps);
}
void rms_norm_backward(float* dx, const float* x, const float* inverse, const float* gain, const float* dy,
                       std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  if (rows > 0) rms_norm_backward_kernel<<<unsigned(rows), threads, 0, stream>>>(dx, x, inverse, gain, dy, cols);
}
void column_sum(float* out, const float* a, const float* b, const float* row_scale, float alpha, bool accumulate,
                std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  if (cols > 0) {
    column_sum_kernel<<<blocks_for(std::size_t(cols)), threads, 0, stream>>>(out, a, b, row_scale, alpha, accumulate,
                                                                             rows, cols);
  }
}
void softmax_rows(float* p, std::int64_t rows, std::int64_t cols, cudaStream_t stream) {
  if (rows > 0) softmax_rows_kernel<<<unsigned(rows), threads, 0, stream>>>(p, cols);
}
void softmax_backward(float* ds, const float* p, const float* dp, std::int64_t rows, std::int64_t cols,
                      cudaStream_t stream) {
  if (rows > 0) softmax_backward_kernel<<<unsigned(rows), threads, 0, stream>>>(ds, p, dp, cols);
}
void cross_entropy(float* gradient, float* row_loss, const float* y, const std::int32_t* labels, std::int64_t rows,
                   std::int64_t cols, cudaStream_t stream) {
  if (rows > 0) cross_entropy_kernel<<<unsigned(rows), threads, 0, stream>>>(gradient, row_loss, y, labels, rows, cols);
}
void squared_error(float* gradient, float* row_loss, const float* y, const float* target, std::int64_t rows,
                   std::int64_t cols, cudaStream_t stream) {
  if (rows > 0) squared_error_kernel<<<unsigned(rows), threads, 0, stream>>>(gradient, row_loss, y, target, rows, cols);
}

}  // namespace dip::exec::cuda::kernels
