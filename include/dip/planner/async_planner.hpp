// dip::async_planner: plans batch i+1 on spare CPU cores while batch i trains, and never makes
// the trainer wait past a deadline.
//
// Contract. `submit(i)` queues the anytime search for batch i; `get(i, deadline)` returns the
// search's plan if it finished in time, else (cancelling the search) the best plan it offered
// so far, else the batch's fallback (the static schedule). A search that throws yields the
// fallback and the error. Plans come out in submission order, and every delivery is counted in
// exactly one of `stats()`'s four counters. Generic over the plan type: any movable `Plan`.
//
// Threading model.
// - Threads. The planner owns `options.workers` std::jthread workers, started by the
//   constructor and joined by the destructor (never detached). Each worker takes the oldest
//   queued batch and runs its search to completion: one batch is searched by one worker task
//   (a search may start threads of its own, joining them before it returns); different batches
//   are searched concurrently by different workers, and a worker searches batch after batch.
//   `submit`, `get`, `cancel_all` and the accessors may be called from any thread; `fallback` runs
//   in the thread that calls `get`.
// - One mutex (`mutex_`) guards everything shared: the queue of unstarted batches, the list of
//   undelivered batches, each batch's state (started, finished, delivered, best plan and score,
//   error), the counters and the last error. It is never held while a search, a fallback, a
//   stop callback or a plan's destructor runs. Two condition variables wait on it: `work_cv_`
//   (workers: a batch was queued, or std::jthread's stop token: shutdown) and `done_cv_`
//   (`get`: a search finished or was cancelled). Nothing polls.
// - Cancellation. Every batch has its own std::stop_source. `get` past its deadline, `cancel_all`
//   and the destructor request stop; the search sees it through `ctx.cancelled()` or
//   `ctx.stop_token()` (usable with std::condition_variable_any and std::stop_callback) and should
//   return soon: the destructor waits for running searches to return, so a search that ignores
//   cancellation delays it. A batch cancelled before it started never runs. `get` does not
//   wait for a cancelled search to return; its worker finishes it in the background and offers
//   made after delivery are dropped.
// - Lifetime. The planner owns copies of the callables (the default search and fallback, and
//   those given to `submit` for one batch, which are released once the batch is done with);
//   whatever they capture by reference must outlive the planner. The default search may run in
//   several workers at once, so it must be safe to call concurrently. No member function may
//   be running in another thread when the destructor starts.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"

namespace dip {

// Half the machine's cores (the paper plans on <= 50% of a node), at least one.
inline std::size_t default_planning_workers() noexcept {
  return std::max<std::size_t>(1, std::thread::hardware_concurrency() / 2);
}

struct async_planner_options {
  std::size_t workers = default_planning_workers();  // planning threads, >= 1
  std::size_t max_ahead = 2;                         // batches submitted and not yet delivered, at most; >= 1
};

// How a delivered plan was obtained. Each `get` counts in exactly one of `async_planner_stats`.
enum class plan_source {
  in_time,      // the search finished before the deadline and offered a plan: its best
  best_so_far,  // the search was cancelled (deadline or cancel_all): the best plan it offered
  fallback,     // the search offered nothing (in time or not, or never started): fallback(i)
  error,        // the search threw: fallback(i), the message in `delivered_plan::error`
};

struct async_planner_stats {
  std::size_t planned_in_time = 0;
  std::size_t best_so_far_used = 0;
  std::size_t fallback_used = 0;  // the fallback because no plan was offered
  std::size_t errors = 0;         // the fallback because the search threw

  std::size_t delivered() const noexcept { return planned_in_time + best_so_far_used + fallback_used + errors; }
  friend bool operator==(const async_planner_stats&, const async_planner_stats&) = default;
};

template <std::movable Plan>
struct delivered_plan {
  std::size_t batch_index = 0;
  Plan plan;
  plan_source source = plan_source::fallback;
  std::optional<double> score;  // the searched plan's score; nullopt for the fallback
  std::string error;            // source == error: what the search threw
};

// The last search failure a `get` reported.
struct planning_failure {
  std::size_t batch_index = 0;
  std::string message;
};

template <std::movable Plan>
class async_planner;
template <std::movable Plan>
class planning_context;

namespace detail {

// One submitted batch. Shared by the planner (until delivery) and the worker running it.
template <class Plan>
struct async_batch {
  std::size_t index = 0;
  std::function<void(std::size_t, planning_context<Plan>&)> search;  // worker's only
  std::function<Plan(std::size_t)> fallback;
  std::stop_source stop;  // thread-safe on its own
  // Guarded by the planner's mutex:
  bool started = false;
  bool finished = false;   // the search returned, or the batch was cancelled before it started
  bool cancelled = false;  // stop was requested before the search returned
  bool claimed = false;    // a get is waiting for it
  bool delivered = false;
  std::optional<Plan> best;
  std::optional<double> best_score;
  std::optional<std::string> error;
};

}  // namespace detail

// What a search sees of the planner: where to offer plans and whether to stop.
template <std::movable Plan>
class planning_context {
 public:
  planning_context(const planning_context&) = delete;
  planning_context& operator=(const planning_context&) = delete;

