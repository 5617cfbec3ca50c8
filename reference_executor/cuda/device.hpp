// Device memory and the per-rank CUDA context of the CUDA backend (host code; any C++ compiler).
//
// - device_tensor: an immutable fp32 row-major matrix in device memory. Copies share the buffer
//   (shared_ptr), so bundles can be copied freely as the executor's walk does; a tensor is
//   written only by the operation that creates it. Buffers come from the stream-ordered
//   allocator (cudaMallocAsync on the rank's compute stream) and go back with cudaFreeAsync on
//   that same stream: every use on another stream is ordered before the free by events (see
//   cuda_transport.hpp).
// - device_context: one rank's device, compute stream, communication stream and cuBLAS handle.
// - gemm: C = alpha op(A) op(B) + beta C with bf16 inputs (converted from fp32 by our kernel),
//   fp32 output and CUBLAS_COMPUTE_32F accumulation.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/tensor.hpp"

namespace dip::exec::cuda {

inline void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    throw error(errc::invalid_argument, "cuda",
                what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

inline void check(cublasStatus_t status, const std::string& what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw error(errc::invalid_argument, "cublas", what + ": status " + std::to_string(int(status)));
  }
}

// Devices CUDA can use (0 when the driver or the device is missing).
inline int usable_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

// One allocation, freed on the stream it was allocated on.
class device_buffer {
 public:
  device_buffer(std::size_t floats, cudaStream_t stream) : stream_(stream), floats_(floats) {
    if (floats > 0) {
      void* p = nullptr;
      check(cudaMallocAsync(&p, floats * sizeof(float), stream),
            "cudaMallocAsync " + std::to_string(floats * 4) + " bytes");
      data_ = static_cast<float*>(p);
    }
  }
  ~device_buffer() {
    if (data_ != nullptr) (void)cudaFreeAsync(data_, stream_);
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;

  float* data() const noexcept { return data_; }
  std::size_t floats() const noexcept { return floats_; }

 private:
  float* data_ = nullptr;
  cudaStream_t stream_;
  std::size_t floats_;
};

class device_tensor {
 public:
  device_tensor() = default;
  // A fresh rows x cols tensor (contents undefined) on `stream`.
  device_tensor(std::int64_t rows, std::int64_t cols, cudaStream_t stream)
      : buffer_(std::make_shared<device_buffer>(std::size_t(rows * cols), stream)), rows_(rows), cols_(cols) {}
  // A view of `floats` [offset, offset + rows*cols) of a shared buffer.
  device_tensor(std::shared_ptr<device_buffer> buffer, std::size_t offset, std::int64_t rows, std::int64_t cols)
      : buffer_(std::move(buffer)), offset_(offset), rows_(rows), cols_(cols) {}

  std::int64_t rows() const noexcept { return rows_; }
  std::int64_t cols() const noexcept { return cols_; }
  std::int64_t size() const noexcept { return rows_ * cols_; }
  tensor_shape shape() const noexcept { return {rows_, cols_}; }
  // Only the creator writes (see the file comment).
  float* data() const noexcept { return buffer_ ? buffer_->data() + offset_ : nullptr; }
  const std::shared_ptr<device_buffer>& buffer() const noexcept { return buffer_; }

 private:
  std::shared_ptr<device_buffer> buffer_;
  std::size_t offset_ = 0;
  std::int64_t rows_ = 0, cols_ = 0;
};

inline std::size_t byte_size(const device_tensor& t) noexcept { return std::size_t(t.size()) * sizeof(float); }

// One rank's device and streams. Made and destroyed on the host thread that owns the device
// (cudaSetDevice first); every tensor of the rank must be gone before it is destroyed.
class device_context {
 public:
  explicit device_context(int device) : device_(device) {
    check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
    check(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaStreamCreateWithFlags(&comm_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cublasCreate(&blas_), "cublasCreate");
    check(cublasSetStream(blas_, compute_), "cublasSetStream");
  }
  ~device_context() {
    (void)cudaSetDevice(device_);
    (void)cudaStreamSynchronize(comm_);
    (void)cudaStreamSynchronize(compute_);
    (void)cublasDestroy(blas_);
    (void)cudaStreamDestroy(comm_);
    (void)cudaStreamDestroy(compute_);
  }
  device_context(const device_context&) = delete;
  device_context& operator=(const device_context&) = delete;

  int device() const noexcept { return device_; }
  cudaStream_t compute() const noexcept { return compute_; }
  cudaStream_t comm() const noexcept { return comm_; }
  cublasHandle_t blas() const noexcept { return blas_; }

 private:
  int device_;
  cudaStream_t compute_ = nullptr, comm_ = nullptr;
  cublasHandle_t blas_ = nullptr;
};

// A CUDA event that is destroyed with its owner (recording it again is fine).
class event {
 public:
  event() { check(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming), "cudaEventCreate"); }
  ~event() {
    if (e_ != nullptr) (void)cudaEventDestroy(e_);
  }
  event(event&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
  event& operator=(event&& o) noexcept {
    std::swap(e_, o.e_);
    return *this;
  }
  event(const event&) = delete;
  event& operator=(const event&) = delete;
  cudaEvent_t get() const noexcept { return e_; }
  void record(cudaStream_t s) const { check(cudaEventRecord(e_, s), "cudaEventRecord"); }
  bool done() const { return cudaEventQuery(e_) == cudaSuccess; }

 private:
  cudaEvent_t e_ = nullptr;
};

// `waiter` waits (on the device) for what `producer` has enqueued so far.
inline void stream_wait(cudaStream_t waiter, cudaStream_t producer, const event& e) {
  e.record(producer);
  check(cudaStreamWaitEvent(waiter, e.get(), 0), "cudaStreamWaitEvent");
}

// Host <-> device, fp32 on the device and double on the host.
device_tensor upload(const tensor& t, cudaStream_t stream);
tensor download(const device_tensor& t, cudaStream_t stream);  // synchronises `stream`
device_tensor zeros(std::int64_t rows, std::int64_t cols, cudaStream_t stream);
device_tensor clone(const device_tensor& t, cudaStream_t stream);

// A row-major matrix in device memory, read-only (rows of a tensor: data + row * cols).
struct matrix_ref {
  const float* data;
  std::int64_t rows, cols;
};
inline matrix_ref ref(const device_tensor& t) { return {t.data(), t.rows(), t.cols()}; }
inline matrix_ref rows_of(const device_tensor& t, std::int64_t begin, std::int64_t count) {
  return {t.data() + begin * t.cols(), count, t.cols()};
}

// c (m x n, row-major, contiguous) = alpha op(a) op(b) + beta c, op = transpose when ta/tb;
// bf16 inputs, fp32 accumulate.
void gemm(const device_context& ctx, float* c, matrix_ref a, bool ta, matrix_ref b, bool tb, float alpha = 1.0f,
          float beta = 0.0f);

}  // namespace dip::exec::cuda
