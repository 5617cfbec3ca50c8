// dip::exec::cuda::nccl_transport: the plan's messages over NCCL point-to-point, one GPU per
// rank (built only when CMake found NCCL).
//
// A group of the plan (consecutive send/recv actions of a rank) is issued at group_end() as
// the plan pairs them, in two NCCL groups on the rank's communication stream:
// 1. metadata: per message a fixed block of int64 (tag, header rows, tensor count, the bundle
//    header, every tensor's shape); the host waits for it (polling, with the timeout), checks
//    tags and shapes like the CPU transport and allocates the receive buffers;
// 2. data: one contiguous fp32 buffer per message (gathered on the compute stream for sends).
// Each phase is one ncclGroupStart/ncclGroupEnd holding every ncclSend/ncclRecv of the plan's
// group in the plan's order, so the ranks' groups match as they do in the plan.
// Communicators are non-blocking (ncclConfig_t::blocking = 0): every NCCL call may return
// ncclInProgress and is polled with ncclCommGetAsyncError; an error, the timeout or another
// rank's failure (a shared flag) calls ncclCommAbort and throws a dip::error naming this rank
// and its peers in the group.
#pragma once

#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cuda_transport.hpp"

namespace dip::exec::cuda {

// A non-blocking communicator of rank `rank` of `ranks` (call on the rank's device, from all
// ranks at once: it is collective).
ncclComm_t init_nccl_rank(const ncclUniqueId& id, int ranks, int rank, std::chrono::milliseconds timeout);

class nccl_transport {
 public:
  // Int64 slots of a message's metadata block (a message with more entries is an error).
  static constexpr std::size_t meta_slots = 4096;

  nccl_transport(ncclComm_t comm, int rank, const device_context& ctx, std::chrono::milliseconds timeout,
                 std::shared_ptr<std::atomic<bool>> failed);
  ~nccl_transport();
  nccl_transport(const nccl_transport&) = delete;
  nccl_transport& operator=(const nccl_transport&) = delete;

  int rank() const noexcept { return rank_; }
  void send(int peer, std::uint64_t tag, device_message pack);
  device_message recv(int peer, std::uint64_t tag, std::span<const tensor_shape> expected);
  void group_start();
  void group_end();
  void abort();
  bool aborted() const noexcept { return aborted_; }

 private:
  struct op {
    bool send = false;
    int peer = 0;
    std::uint64_t tag = 0;
    device_message pack;
    std::vector<tensor_shape> expected;
    device_tensor data;  // contiguous
  };
  std::string who() const;
  void wait_nccl(const std::string& what);  // ncclInProgress -> done
  void wait_stream(cudaStream_t s, const std::string& what);
  [[noreturn]] void fail(const std::string& what);

  ncclComm_t comm_;
  int rank_;
  const device_context* ctx_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<std::atomic<bool>> failed_;
  std::vector<op> ops_;
  retention kept_;
  event order_;
  bool aborted_ = false;
};

static_assert(transport_like<nccl_transport, device_message>);

}  // namespace dip::exec::cuda