  std::size_t batch_index() const noexcept { return batch_->index; }

  // Keeps `plan` if `score` is lower than every plan offered so far (lower is better) and the
  // batch has not been delivered yet; says whether it was kept. Thread-safe: a search may offer
  // from several threads. A NaN score is a bug in the search: dip::error(invalid_argument).
  bool offer(Plan plan, double score) {
    require(!std::isnan(score), errc::invalid_argument, "planning_context::offer",
            "batch " + std::to_string(batch_->index) + ": the score is NaN");
    std::optional<Plan> replaced;  // destroyed after the lock is released
    std::lock_guard lock(*mutex_);
    if (batch_->delivered || (batch_->best_score && !(score < *batch_->best_score))) return false;
    replaced = std::move(batch_->best);
    batch_->best.emplace(std::move(plan));
    batch_->best_score = score;
    return true;
  }

  // The best score offered so far, for pruning.
  std::optional<double> best_score() const {
    std::lock_guard lock(*mutex_);
    return batch_->best_score;
  }

  bool cancelled() const noexcept { return batch_->stop.stop_requested(); }
  std::stop_token stop_token() const noexcept { return batch_->stop.get_token(); }

 private:
  friend class async_planner<Plan>;
  planning_context(std::mutex& mutex, detail::async_batch<Plan>& batch) : mutex_(&mutex), batch_(&batch) {}

  std::mutex* mutex_;
  detail::async_batch<Plan>* batch_;
};

template <std::movable Plan>
class async_planner {
 public:
  using plan_type = Plan;
  using search_function = std::function<void(std::size_t, planning_context<Plan>&)>;
  using fallback_function = std::function<Plan(std::size_t)>;
  using clock = std::chrono::steady_clock;

  // `search(i, ctx)` and `fallback(i)` are the defaults for batches submitted without their own;
  // either may be empty if every `submit` brings one. Throws dip::error for workers or
  // max_ahead of zero.
  async_planner(async_planner_options options, search_function search, fallback_function fallback)
      : options_(options), search_(std::move(search)), fallback_(std::move(fallback)) {
    require(options_.workers >= 1, errc::invalid_argument, "async_planner_options::workers",
            "at least one planning worker is needed");
    require(options_.max_ahead >= 1, errc::invalid_argument, "async_planner_options::max_ahead",
            "at least one batch must be allowed ahead");
    // If starting a thread throws, the started ones are stopped through their stop tokens and
    // joined by workers_'s destructor.
    workers_.reserve(options_.workers);
    for (std::size_t w = 0; w < options_.workers; ++w) {
      workers_.emplace_back([this](std::stop_token stop) { work(stop); });
    }
  }

  async_planner(const async_planner&) = delete;
  async_planner& operator=(const async_planner&) = delete;

  // Cancels every search, waits for the running ones to return and joins every worker.
  ~async_planner() {
    cancel_all();
    for (auto& worker : workers_) worker.request_stop();
    for (auto& worker : workers_) worker.join();
  }

  // Queues planning for `batch_index`, with the planner's search and fallback unless this batch
  // brings its own (e.g. closures holding the batch's metadata by value or shared_ptr).
  // Indexes must increase strictly (gaps are allowed). Does not block: with `max_ahead` batches
  // submitted and not yet delivered it throws dip::error(invalid_argument) (a blocking submit
  // would deadlock the usual caller, the one thread that also calls `get`); see try_submit.
  void submit(std::size_t batch_index, search_function search = {}, fallback_function fallback = {}) {
    if (!try_submit(batch_index, std::move(search), std::move(fallback))) {
      throw error(errc::invalid_argument, "async_planner::submit",
                  "batch " + std::to_string(batch_index) + ": " + std::to_string(options_.max_ahead) +
                      " batches are already ahead (max_ahead); get one first");
    }
  }

