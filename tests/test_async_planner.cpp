// dip::async_planner: plans arrive in order with their batch index; past a deadline the search
// is cancelled and the best plan so far, else the fallback, is delivered; errors are counted;
// counters are exact; max_ahead is enforced; cancel_all and the destructor stop every search and
// join every thread promptly; a randomised stress run stays consistent. Timing assertions are
// only generous upper bounds (seconds), so a loaded machine does not fail them.
#include <doctest/doctest.h>

#include <dip/core/error.hpp>
#include <dip/planner/async_planner.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <filesystem>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr auto generous = 5s;  // "promptly": far above any expected time, far below a hang

// Move-only on purpose: the planner needs nothing more than std::movable.
struct test_plan {
  std::size_t batch = 0;
  double score = 0;
  bool fallback = false;
  std::unique_ptr<int> payload;
};

test_plan searched_plan(std::size_t batch, double score) {
  return {batch, score, false, std::make_unique<int>(static_cast<int>(batch))};
}

test_plan fallback_plan(std::size_t batch) { return {batch, 0, true, std::make_unique<int>(static_cast<int>(batch))}; }

using test_planner = dip::async_planner<test_plan>;
using context = dip::planning_context<test_plan>;

// A one-shot flag another thread can wait for, with a timeout so a bug fails instead of hanging.
class event {
 public:
  void set() {
    {
      std::lock_guard lock(mutex_);
      set_ = true;
    }
    cv_.notify_all();
  }
  bool wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [this] { return set_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool set_ = false;
};

// Blocks until the search is cancelled, without polling: the stop token wakes the wait.
void wait_until_cancelled(const context& ctx) {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  cv.wait(lock, ctx.stop_token(), [] { return false; });
}

// Sleeps for `duration` unless cancelled first; false when cancelled.
bool sleep_unless_cancelled(const context& ctx, std::chrono::microseconds duration) {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  cv.wait_for(lock, ctx.stop_token(), duration, [] { return false; });
  return !ctx.cancelled();
}

// Threads of this process (Linux); nullopt elsewhere. A throwaway thread is started first so
// that a runtime's lazily started helper thread (TSan's) is counted in the baseline.
std::optional<std::size_t> thread_count() {
#ifdef __linux__
  std::thread([] {}).join();
  std::error_code ec;
  std::filesystem::directory_iterator tasks("/proc/self/task", ec);
  if (ec) return std::nullopt;
  return static_cast<std::size_t>(std::distance(tasks, std::filesystem::directory_iterator{}));
#else
  return std::nullopt;
#endif
}

template <class F>
std::chrono::steady_clock::duration time_of(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::steady_clock::now() - start;
}

}  // namespace

TEST_CASE("async planner: plans arrive in order, each with its batch index") {
  std::atomic<int> wrong_index{0};
  std::atomic<int> kept_worse{0};
  test_planner p(
      {.workers = 2, .max_ahead = 2},
      [&](std::size_t i, context& ctx) {
        if (ctx.batch_index() != i) ++wrong_index;
        const double score = static_cast<double>(i) + 0.5;
        if (!ctx.offer(searched_plan(i, score), score)) ++kept_worse;
        if (ctx.offer(searched_plan(i, score + 10), score + 10)) ++kept_worse;  // worse: dropped
      },
      fallback_plan);
  constexpr std::size_t n = 30;
  p.submit(0);
  for (std::size_t i = 0; i < n; ++i) {
    if (i + 1 < n) p.submit(i + 1);  // plan the next batch while this one "runs"
    CHECK(p.ahead() <= 2);
    const auto r = p.get(i, generous);
    CHECK(r.batch_index == i);
    CHECK(r.plan.batch == i);
    CHECK(r.source == dip::plan_source::in_time);
    CHECK_FALSE(r.plan.fallback);
    REQUIRE(r.score.has_value());
    CHECK(*r.score == static_cast<double>(i) + 0.5);
    REQUIRE(r.plan.payload != nullptr);
    CHECK(*r.plan.payload == static_cast<int>(i));
  }
  CHECK(wrong_index == 0);
  CHECK(kept_worse == 0);
  CHECK(p.stats() == dip::async_planner_stats{n, 0, 0, 0});
  CHECK(p.stats().delivered() == n);
  CHECK(p.ahead() == 0);

  // Indexes may start anywhere and skip (a resumed run, a planner for every other batch).
  p.submit(1000);
  p.submit(1002);
  CHECK(p.get(1000, generous).plan.batch == 1000);
  CHECK(p.get(1002, generous).plan.batch == 1002);
}

