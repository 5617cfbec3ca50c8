// Tests for dip::generator: laziness, sequences, std::views composition, range concepts, move
// semantics, frame destruction, exception propagation, no-copy yields, by-value inputs and
// nesting. Checks marked "fallback only" cover points where dip's own implementation documents
// a stronger guarantee than std::generator.
#include <doctest/doctest.h>

#include <dip/core/generator.hpp>

#include <concepts>
#include <cstddef>
#include <iterator>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using int_generator = dip::generator<int>;

static_assert(!std::copy_constructible<int_generator>);
static_assert(!std::is_copy_assignable_v<int_generator>);
static_assert(std::move_constructible<int_generator>);
static_assert(std::movable<int_generator>);
static_assert(std::ranges::input_range<int_generator>);
static_assert(std::ranges::view<int_generator>);
static_assert(!std::ranges::forward_range<int_generator>);
static_assert(std::same_as<std::ranges::range_value_t<int_generator>, int>);
static_assert(std::same_as<std::ranges::sentinel_t<int_generator>, std::default_sentinel_t>);
static_assert(std::same_as<std::ranges::range_difference_t<int_generator>, std::ptrdiff_t>);
static_assert(std::same_as<std::ranges::range_reference_t<dip::generator<int&>>, int&>);
static_assert(std::same_as<std::ranges::range_reference_t<dip::generator<const int&>>, const int&>);
static_assert(std::ranges::viewable_range<int_generator>);    // an rvalue pipes into views
static_assert(!std::ranges::viewable_range<int_generator&>);  // an lvalue must be moved
#if !DIP_GENERATOR_IS_STD
static_assert(std::same_as<std::ranges::range_reference_t<int_generator>, const int&>);
static_assert(std::default_initializable<int_generator>);
#endif

template <std::ranges::input_range R>
std::vector<int> collect(R&& range) {
  std::vector<int> out;
  for (auto&& x : range) out.push_back(x);
  return out;
}

template <std::input_iterator I>
bool at_end(const I& it) {
  return it == std::default_sentinel;
}

int_generator iota_from(int first) {
  for (int i = first;; ++i) co_yield i;
}

int_generator squares_up_to(int last) {
  for (int i = 1; i <= last; ++i) co_yield i* i;
}

int_generator nothing() { co_return; }

// Counts how far the body has run.
int_generator count_runs(std::shared_ptr<int> runs) {
  ++*runs;
  co_yield 1;
  ++*runs;
  co_yield 2;
  ++*runs;
}

// Lives in a coroutine frame; records its own destruction.
struct frame_probe {
  std::shared_ptr<int> destroyed;
  explicit frame_probe(std::shared_ptr<int> counter) : destroyed(std::move(counter)) {}
  frame_probe(const frame_probe&) = delete;
  frame_probe& operator=(const frame_probe&) = delete;
  ~frame_probe() { ++*destroyed; }
};

int_generator probed_iota(std::shared_ptr<int> destroyed) {
  frame_probe probe{std::move(destroyed)};
  for (int i = 0;; ++i) co_yield i;
}

int_generator probed_count(std::shared_ptr<int> destroyed, int count) {
  frame_probe probe{std::move(destroyed)};
  for (int i = 0; i < count; ++i) co_yield i;
}

int_generator throws_after(int good_values) {
  for (int i = 0; i < good_values; ++i) co_yield i;
  throw std::runtime_error("generator body failed");
}

struct copy_counter {
  static inline int copies = 0;
  static inline int moves = 0;
  int value = 0;

  explicit copy_counter(int v) : value(v) {}
  copy_counter(const copy_counter& other) : value(other.value) { ++copies; }
  copy_counter(copy_counter&& other) noexcept : value(other.value) { ++moves; }
  copy_counter& operator=(const copy_counter& other) {
    value = other.value;
    ++copies;
    return *this;
  }
  copy_counter& operator=(copy_counter&& other) noexcept {
    value = other.value;
    ++moves;
    return *this;
  }
  ~copy_counter() = default;

  static void reset() { copies = moves = 0; }
};

// Yields two frame locals as lvalues and reports where each lives.
template <class Yielded>
dip::generator<Yielded> yield_locals(std::shared_ptr<const copy_counter*> where) {
  copy_counter first{1};
  *where = &first;
  co_yield first;
  copy_counter second{2};
  *where = &second;
  co_yield second;
}

dip::generator<copy_counter> yield_temporaries() {
  co_yield copy_counter{7};
  co_yield copy_counter{8};
}

// Yields a frame local by mutable reference and records what the consumer left in it.
dip::generator<int&> mutable_counter(std::shared_ptr<std::vector<int>> seen) {
  int x = 0;
  for (int i = 0; i < 3; ++i) {
    co_yield x;
    seen->push_back(x);
    ++x;
  }
}

