// The NCCL transport (nccl_transport.hpp).
#include "nccl_transport.hpp"

#include <thread>
#include <utility>

namespace dip::exec::cuda {

namespace {

std::string nccl_message(ncclResult_t r) {
  return std::string(ncclGetErrorString(r)) + " (" + std::to_string(int(r)) + ")";
}

}  // namespace

ncclComm_t init_nccl_rank(const ncclUniqueId& id, int ranks, int rank, std::chrono::milliseconds timeout) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const std::string who = "rank " + std::to_string(rank);
  ncclResult_t r = ncclCommInitRankConfig(&comm, ranks, id, rank, &config);
  const auto start = std::chrono::steady_clock::now();
  while (r == ncclInProgress) {
    if (std::chrono::steady_clock::now() - start > timeout) {
      (void)ncclCommAbort(comm);
      throw error(errc::invalid_argument, who, "NCCL communicator init timed out");
    }
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm, &r) != ncclSuccess) break;
  }
  if (r != ncclSuccess) {
    if (comm != nullptr) (void)ncclCommAbort(comm);
    throw error(errc::invalid_argument, who, "NCCL communicator init failed: " + nccl_message(r));
  }
  return comm;
}

nccl_transport::nccl_transport(ncclComm_t comm, int rank, const device_context& ctx, std::chrono::milliseconds timeout,
                               std::shared_ptr<std::atomic<bool>> failed)
    : comm_(comm), rank_(rank), ctx_(&ctx), timeout_(timeout), failed_(std::move(failed)) {}

nccl_transport::~nccl_transport() {
  if (aborted_) {
    kept_.release_all(ctx_->compute());
    return;
  }
  kept_.release_all(ctx_->comm());
}

std::string nccl_transport::who() const {
  std::string peers;
  for (const op& o : ops_) {
    if (!peers.empty()) peers += ", ";
    peers += (o.send ? "send to rank " : "receive from rank ") + std::to_string(o.peer) + " (message " +
             std::to_string(o.tag) + ")";
  }
  return "rank " + std::to_string(rank_) + (peers.empty() ? std::string() : " [" + peers + "]");
}

void nccl_transport::fail(const std::string& what) {
  failed_->store(true);
  abort();
  throw error(errc::invalid_argument, who(), what);
}

void nccl_transport::wait_nccl(const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    ncclResult_t r = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &r) != ncclSuccess) fail(what + ": ncclCommGetAsyncError failed");
    if (r == ncclSuccess) return;
    if (r != ncclInProgress) fail(what + ": " + nccl_message(r));
    if (failed_->load()) fail(what + ": aborted, another rank failed");
    if (std::chrono::steady_clock::now() - start > timeout_) {
      fail(what + ": timed out after " + std::to_string(timeout_.count()) + " ms");
    }
    std::this_thread::yield();
  }
}

void nccl_transport::wait_stream(cudaStream_t s, const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(s);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) fail(what + ": " + cudaGetErrorString(q));
    ncclResult_t r = ncclSuccess;
    (void)ncclCommGetAsyncError(comm_, &r);
    if (r != ncclSuccess && r != ncclInProgress) fail(what + ": " + nccl_message(r));
    if (failed_->load()) fail(what + ": aborted, another rank failed");
    if (std::chrono::steady_clock::now() - start > timeout_) {
      fail(what + ": timed out after " + std::to_string(timeout_.count()) +
           " ms (deadlock: a peer never posted the "
           "matching call)");
    }
    std::this_thread::yield();
  }
}

void nccl_transport::group_start() {
  if (failed_->load()) fail("aborted, another rank failed");
  kept_.release_completed();
  ops_.clear();
}

void nccl_transport::send(int peer, std::uint64_t tag, device_message pack) {
  ops_.push_back({true, peer, tag, std::move(pack), {}, {}});
}

device_message nccl_transport::recv(int peer, std::uint64_t tag, std::span<const tensor_shape> expected) {
  auto pack = std::make_shared<device_pack>();
  ops_.push_back({false, peer, tag, pack, std::vector<tensor_shape>(expected.begin(), expected.end()), {}});
  return pack;
}