TEST_CASE("async planner: past its deadline a search yields its best plan so far and is cancelled") {
  event offered;
  event returned;
  std::atomic<int> surprises{0};  // assertions stay on the test's thread
  test_planner p(
      {.workers = 1, .max_ahead = 2},
      [&](std::size_t i, context& ctx) {
        if (!ctx.offer(searched_plan(i, 10), 10)) ++surprises;
        if (!ctx.offer(searched_plan(i, 5), 5)) ++surprises;
        if (ctx.offer(searched_plan(i, 7), 7)) ++surprises;  // worse than 5
        if (ctx.best_score() != 5.0) ++surprises;
        offered.set();
        wait_until_cancelled(ctx);                           // an anytime search that would run forever
        if (ctx.offer(searched_plan(i, 1), 1)) ++surprises;  // delivered already: dropped
        returned.set();
      },
      fallback_plan);
  p.submit(0);
  REQUIRE(offered.wait_for(generous));
  std::optional<dip::delivered_plan<test_plan>> r;
  const auto took = time_of([&] { r = p.get(0, 20ms); });
  CHECK(took >= 20ms);     // it waited for the deadline ...
  CHECK(took < generous);  // ... and not for the search
  CHECK(r->source == dip::plan_source::best_so_far);
  CHECK(r->batch_index == 0);
  CHECK(r->plan.batch == 0);
  CHECK(r->plan.score == 5);
  CHECK(r->score == 5.0);
  CHECK_FALSE(r->plan.fallback);
  CHECK(returned.wait_for(generous));  // the search saw the cancellation and returned
  CHECK(surprises == 0);
  CHECK(p.stats() == dip::async_planner_stats{0, 1, 0, 0});
}

TEST_CASE("async planner: a search that offered nothing yields the fallback") {
  std::atomic<int> fallbacks{0};
  const auto counted_fallback = [&](std::size_t i) {
    ++fallbacks;
    return fallback_plan(i);
  };

  SUBCASE("past the deadline") {
    test_planner p(
        {.workers = 1, .max_ahead = 1}, [](std::size_t, context& ctx) { wait_until_cancelled(ctx); }, counted_fallback);
    p.submit(0);
    const auto r = p.get(0, 10ms);
    CHECK(r.source == dip::plan_source::fallback);
    CHECK(r.plan.fallback);
    CHECK(r.plan.batch == 0);
    CHECK_FALSE(r.score.has_value());
    CHECK(fallbacks == 1);
    CHECK(p.stats() == dip::async_planner_stats{0, 0, 1, 0});
  }
  SUBCASE("in time, having found nothing") {
    test_planner p(
        {.workers = 1, .max_ahead = 1}, [](std::size_t, context&) {}, counted_fallback);
    p.submit(0);
    const auto r = p.get(0);  // no deadline: waits for the search
    CHECK(r.source == dip::plan_source::fallback);
    CHECK(r.plan.fallback);
    CHECK(fallbacks == 1);
    CHECK(p.stats() == dip::async_planner_stats{0, 0, 1, 0});
  }
  SUBCASE("the fallback is only called when needed") {
    test_planner p(
        {.workers = 1, .max_ahead = 1}, [](std::size_t i, context& ctx) { ctx.offer(searched_plan(i, 1), 1); },
        counted_fallback);
    p.submit(0);
    CHECK(p.get(0, generous).source == dip::plan_source::in_time);
    CHECK(fallbacks == 0);
  }
}

TEST_CASE("async planner: a search that throws yields the fallback and counts an error") {
  test_planner p(
      {.workers = 2, .max_ahead = 4},
      [](std::size_t i, context& ctx) {
        if (i == 1) throw std::runtime_error("boom 1");
        ctx.offer(searched_plan(i, 1), 1);
        if (i == 2) throw 42;  // not a std::exception; the plan offered before is not used
      },
      fallback_plan);
  for (std::size_t i = 0; i < 4; ++i) p.submit(i);
  CHECK(p.get(0, generous).source == dip::plan_source::in_time);
  CHECK_FALSE(p.last_error().has_value());

  const auto r1 = p.get(1, generous);
  CHECK(r1.source == dip::plan_source::error);
  CHECK(r1.plan.fallback);
  CHECK(r1.plan.batch == 1);
  CHECK(r1.error == "boom 1");
  REQUIRE(p.last_error().has_value());
  CHECK(p.last_error()->batch_index == 1);
  CHECK(p.last_error()->message == "boom 1");

  const auto r2 = p.get(2, generous);
  CHECK(r2.source == dip::plan_source::error);
  CHECK(r2.plan.fallback);
  CHECK(r2.error == "unknown exception");
  CHECK(p.last_error()->batch_index == 2);

  CHECK(p.get(3, generous).source == dip::plan_source::in_time);
  CHECK(p.stats() == dip::async_planner_stats{2, 0, 0, 2});
}