int_generator each_of(std::vector<int> values) {
  for (int v : values) co_yield v;
}

// Nesting without recursion: the inner generator is a by-value parameter owned by the frame.
int_generator scaled(int_generator source, int factor) {
  for (int v : source) co_yield v* factor;
}

}  // namespace

TEST_CASE("generator: the body does not run until begin()") {
  auto runs = std::make_shared<int>(0);
  auto gen = count_runs(runs);
  CHECK(*runs == 0);
  auto it = gen.begin();
  CHECK(*runs == 1);
  CHECK(*it == 1);
  ++it;
  CHECK(*runs == 2);
  CHECK(*it == 2);
  ++it;
  CHECK(*runs == 3);
  CHECK(at_end(it));
}

TEST_CASE("generator: yields its sequence") {
  CHECK(collect(squares_up_to(4)) == std::vector<int>{1, 4, 9, 16});
  CHECK(collect(squares_up_to(0)).empty());
  CHECK(collect(nothing()).empty());

  auto empty = nothing();
  CHECK(at_end(empty.begin()));
}

TEST_CASE("generator: an infinite generator is cut by views::take") {
  CHECK(collect(iota_from(5) | std::views::take(4)) == std::vector<int>{5, 6, 7, 8});

  auto gen = iota_from(-2);
  CHECK(collect(std::move(gen) | std::views::take(3)) == std::vector<int>{-2, -1, 0});
}

TEST_CASE("generator: composes with views::filter and views::transform") {
  auto odd = [](int x) { return x % 2 != 0; };
  auto times_ten = [](int x) { return x * 10; };
  CHECK(collect(iota_from(0) | std::views::filter(odd) | std::views::transform(times_ten) | std::views::take(3)) ==
        std::vector<int>{10, 30, 50});
  CHECK(collect(squares_up_to(5) | std::views::filter(odd)) == std::vector<int>{1, 9, 25});
}

TEST_CASE("generator: moving transfers the frame and empties the source") {
  auto destroyed = std::make_shared<int>(0);

  SUBCASE("moved before begin(): the new owner starts from the beginning") {
    auto source = std::make_unique<int_generator>(probed_iota(destroyed));
    auto target = std::move(*source);
    source.reset();  // destroying the moved-from generator must not touch the frame
    CHECK(collect(std::move(target) | std::views::take(3)) == std::vector<int>{0, 1, 2});
  }

  SUBCASE("moved mid-iteration: the new owner continues where it was") {
    auto source = std::make_unique<int_generator>(probed_iota(destroyed));
    auto it = source->begin();
    ++it;
    CHECK(*it == 1);
    {
      auto target = std::move(*source);
      source.reset();
      CHECK(*destroyed == 0);
      CHECK(*it == 1);
      ++it;
      CHECK(*it == 2);

      // Move assignment destroys the target's previous frame and takes the new one.
      auto other_destroyed = std::make_shared<int>(0);
      auto assigned = probed_iota(other_destroyed);
      CHECK(*assigned.begin() == 0);
      assigned = std::move(target);
      CHECK(*other_destroyed == 1);
      CHECK(*destroyed == 0);
      ++it;
      CHECK(*it == 3);
    }
    CHECK(*destroyed == 1);
  }

#if !DIP_GENERATOR_IS_STD
  SUBCASE("fallback only: a moved-from generator is an empty range") {
    auto source = probed_iota(destroyed);
    auto target = std::move(source);
    CHECK(at_end(source.begin()));
    CHECK(*target.begin() == 0);
  }
#endif
}

TEST_CASE("generator: destroying it destroys the coroutine frame") {
  auto destroyed = std::make_shared<int>(0);

  SUBCASE("mid-iteration") {
    {
      auto gen = probed_iota(destroyed);
      auto it = gen.begin();
      ++it;
      ++it;
      CHECK(*it == 2);
      CHECK(*destroyed == 0);
    }
    CHECK(*destroyed == 1);
  }

  SUBCASE("after exhaustion, exactly once") {
    {
      auto gen = probed_count(destroyed, 3);
      CHECK(collect(gen) == std::vector<int>{0, 1, 2});
      CHECK(*destroyed == 1);  // the body finished: its locals are gone
    }
    CHECK(*destroyed == 1);
  }

  SUBCASE("never started: the frame and its parameter copies are released") {
    {
      auto gen = probed_iota(destroyed);
      CHECK(destroyed.use_count() == 2);  // the parameter copy lives in the frame
    }
    CHECK(destroyed.use_count() == 1);
    CHECK(*destroyed == 0);  // the body never ran, so the probe never existed
  }
}