  // As submit, but returns false (and queues nothing) when `max_ahead` batches are ahead.
  bool try_submit(std::size_t batch_index, search_function search = {}, fallback_function fallback = {}) {
    const std::string where = "async_planner::submit";
    if (!search) search = search_;
    if (!fallback) fallback = fallback_;
    require(static_cast<bool>(search), errc::invalid_argument, where,
            "batch " + std::to_string(batch_index) + ": no search (none given and no default)");
    require(static_cast<bool>(fallback), errc::invalid_argument, where,
            "batch " + std::to_string(batch_index) + ": no fallback (none given and no default)");
    auto batch = std::make_shared<detail::async_batch<Plan>>();
    batch->index = batch_index;
    batch->search = std::move(search);
    batch->fallback = std::move(fallback);
    {
      std::lock_guard lock(mutex_);
      if (last_submitted_) {
        require(batch_index > *last_submitted_, errc::invalid_argument, where,
                "batch " + std::to_string(batch_index) + " submitted after batch " + std::to_string(*last_submitted_) +
                    " (indexes must increase)");
      }
      if (outstanding_.size() >= options_.max_ahead) return false;
      last_submitted_ = batch_index;
      outstanding_.push_back(batch);
      queue_.push_back(std::move(batch));
    }
    work_cv_.notify_one();
    return true;
  }

  // Waits until the search for `batch_index` has finished or `deadline` has passed, and returns
  // its plan (see plan_source). Past the deadline the search is cancelled and not waited for.
  // `batch_index` must be the oldest batch submitted and not yet delivered; otherwise (never
  // submitted, delivered already, out of order, or another get is waiting for it) it throws
  // dip::error(invalid_argument). An exception from the fallback propagates; the batch is
  // then consumed and not counted.
  delivered_plan<Plan> get(std::size_t batch_index, clock::time_point deadline) {
    std::shared_ptr<detail::async_batch<Plan>> batch;
    plan_source source = plan_source::fallback;
    {
      std::unique_lock lock(mutex_);
      batch = claim(batch_index);
      const auto done = [&] { return batch->finished; };
      if (deadline == clock::time_point::max()) {
        done_cv_.wait(lock, done);
      } else {
        done_cv_.wait_until(lock, deadline, done);
      }
      outstanding_.pop_front();
      last_delivered_ = batch_index;
      batch->delivered = true;
      if (!batch->started) std::erase(queue_, batch);
      if (batch->finished && batch->error) {
        source = plan_source::error;
      } else if (!batch->best) {
        source = plan_source::fallback;
      } else {
        source = batch->finished && !batch->cancelled ? plan_source::in_time : plan_source::best_so_far;
      }
    }
    // The batch is delivered: no worker writes best, best_score or error any more.
    batch->stop.request_stop();  // a no-op unless the search is still queued or running
    std::optional<delivered_plan<Plan>> result;
    if (source == plan_source::in_time || source == plan_source::best_so_far) {
      result.emplace(delivered_plan<Plan>{batch_index, std::move(*batch->best), source, batch->best_score, {}});
    } else {
      result.emplace(delivered_plan<Plan>{batch_index, batch->fallback(batch_index), source, std::nullopt,
                                          source == plan_source::error ? *batch->error : std::string()});
    }
    {
      std::lock_guard lock(mutex_);
      switch (source) {
        case plan_source::in_time: ++stats_.planned_in_time; break;
        case plan_source::best_so_far: ++stats_.best_so_far_used; break;
        case plan_source::fallback: ++stats_.fallback_used; break;
        case plan_source::error:
          ++stats_.errors;
          last_error_ = planning_failure{batch_index, result->error};
          break;
      }
    }
    return std::move(*result);
  }

  // As above, with a deadline `timeout` from now (zero or negative: take what is there now).
  template <class Rep, class Period>
  delivered_plan<Plan> get(std::size_t batch_index, std::chrono::duration<Rep, Period> timeout) {
    const clock::time_point now = clock::now();
    if (timeout <= timeout.zero()) return get(batch_index, now);
    const std::chrono::duration<double> room = clock::time_point::max() - now;
    if (std::chrono::duration<double>(timeout) >= room) return get(batch_index, clock::time_point::max());
    return get(batch_index, now + std::chrono::duration_cast<clock::duration>(timeout));
  }