void nccl_transport::group_end() {
  if (ops_.empty()) return;
  const cudaStream_t compute = ctx_->compute(), comm = ctx_->comm();
  const std::size_t n = ops_.size();
  // Phase 1: metadata.
  std::vector<std::int64_t> meta(n * meta_slots, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const op& o = ops_[i];
    if (!o.send) continue;
    std::int64_t* m = meta.data() + i * meta_slots;
    const tensor& h = o.pack->header;
    const std::size_t need = 3 + std::size_t(h.size()) + 2 * o.pack->tensors.size();
    require(need <= meta_slots, errc::invalid_argument, who(),
            "message " + std::to_string(o.tag) + " has too many entries for a metadata block");
    m[0] = std::int64_t(o.tag);
    m[1] = h.rows();
    m[2] = std::int64_t(o.pack->tensors.size());
    std::size_t at = 3;
    for (std::int64_t k = 0; k < h.size(); ++k) m[at++] = std::int64_t(h.data()[k]);
    for (const device_tensor& t : o.pack->tensors) {
      m[at++] = t.rows();
      m[at++] = t.cols();
    }
  }
  device_tensor meta_device(std::int64_t(n), std::int64_t(meta_slots) * 2, comm);  // int64 in two float slots
  auto* meta_ptr = reinterpret_cast<std::int64_t*>(meta_device.data());
  check(cudaMemcpyAsync(meta_ptr, meta.data(), meta.size() * sizeof(std::int64_t), cudaMemcpyHostToDevice, comm),
        "metadata upload");
  if (ncclGroupStart() != ncclSuccess) fail("ncclGroupStart");
  for (std::size_t i = 0; i < n; ++i) {
    const op& o = ops_[i];
    std::int64_t* m = meta_ptr + i * meta_slots;
    const ncclResult_t r = o.send ? ncclSend(m, meta_slots, ncclInt64, o.peer, comm_, comm)
                                  : ncclRecv(m, meta_slots, ncclInt64, o.peer, comm_, comm);
    if (r != ncclSuccess && r != ncclInProgress)
      fail("metadata " + std::string(o.send ? "ncclSend" : "ncclRecv") + ": " + nccl_message(r));
  }
  {
    const ncclResult_t r = ncclGroupEnd();
    if (r != ncclSuccess && r != ncclInProgress) fail("metadata ncclGroupEnd: " + nccl_message(r));
  }
  wait_nccl("metadata group");
  check(cudaMemcpyAsync(meta.data(), meta_ptr, meta.size() * sizeof(std::int64_t), cudaMemcpyDeviceToHost, comm),
        "metadata download");
  wait_stream(comm, "metadata exchange");
  // Receive buffers (on the compute stream, which the communication stream then waits for) and
  // contiguous send buffers (gathered on the compute stream after the data was computed).
  bool any_recv = false;
  for (std::size_t i = 0; i < n; ++i) {
    op& o = ops_[i];
    if (o.send) {
      std::int64_t total = 0;
      for (const device_tensor& t : o.pack->tensors) total += t.size();
      o.data = device_tensor(1, total, compute);
      std::int64_t offset = 0;
      for (const device_tensor& t : o.pack->tensors) {
        if (t.size() > 0) {
          check(cudaMemcpyAsync(o.data.data() + offset, t.data(), byte_size(t), cudaMemcpyDeviceToDevice, compute),
                "gather");
        }
        offset += t.size();
      }
      continue;
    }
    any_recv = true;
    const std::int64_t* m = meta.data() + i * meta_slots;
    const std::int64_t header_rows = m[1], count = m[2];
    require(header_rows >= 0 && count >= 0 && std::size_t(3 + 5 * header_rows + 2 * count) <= meta_slots,
            errc::invalid_argument, who(), "received malformed metadata for message " + std::to_string(o.tag));
    tensor header(header_rows, 5);
    std::size_t at = 3;
    for (std::int64_t k = 0; k < header.size(); ++k) header.data()[k] = double(m[at++]);
    std::vector<tensor_shape> shapes;
    std::int64_t total = 0;
    for (std::int64_t k = 0; k < count; ++k) {
      shapes.push_back({m[at], m[at + 1]});
      total += m[at] * m[at + 1];
      at += 2;
    }
    check_message(rank_, o.peer, o.tag, std::uint64_t(m[0]), shapes, o.expected);
    o.data = device_tensor(1, total, compute);
    o.pack->header = std::move(header);
    std::size_t offset = 0;
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      o.pack->tensors.emplace_back(o.data.buffer(), offset, shapes[k].rows, shapes[k].cols);
      offset += std::size_t(shapes[k].rows * shapes[k].cols);
    }
  }
  stream_wait(comm, compute, order_);
  // Phase 2: data.
  if (ncclGroupStart() != ncclSuccess) fail("ncclGroupStart");
  for (op& o : ops_) {
    if (o.data.size() == 0) continue;  // both ends know the size from the metadata
    const ncclResult_t r = o.send
                               ? ncclSend(o.data.data(), std::size_t(o.data.size()), ncclFloat32, o.peer, comm_, comm)
                               : ncclRecv(o.data.data(), std::size_t(o.data.size()), ncclFloat32, o.peer, comm_, comm);
    if (r != ncclSuccess && r != ncclInProgress)
      fail(std::string(o.send ? "ncclSend" : "ncclRecv") + ": " + nccl_message(r));
  }
  {
    const ncclResult_t r = ncclGroupEnd();
    if (r != ncclSuccess && r != ncclInProgress) fail("ncclGroupEnd: " + nccl_message(r));
  }
  wait_nccl("data group");
  if (any_recv) stream_wait(compute, comm, order_);
  // Sent packs and buffers (and the metadata block) live until the communication stream is past them.
  std::vector<device_message> packs;
  std::vector<device_tensor> buffers{std::move(meta_device)};
  for (op& o : ops_) {
    if (o.send) {
      packs.push_back(std::move(o.pack));
      buffers.push_back(std::move(o.data));
    }
  }
  kept_.keep(std::move(packs), std::move(buffers), comm);
  ops_.clear();
}

void nccl_transport::abort() {
  failed_->store(true);
  if (!aborted_) {
    aborted_ = true;
    (void)ncclCommAbort(comm_);
  }
}

}  // namespace dip::exec::cuda
