// GPU smoke test: y = a*x + y over 2^20 floats on the device, copied back and compared with the
// host's answer element by element. The inputs are small integers, so the result is exact
// whether or not the compiler fuses the multiply-add, and any difference is a real error.
// Exit codes: 0 pass, 1 mismatch or CUDA error, 77 no usable GPU (ctest: skipped).
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

namespace {

constexpr int skip_code = 77;

__global__ void saxpy(int n, float a, const float* x, float* y) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) {
    y[i] = a * x[i] + y[i];
  }
}

bool ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "gpu_smoke: %s failed: %s\n", what, cudaGetErrorString(status));
    return false;
  }
  return true;
}

// Frees device memory on every return path.
struct device_buffer {
  float* data = nullptr;
  ~device_buffer() { cudaFree(data); }
};

}  // namespace

int main() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    std::printf("gpu_smoke: skipped, no CUDA device (%s)\n",
                status != cudaSuccess ? cudaGetErrorString(status) : "device count is 0");
    return skip_code;
  }

  constexpr int n = 1 << 20;
  constexpr float a = 2.0f;
  std::vector<float> x(n);
  std::vector<float> y(n);
  std::vector<float> expected(n);
  for (int i = 0; i < n; ++i) {
    x[i] = static_cast<float>(i % 1000);
    y[i] = static_cast<float>(i % 777);
    expected[i] = a * x[i] + y[i];
  }

  device_buffer dx;
  device_buffer dy;
  const std::size_t bytes = sizeof(float) * n;
  if (!ok(cudaMalloc(&dx.data, bytes), "cudaMalloc x") || !ok(cudaMalloc(&dy.data, bytes), "cudaMalloc y") ||
      !ok(cudaMemcpy(dx.data, x.data(), bytes, cudaMemcpyHostToDevice), "copy x to device") ||
      !ok(cudaMemcpy(dy.data, y.data(), bytes, cudaMemcpyHostToDevice), "copy y to device")) {
    return 1;
  }

  constexpr int block = 256;
  saxpy<<<(n + block - 1) / block, block>>>(n, a, dx.data, dy.data);
  if (!ok(cudaGetLastError(), "kernel launch (is CMAKE_CUDA_ARCHITECTURES right for this GPU?)") ||
      !ok(cudaDeviceSynchronize(), "kernel") ||
      !ok(cudaMemcpy(y.data(), dy.data, bytes, cudaMemcpyDeviceToHost), "copy y to host")) {
    return 1;
  }

  int mismatches = 0;
  for (int i = 0; i < n; ++i) {
    if (y[i] != expected[i]) {
      if (mismatches < 5) {
        std::fprintf(stderr, "gpu_smoke: y[%d] = %g, expected %g\n", i, static_cast<double>(y[i]),
                     static_cast<double>(expected[i]));
      }
      ++mismatches;
    }
  }
  if (mismatches != 0) {
    std::fprintf(stderr, "gpu_smoke: %d of %d elements wrong\n", mismatches, n);
    return 1;
  }

  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("gpu_smoke: saxpy over %d floats correct on %s\n", n, prop.name);
  return 0;
}