TEST_CASE("async planner: counters are exact over a mix of outcomes, with per-batch callables") {
  event offered;
  test_planner p({.workers = 2, .max_ahead = 5}, nullptr, fallback_plan);  // every batch brings its search
  p.submit(0, [](std::size_t i, context& ctx) { ctx.offer(searched_plan(i, 3), 3); });
  p.submit(1, [&](std::size_t i, context& ctx) {
    ctx.offer(searched_plan(i, 4), 4);
    offered.set();
    wait_until_cancelled(ctx);
  });
  p.submit(
      2, [](std::size_t, context& ctx) { wait_until_cancelled(ctx); },
      [](std::size_t i) {
        test_plan plan = fallback_plan(i);
        plan.score = -2;  // this batch's own fallback
        return plan;
      });
  p.submit(3, [](std::size_t, context&) { throw std::logic_error("bad batch"); });
  p.submit(4, [](std::size_t, context&) {});

  CHECK(p.get(0, generous).source == dip::plan_source::in_time);
  REQUIRE(offered.wait_for(generous));
  const auto r1 = p.get(1, 10ms);
  CHECK(r1.source == dip::plan_source::best_so_far);
  CHECK(r1.plan.score == 4);
  const auto r2 = p.get(2, 10ms);
  CHECK(r2.source == dip::plan_source::fallback);
  CHECK(r2.plan.score == -2);
  const auto r3 = p.get(3, generous);
  CHECK(r3.source == dip::plan_source::error);
  CHECK(r3.error == "bad batch");
  CHECK(r3.plan.score == 0);  // the default fallback
  CHECK(p.get(4, generous).source == dip::plan_source::fallback);

  const dip::async_planner_stats s = p.stats();
  CHECK(s.planned_in_time == 1);
  CHECK(s.best_so_far_used == 1);
  CHECK(s.fallback_used == 2);
  CHECK(s.errors == 1);
  CHECK(s.delivered() == 5);
}

TEST_CASE("async planner: misuse is a dip::error") {
  const auto instant = [](std::size_t i, context& ctx) { ctx.offer(searched_plan(i, 1), 1); };
  const auto is_invalid_argument = [](auto&& call) {
    try {
      call();
    } catch (const dip::error& e) {
      return e.code() == dip::errc::invalid_argument;
    }
    return false;
  };

  CHECK(is_invalid_argument([&] { test_planner({.workers = 0, .max_ahead = 1}, instant, fallback_plan); }));
  CHECK(is_invalid_argument([&] { test_planner({.workers = 1, .max_ahead = 0}, instant, fallback_plan); }));
  {
    test_planner p({.workers = 1, .max_ahead = 2}, nullptr, nullptr);
    CHECK(is_invalid_argument([&] { p.submit(0); }));           // no search at all
    CHECK(is_invalid_argument([&] { p.submit(0, instant); }));  // no fallback at all
    CHECK(p.ahead() == 0);
  }

  test_planner p({.workers = 1, .max_ahead = 4}, instant, fallback_plan);
  p.submit(3);
  CHECK(is_invalid_argument([&] { p.submit(3); }));  // indexes must increase
  CHECK(is_invalid_argument([&] { p.submit(2); }));
  CHECK(is_invalid_argument([&] { p.get(7); }));  // never submitted
  CHECK(is_invalid_argument([&] { p.get(2); }));  // never submitted either
  CHECK(p.get(3, generous).plan.batch == 3);
  CHECK(is_invalid_argument([&] { p.get(3); }));  // twice
  CHECK(is_invalid_argument([&] { p.get(1); }));  // behind the last delivered
  p.submit(5);
  p.submit(6);
  CHECK(is_invalid_argument([&] { p.get(6); }));  // before 5: out of order
  CHECK(p.get(5, generous).plan.batch == 5);
  CHECK(p.get(6, generous).plan.batch == 6);
  CHECK(p.stats().delivered() == 3);

  try {
    p.get(9);
    FAIL("get of an unsubmitted batch did not throw");
  } catch (const dip::error& e) {
    CHECK(std::string(e.what()).find("batch 9") != std::string::npos);
  }
}

