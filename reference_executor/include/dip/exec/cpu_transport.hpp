// dip::exec::cpu_transport: in-process channels between rank threads with NCCL's semantics.
//
// One FIFO per (sender, receiver) pair; a receive takes the next message from that peer and
// checks its tag and shapes (transport.hpp). A receive that waits longer than the fabric's
// timeout throws a dip::error naming the waiting rank and the peer: a deadlocked plan fails,
// it never hangs. abort() makes every waiting and later receive throw at once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/exec/transport.hpp"

namespace dip::exec {

// The shared state of all ranks' channels.
class cpu_fabric {
 public:
  explicit cpu_fabric(int ranks, std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : ranks_(ranks), timeout_(timeout), channels_(std::size_t(ranks) * std::size_t(ranks)) {
    require(ranks >= 1, errc::invalid_argument, "cpu_fabric", "needs at least one rank");
  }

  int ranks() const noexcept { return ranks_; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }

  void push(int from, int to, std::uint64_t tag, tensor_pack pack) {
    {
      std::lock_guard lock(mutex_);
      channel(from, to).push_back({tag, std::move(pack)});
      ++messages_;
    }
    ready_.notify_all();
  }

  tensor_pack pop(int to, int from, std::uint64_t tag, std::span<const tensor_shape> expected) {
    std::unique_lock lock(mutex_);
    const std::string who = "rank " + std::to_string(to) + " receiving from rank " + std::to_string(from);
    const bool arrived = ready_.wait_for(lock, timeout_, [&] { return aborted_ || !channel(from, to).empty(); });
    require(!aborted_, errc::invalid_argument, who, "aborted: " + abort_reason_);
    require(arrived, errc::invalid_argument, who,
            "timed out after " + std::to_string(timeout_.count()) + " ms waiting for message " + std::to_string(tag) +
                " (deadlock: rank " + std::to_string(from) + " never sent it)");
    auto [got_tag, pack] = std::move(channel(from, to).front());
    channel(from, to).pop_front();
    lock.unlock();
    require(got_tag == tag, errc::invalid_argument, who,
            "expected message " + std::to_string(tag) + ", the next from rank " + std::to_string(from) + " is " +
                std::to_string(got_tag));
    if (!expected.empty()) {
      bool same = expected.size() == pack.size();
      for (std::size_t i = 0; same && i < pack.size(); ++i) same = shape_of(pack[i]) == expected[i];
      if (!same) {
        // (Appending piece by piece: GCC 12 warns, wrongly, on `"," + std::string` here.)
        const auto join = [](std::string& list, const tensor_shape& s) {
          if (!list.empty()) list += ',';
          list += to_string(s);
        };
        std::string want, have;
        for (const tensor_shape& s : expected) join(want, s);
        for (const tensor& t : pack) join(have, shape_of(t));
        throw error(errc::invalid_argument, who,
                    "message " + std::to_string(tag) + " has shapes [" + have + "], expected [" + want + "]");
      }
    }
    return std::move(pack);
  }

  void abort(std::string reason) {
    {
      std::lock_guard lock(mutex_);
      if (!aborted_) abort_reason_ = std::move(reason);
      aborted_ = true;
    }
    ready_.notify_all();
  }

  std::size_t messages_sent() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }

 private:
  struct message {
    std::uint64_t tag;
    tensor_pack pack;
  };
  std::deque<message>& channel(int from, int to) {
    require(from >= 0 && from < ranks_ && to >= 0 && to < ranks_, errc::invalid_argument, "cpu_fabric",
            "no channel from rank " + std::to_string(from) + " to rank " + std::to_string(to));
    return channels_[std::size_t(from) * std::size_t(ranks_) + std::size_t(to)];
  }

  int ranks_;
  std::chrono::milliseconds timeout_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<std::deque<message>> channels_;
  bool aborted_ = false;
  std::string abort_reason_;
  std::size_t messages_ = 0;
};

// One rank's view of a cpu_fabric (the fabric must outlive it).
class cpu_transport {
 public:
  cpu_transport(cpu_fabric& fabric, int rank) : fabric_(&fabric), rank_(rank) {}

  int rank() const noexcept { return rank_; }
  void send(int peer, std::uint64_t tag, tensor_pack pack) { fabric_->push(rank_, peer, tag, std::move(pack)); }
  tensor_pack recv(int peer, std::uint64_t tag, std::span<const tensor_shape> expected) {
    return fabric_->pop(rank_, peer, tag, expected);
  }
  // In-process sends complete at once and receives block in place, so a group needs no
  // deferred work; the calls are counted so tests can see the grouping.
  void group_start() { ++groups_; }
  void group_end() {}
  void abort() { fabric_->abort("rank " + std::to_string(rank_) + " failed"); }
  std::size_t groups() const noexcept { return groups_; }

 private:
  cpu_fabric* fabric_;
  int rank_;
  std::size_t groups_ = 0;
};

static_assert(transport_like<cpu_transport>);

}  // namespace dip::exec
