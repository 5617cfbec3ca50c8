// dip::parallel_for: runs body(i) for i in [0, count) on up to `threads` threads (the caller's
// among them), for loops whose iterations are independent (phase 3's per-rank problems).
//
// Contract: every index runs exactly once unless an iteration throws; then the indices not yet
// started are skipped and, once all threads are done, the exception of the lowest index that
// threw is rethrown, so that what the caller sees does not depend on the thread count or on
// timing. With threads <= 1 or count <= 1 the loop runs in order on the calling thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace dip {

template <typename Body>
void parallel_for(std::size_t count, unsigned threads, Body&& body) {
  if (threads <= 1 || count <= 1) {
    for (std::size_t i = 0; i < count; ++i) body(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::exception_ptr> errors(count);
  const auto work = [&] {
    while (!failed.load(std::memory_order_relaxed)) {
      const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) return;
      try {
        body(i);
      } catch (...) {
        errors[i] = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
    }
  };
  {
    std::vector<std::jthread> helpers;
    const std::size_t extra = std::min<std::size_t>(threads, count) - 1;
    helpers.reserve(extra);
    for (std::size_t t = 0; t < extra; ++t) helpers.emplace_back(work);
    work();
  }  // joins the helpers
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace dip