TEST_CASE("async planner: max_ahead is honoured; submit throws and try_submit refuses when full") {
  SUBCASE("refusal") {
    test_planner p(
        {.workers = 1, .max_ahead = 3}, [](std::size_t, context&) {}, fallback_plan);
    p.submit(0);
    p.submit(1);
    CHECK(p.try_submit(2));
    CHECK(p.ahead() == 3);
    CHECK_THROWS_AS(p.submit(3), dip::error);
    CHECK_FALSE(p.try_submit(3));
    CHECK(p.ahead() == 3);
    p.get(0, generous);
    CHECK(p.try_submit(3));  // a refused index was not taken
    CHECK_FALSE(p.try_submit(4));
    for (std::size_t i = 1; i <= 3; ++i) CHECK(p.get(i, generous).batch_index == i);
  }
  SUBCASE("no more than max_ahead searches run at once, however many workers") {
    std::atomic<int> running{0};
    std::atomic<int> most{0};
    test_planner p(
        {.workers = 4, .max_ahead = 2},
        [&](std::size_t i, context& ctx) {
          const int now = ++running;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          std::this_thread::sleep_for(1ms);
          ctx.offer(searched_plan(i, 1), 1);
          --running;
        },
        fallback_plan);
    constexpr std::size_t n = 20;
    std::size_t next = 0;
    for (std::size_t i = 0; i < n; ++i) {
      while (next < n && p.try_submit(next)) ++next;
      CHECK(p.ahead() <= 2);
      CHECK(p.get(i).source == dip::plan_source::in_time);  // no deadline: nothing is cancelled
    }
    CHECK(most.load() >= 1);
    CHECK(most.load() <= 2);
  }
}

TEST_CASE("async planner: cancel_all stops running and queued searches; planning resumes after") {
  event offered;
  std::atomic<int> ran_1{0};
  test_planner p(
      {.workers = 1, .max_ahead = 3},
      [&](std::size_t i, context& ctx) {
        if (i == 0) {
          ctx.offer(searched_plan(i, 3), 3);
          offered.set();
          wait_until_cancelled(ctx);
        } else if (i == 1) {
          ++ran_1;
        } else {
          ctx.offer(searched_plan(i, 2), 2);
        }
      },
      fallback_plan);
  p.submit(0);
  p.submit(1);  // queued behind batch 0 on the only worker
  REQUIRE(offered.wait_for(generous));
  p.cancel_all();
  std::optional<dip::delivered_plan<test_plan>> r0;
  CHECK(time_of([&] { r0 = p.get(0); }) < generous);  // no deadline, yet prompt
  CHECK(r0->source == dip::plan_source::best_so_far);
  CHECK(r0->plan.score == 3);
  const auto r1 = p.get(1);
  CHECK(r1.source == dip::plan_source::fallback);
  CHECK(ran_1 == 0);  // cancelled before it started: never ran
  p.submit(2);
  CHECK(p.get(2, generous).source == dip::plan_source::in_time);
  CHECK(p.stats() == dip::async_planner_stats{1, 1, 1, 0});
}

TEST_CASE("async planner: destruction with searches in flight is prompt and leaves no thread") {
  const std::optional<std::size_t> threads_before = thread_count();
  std::atomic<int> started{0};
  std::atomic<int> running{0};
  event two_started;
  {
    // No submit at all: workers still start and stop.
    test_planner idle(
        {.workers = 3, .max_ahead = 1}, [](std::size_t, context&) {}, fallback_plan);
  }
  std::chrono::steady_clock::duration took{};
  {
    auto p = std::make_unique<test_planner>(
        dip::async_planner_options{.workers = 2, .max_ahead = 3},
        [&](std::size_t, context& ctx) {
          ++running;
          if (++started == 2) two_started.set();
          wait_until_cancelled(ctx);  // would never finish on its own
          --running;
        },
        fallback_plan);
    for (std::size_t i = 0; i < 3; ++i) p->submit(i);  // two run, one is queued
    REQUIRE(two_started.wait_for(generous));
    took = time_of([&] { p.reset(); });
  }
  CHECK(took < generous);
  CHECK(running == 0);  // every search returned before the destructor did
  CHECK(started == 2);  // the queued batch never ran
  if (threads_before) CHECK(thread_count() == threads_before);
}