  // Without a deadline: waits for the search to finish (or to be cancelled by cancel_all).
  delivered_plan<Plan> get(std::size_t batch_index) { return get(batch_index, clock::time_point::max()); }

  // Cancels every batch submitted and not yet delivered: queued ones never run, running ones are
  // asked to stop. Their `get` then returns promptly with the best plan so far or the fallback.
  // Batches submitted afterwards are planned as usual.
  void cancel_all() {
    std::vector<std::shared_ptr<detail::async_batch<Plan>>> to_stop;
    {
      std::lock_guard lock(mutex_);
      for (const auto& batch : outstanding_) {
        if (!batch->started) {
          batch->finished = true;
          batch->cancelled = true;
        }
        to_stop.push_back(batch);
      }
      queue_.clear();
    }
    // Outside the lock: request_stop runs the search's stop callbacks.
    for (const auto& batch : to_stop) batch->stop.request_stop();
    done_cv_.notify_all();
  }

  async_planner_stats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

  std::optional<planning_failure> last_error() const {
    std::lock_guard lock(mutex_);
    return last_error_;
  }

  // Batches submitted and not yet delivered.
  std::size_t ahead() const {
    std::lock_guard lock(mutex_);
    return outstanding_.size();
  }

  const async_planner_options& options() const noexcept { return options_; }

 private:
  // The oldest undelivered batch if it is `index`; otherwise a dip::error saying why not.
  std::shared_ptr<detail::async_batch<Plan>> claim(std::size_t index) {
    const std::string where = "async_planner::get";
    const std::string name = "batch " + std::to_string(index);
    if (!outstanding_.empty() && outstanding_.front()->index == index) {
      require(!outstanding_.front()->claimed, errc::invalid_argument, where,
              name + " is already awaited by another get");
      outstanding_.front()->claimed = true;
      return outstanding_.front();
    }
    for (const auto& batch : outstanding_) {
      require(batch->index != index, errc::invalid_argument, where,
              name + " requested before batch " + std::to_string(outstanding_.front()->index) +
                  " (plans are delivered in submission order)");
    }
    if (last_delivered_ && index <= *last_delivered_) {
      throw error(errc::invalid_argument, where,
                  index == *last_delivered_ ? name + " was delivered already"
                                            : name + " precedes batch " + std::to_string(*last_delivered_) +
                                                  ", delivered already (plans are delivered in order)");
    }
    throw error(errc::invalid_argument, where, name + " was never submitted");
  }

  void work(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    while (true) {
      work_cv_.wait(lock, stop, [this] { return !queue_.empty(); });
      if (stop.stop_requested()) return;
      std::shared_ptr<detail::async_batch<Plan>> batch = std::move(queue_.front());
      queue_.pop_front();
      batch->started = true;
      lock.unlock();
      run(*batch);
      batch.reset();  // maybe the last owner: its plans and callables die outside the lock
      lock.lock();
    }
  }

  void run(detail::async_batch<Plan>& batch) {
    std::optional<std::string> failure;
    {
      planning_context<Plan> context(mutex_, batch);
      try {
        batch.search(batch.index, context);
      } catch (const std::exception& e) {
        failure = e.what();
      } catch (...) {
        failure = "unknown exception";
      }
    }
    search_function released = std::move(batch.search);  // its captures die outside the lock
    {
      std::lock_guard lock(mutex_);
      batch.finished = true;
      batch.cancelled = batch.stop.stop_requested();
      if (!batch.delivered) batch.error = std::move(failure);  // after delivery nobody asks
    }
    done_cv_.notify_all();
  }

  async_planner_options options_;
  search_function search_;
  fallback_function fallback_;

  mutable std::mutex mutex_;
  std::condition_variable_any work_cv_;  // with the workers' stop tokens
  std::condition_variable done_cv_;
  std::deque<std::shared_ptr<detail::async_batch<Plan>>> queue_;        // not started, oldest first
  std::deque<std::shared_ptr<detail::async_batch<Plan>>> outstanding_;  // not delivered, in order
  std::optional<std::size_t> last_submitted_;
  std::optional<std::size_t> last_delivered_;
  async_planner_stats stats_;
  std::optional<planning_failure> last_error_;

  std::vector<std::jthread> workers_;  // last: stopped and joined before the rest is destroyed
};

}  // namespace dip
