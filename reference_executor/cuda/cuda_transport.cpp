// The single-GPU transport and what both CUDA transports share (cuda_transport.hpp).
#include "cuda_transport.hpp"

#include <utility>

namespace dip::exec::cuda {

std::vector<tensor_shape> shapes_of(const device_pack& pack) {
  std::vector<tensor_shape> shapes;  // the header is metadata, not one of the plan's tensors
  for (const device_tensor& t : pack.tensors) shapes.push_back(t.shape());
  return shapes;
}

void check_message(int me, int from, std::uint64_t tag, std::uint64_t got_tag, const std::vector<tensor_shape>& got,
                   std::span<const tensor_shape> expected) {
  const std::string who = "rank " + std::to_string(me) + " receiving from rank " + std::to_string(from);
  require(got_tag == tag, errc::invalid_argument, who,
          "expected message " + std::to_string(tag) + ", the next from rank " + std::to_string(from) + " is " +
              std::to_string(got_tag));
  if (expected.empty()) return;
  bool same = expected.size() == got.size();
  for (std::size_t i = 0; same && i < got.size(); ++i) same = got[i] == expected[i];
  if (same) return;
  const auto join = [](std::string& list, const tensor_shape& s) {
    if (!list.empty()) list += ',';
    list += to_string(s);
  };
  std::string want, have;
  for (const tensor_shape& s : expected) join(want, s);
  for (const tensor_shape& s : got) join(have, s);
  throw error(errc::invalid_argument, who,
              "message " + std::to_string(tag) + " has shapes [" + have + "], expected [" + want + "]");
}

// --- retention ------------------------------------------------------------------------------------

void retention::keep(std::vector<device_message> packs, std::vector<device_tensor> buffers, cudaStream_t after) {
  entry e{std::move(packs), std::move(buffers), event()};
  e.done.record(after);
  entries_.push_back(std::move(e));
}

void retention::release_completed() {
  while (!entries_.empty() && entries_.front().done.done()) entries_.pop_front();
}

void retention::release_all(cudaStream_t wait_for) {
  (void)cudaStreamSynchronize(wait_for);
  entries_.clear();
}

retention::~retention() {
  for (entry& e : entries_) (void)cudaEventSynchronize(e.done.get());
}

// --- d2d_fabric -----------------------------------------------------------------------------------

d2d_fabric::d2d_fabric(int ranks, std::chrono::milliseconds timeout)
    : ranks_(ranks), timeout_(timeout), channels_(std::size_t(ranks) * std::size_t(ranks)) {
  require(ranks >= 1, errc::invalid_argument, "d2d_fabric", "needs at least one rank");
}

std::deque<d2d_fabric::message>& d2d_fabric::channel(int from, int to) {
  require(from >= 0 && from < ranks_ && to >= 0 && to < ranks_, errc::invalid_argument, "d2d_fabric",
          "no channel from rank " + std::to_string(from) + " to rank " + std::to_string(to));
  return channels_[std::size_t(from) * std::size_t(ranks_) + std::size_t(to)];
}

void d2d_fabric::push(int from, int to, message m) {
  {
    std::lock_guard lock(mutex_);
    channel(from, to).push_back(std::move(m));
  }
  ready_.notify_all();
}

d2d_fabric::message d2d_fabric::pop(int to, int from, std::uint64_t tag) {
  std::unique_lock lock(mutex_);
  const std::string who = "rank " + std::to_string(to) + " receiving from rank " + std::to_string(from);
  const bool arrived = ready_.wait_for(lock, timeout_, [&] { return aborted_ || !channel(from, to).empty(); });
  require(!aborted_, errc::invalid_argument, who, "aborted: " + reason_);
  require(arrived, errc::invalid_argument, who,
          "timed out after " + std::to_string(timeout_.count()) + " ms waiting for message " + std::to_string(tag) +
              " (deadlock: rank " + std::to_string(from) + " never sent it)");
  message m = std::move(channel(from, to).front());
  channel(from, to).pop_front();
  return m;
}

void d2d_fabric::abort(std::string reason) {
  {
    std::lock_guard lock(mutex_);
    if (!aborted_) reason_ = std::move(reason);
    aborted_ = true;
  }
  ready_.notify_all();
}

// --- d2d_transport --------------------------------------------------------------------------------

d2d_transport::~d2d_transport() { kept_.release_all(ctx_->comm()); }

void d2d_transport::group_start() {
  kept_.release_completed();
  received_ = false;
}

void d2d_transport::send(int peer, std::uint64_t tag, device_message pack) {
  auto ready = std::make_shared<event>();
  ready->record(ctx_->compute());
  fabric_->push(rank_, peer, {tag, std::move(pack), std::move(ready)});
}

device_message d2d_transport::recv(int peer, std::uint64_t tag, std::span<const tensor_shape> expected) {
  d2d_fabric::message m = fabric_->pop(rank_, peer, tag);
  check_message(rank_, peer, tag, m.tag, shapes_of(*m.pack), expected);
  // One buffer for the whole message, on this rank's compute stream.
  std::size_t total = 0;
  for (const device_tensor& t : m.pack->tensors) total += std::size_t(t.size());
  auto buffer = std::make_shared<device_buffer>(total, ctx_->compute());
  auto out = std::make_shared<device_pack>();
  out->header = m.pack->header;
  stream_wait(ctx_->comm(), ctx_->compute(), order_);                                  // the allocation
  check(cudaStreamWaitEvent(ctx_->comm(), m.ready->get(), 0), "cudaStreamWaitEvent");  // the sender's data
  std::size_t offset = 0;
  for (const device_tensor& t : m.pack->tensors) {
    device_tensor view(buffer, offset, t.rows(), t.cols());
    if (t.size() > 0) {
      check(cudaMemcpyAsync(view.data(), t.data(), byte_size(t), cudaMemcpyDeviceToDevice, ctx_->comm()),
            "rank " + std::to_string(rank_) + " copying message " + std::to_string(tag) + " from rank " +
                std::to_string(peer));
    }
    out->tensors.push_back(std::move(view));
    offset += std::size_t(t.size());
  }
  // The sender's buffers live until the copy is done; ours until the compute stream is past it.
  kept_.keep({std::move(m.pack)}, {}, ctx_->comm());
  received_ = true;
  return out;
}

void d2d_transport::group_end() {
  if (received_) stream_wait(ctx_->compute(), ctx_->comm(), order_);
  received_ = false;
}

void d2d_transport::abort() { fabric_->abort("rank " + std::to_string(rank_) + " failed"); }

}  // namespace dip::exec::cuda