TEST_CASE("async planner: stress, hundreds of batches with random durations and deadlines") {
  struct spec {
    std::chrono::microseconds duration;
    int offers = 0;  // plans offered, scores 100, 90, 80, ...
    bool throws = false;
    std::optional<std::chrono::microseconds> deadline;  // nullopt: wait for the search
  };
  constexpr std::size_t n = 250;
  std::mt19937 rng(20250607);
  std::vector<spec> specs(n);
  for (spec& s : specs) {
    s.duration = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 2000)(rng));
    s.offers = std::uniform_int_distribution<int>(0, 3)(rng);
    s.throws = std::uniform_int_distribution<int>(0, 19)(rng) == 0;
    const int d = std::uniform_int_distribution<int>(0, 4)(rng);
    if (d < 4) s.deadline = std::chrono::microseconds(d * 1000);  // 0 to 3 ms
  }
  const auto best_of = [](int offers) { return 100.0 - 10.0 * (offers - 1); };

  const std::optional<std::size_t> threads_before = thread_count();
  std::atomic<int> in_flight{0};
  dip::async_planner_stats tally;
  {
    test_planner p(
        {.workers = 3, .max_ahead = 3},
        [&](std::size_t i, context& ctx) {
          ++in_flight;
          const spec& s = specs[i];
          const auto step = s.duration / (s.offers + 1);
          bool going = true;
          for (int k = 0; k < s.offers && going; ++k) {
            going = sleep_unless_cancelled(ctx, step);
            if (going) ctx.offer(searched_plan(i, 100.0 - 10.0 * k), 100.0 - 10.0 * k);
          }
          if (going) sleep_unless_cancelled(ctx, step);
          --in_flight;
          if (s.throws) throw std::runtime_error("boom " + std::to_string(i));
        },
        fallback_plan);
    std::size_t next = 0;
    for (std::size_t i = 0; i < n; ++i) {
      while (next < n && p.try_submit(next)) ++next;
      const spec& s = specs[i];
      const auto r = s.deadline ? p.get(i, *s.deadline) : p.get(i);
      CHECK(r.batch_index == i);
      CHECK(r.plan.batch == i);
      REQUIRE(r.plan.payload != nullptr);
      CHECK(*r.plan.payload == static_cast<int>(i));
      switch (r.source) {
        case dip::plan_source::in_time:
          ++tally.planned_in_time;
          CHECK_FALSE(r.plan.fallback);
          CHECK(s.offers > 0);
          CHECK_FALSE(s.throws);
          CHECK(r.plan.score == best_of(s.offers));
          CHECK(r.score == r.plan.score);
          break;
        case dip::plan_source::best_so_far:
          ++tally.best_so_far_used;
          CHECK_FALSE(r.plan.fallback);
          CHECK(s.offers > 0);
          CHECK(s.deadline.has_value());  // only a deadline cancels here
          CHECK(r.plan.score >= best_of(s.offers));
          CHECK(r.plan.score <= 100);
          CHECK(r.score == r.plan.score);
          break;
        case dip::plan_source::fallback:
          ++tally.fallback_used;
          CHECK(r.plan.fallback);
          CHECK_FALSE(r.score.has_value());
          if (!s.deadline) CHECK(s.offers == 0);  // waited for the search: it found nothing
          break;
        case dip::plan_source::error:
          ++tally.errors;
          CHECK(r.plan.fallback);
          CHECK(s.throws);
          CHECK(r.error == "boom " + std::to_string(i));
          break;
      }
      if (!s.deadline && s.throws) CHECK(r.source == dip::plan_source::error);
      if (!s.deadline && !s.throws && s.offers > 0) CHECK(r.source == dip::plan_source::in_time);
    }
    CHECK(p.stats() == tally);
    CHECK(p.stats().delivered() == n);
  }
  CHECK(in_flight == 0);
  if (threads_before) CHECK(thread_count() == threads_before);
  MESSAGE("stress: in time " << tally.planned_in_time << ", best so far " << tally.best_so_far_used << ", fallback "
                             << tally.fallback_used << ", errors " << tally.errors);
}