TEST_CASE("generator: an exception in the body is rethrown to the consumer") {
  SUBCASE("before the first yield: from begin()") {
    auto gen = throws_after(0);
    CHECK_THROWS_WITH_AS(gen.begin(), "generator body failed", std::runtime_error);
  }

  SUBCASE("after some yields: from ++it, with earlier values delivered") {
    auto gen = throws_after(2);
    auto it = gen.begin();
    CHECK(*it == 0);
    ++it;
    CHECK(*it == 1);
    CHECK_THROWS_WITH_AS(++it, "generator body failed", std::runtime_error);
    CHECK(at_end(it));
  }

  SUBCASE("through a range-for") {
    std::vector<int> seen;
    auto consume = [&seen] {
      for (int x : throws_after(3)) seen.push_back(x);
    };
    CHECK_THROWS_AS(consume(), std::runtime_error);
    CHECK(seen == std::vector<int>{0, 1, 2});
  }
}

TEST_CASE("generator: a yielded lvalue is not copied; *it is the object in the frame") {
  copy_counter::reset();
  auto where = std::make_shared<const copy_counter*>(nullptr);
  auto gen = yield_locals<const copy_counter&>(where);
  auto it = gen.begin();
  CHECK(&*it == *where);
  CHECK((*it).value == 1);
  ++it;
  CHECK(&*it == *where);
  CHECK((*it).value == 2);
  ++it;
  CHECK(at_end(it));
  CHECK(copy_counter::copies == 0);
  CHECK(copy_counter::moves == 0);
}

#if !DIP_GENERATOR_IS_STD
TEST_CASE("generator: fallback only: generator<T> does not copy a yielded lvalue either") {
  copy_counter::reset();
  auto where = std::make_shared<const copy_counter*>(nullptr);
  auto gen = yield_locals<copy_counter>(where);
  auto it = gen.begin();
  CHECK(&*it == *where);
  ++it;
  CHECK(&*it == *where);
  CHECK((*it).value == 2);
  CHECK(copy_counter::copies == 0);
  CHECK(copy_counter::moves == 0);
}
#endif

TEST_CASE("generator: a yielded temporary is neither copied nor moved") {
  copy_counter::reset();
  std::vector<int> values;
  for (const copy_counter& c : yield_temporaries()) values.push_back(c.value);
  CHECK(values == std::vector<int>{7, 8});
  CHECK(copy_counter::copies == 0);
  CHECK(copy_counter::moves == 0);
}

TEST_CASE("generator<T&>: the consumer writes through to the frame") {
  auto seen = std::make_shared<std::vector<int>>();
  for (int& x : mutable_counter(seen)) x *= 10;
  // 0*10 = 0, then (0+1)*10 = 10, then (10+1)*10 = 110; copies would give {0, 1, 2}.
  CHECK(*seen == std::vector<int>{0, 10, 110});
}

TEST_CASE("generator: an input taken by value outlives the caller's copy") {
  auto gen = [] {
    std::vector<int> source{1, 2, 3};
    return each_of(source);
  }();
  std::vector<int> reuse(3, -1);  // likely to land where the caller's vector was
  CHECK(reuse.size() == 3);
  CHECK(collect(gen) == std::vector<int>{1, 2, 3});
}

TEST_CASE("generator: a generator consuming another generator") {
  CHECK(collect(scaled(squares_up_to(3), 10)) == std::vector<int>{10, 40, 90});
  CHECK(collect(scaled(scaled(iota_from(1), 2), 3) | std::views::take(3)) == std::vector<int>{6, 12, 18});

  SUBCASE("the inner body stays lazy until the outer one pulls") {
    auto runs = std::make_shared<int>(0);
    auto gen = scaled(count_runs(runs), 100);
    CHECK(*runs == 0);
    auto it = gen.begin();
    CHECK(*runs == 1);
    CHECK(*it == 100);
  }

  SUBCASE("destroying the outer generator destroys the inner frame") {
    auto destroyed = std::make_shared<int>(0);
    {
      auto gen = scaled(probed_iota(destroyed), 2);
      auto it = gen.begin();
      ++it;
      CHECK(*it == 2);
      CHECK(*destroyed == 0);
    }
    CHECK(*destroyed == 1);
  }

  SUBCASE("an inner exception reaches the outer consumer") {
    auto gen = scaled(throws_after(1), 5);
    auto it = gen.begin();
    CHECK(*it == 0);
    CHECK_THROWS_AS(++it, std::runtime_error);
  }
}

#if !DIP_GENERATOR_IS_STD
TEST_CASE("generator: fallback only: single pass and empty default") {
  auto gen = iota_from(0);
  CHECK(*gen.begin() == 0);
  CHECK_THROWS_AS(gen.begin(), std::logic_error);

  int_generator empty;
  CHECK(at_end(empty.begin()));
  CHECK(collect(empty).empty());
}
#endif
