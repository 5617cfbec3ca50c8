// Transports of the CUDA backend (dip::exec::transport_like<T, device_message>).
//
// Streams and events, the same in both: a rank computes on its compute stream and communicates
// on its communication stream. At a send the data is what the compute stream has enqueued so
// far; at a receive the buffers are allocated on the compute stream and the communication stream
// waits for that; when a group with receives ends, the compute stream waits for the
// communication stream, so the next compute action sees the data. Sent and received-from
// buffers are kept alive until an event after their last use has completed (polled at each
// group start, drained at the end).
//
// - d2d_transport (single-GPU mode): every rank on one device; a message is handed over in host
//   memory as device buffers plus an event of the sender's compute stream, and the receiver
//   copies them (cudaMemcpyAsync device to device) on its communication stream after waiting for
//   that event. FIFO per (sender, receiver) pair with a timeout and abort, as cpu_fabric.
// - nccl_transport (nccl_transport.hpp, when NCCL was found): ncclSend/ncclRecv.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "cuda_compute.hpp"
#include "device.hpp"

namespace dip::exec::cuda {

// Throws naming both ranks unless the message is `tag` with the expected shapes (header first;
// an empty `expected` checks the tag only).
void check_message(int me, int from, std::uint64_t tag, std::uint64_t got_tag, const std::vector<tensor_shape>& got,
                   std::span<const tensor_shape> expected);

// The shapes of a pack as a transport sees them: the header's, then its tensors'.
std::vector<tensor_shape> shapes_of(const device_pack& pack);

// Device buffers kept alive until `done` has completed.
class retention {
 public:
  void keep(std::vector<device_message> packs, std::vector<device_tensor> buffers, cudaStream_t after);
  void release_completed();
  void release_all(cudaStream_t wait_for);
  ~retention();

 private:
  struct entry {
    std::vector<device_message> packs;
    std::vector<device_tensor> buffers;
    event done;
  };
  std::deque<entry> entries_;
};

class d2d_fabric {
 public:
  struct message {
    std::uint64_t tag = 0;
    device_message pack;
    std::shared_ptr<event> ready;  // recorded on the sender's compute stream
  };

  d2d_fabric(int ranks, std::chrono::milliseconds timeout);
  int ranks() const noexcept { return ranks_; }
  void push(int from, int to, message m);
  message pop(int to, int from, std::uint64_t tag);  // waits up to the timeout; throws when aborted
  void abort(std::string reason);

 private:
  std::deque<message>& channel(int from, int to);
  int ranks_;
  std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<std::deque<message>> channels_;
  bool aborted_ = false;
  std::string reason_;
};

class d2d_transport {
 public:
  d2d_transport(d2d_fabric& fabric, int rank, const device_context& ctx) : fabric_(&fabric), rank_(rank), ctx_(&ctx) {}
  ~d2d_transport();
  d2d_transport(const d2d_transport&) = delete;
  d2d_transport& operator=(const d2d_transport&) = delete;

  int rank() const noexcept { return rank_; }
  void send(int peer, std::uint64_t tag, device_message pack);
  device_message recv(int peer, std::uint64_t tag, std::span<const tensor_shape> expected);
  void group_start();
  void group_end();
  void abort();

 private:
  d2d_fabric* fabric_;
  int rank_;
  const device_context* ctx_;
  bool received_ = false;
  retention kept_;
  event order_;
};

static_assert(transport_like<d2d_transport, device_message>);

}  // namespace dip::exec::cuda
