#pragma once
// dip::generator<T>: a lazy, single-pass C++20 coroutine generator.
//
// Contract: the body does not run until begin(); each ++it resumes it up to the next co_yield.
// A yielded value is not copied: *it refers to the object in the coroutine frame (a local, or
// the temporary of `co_yield f();`) and stays valid until the next ++it or the generator's
// destruction. An exception escaping the body is rethrown from begin() or ++it, after which the
// range has ended. The generator owns its frame (move-only) and destroys it when destroyed,
// mid-iteration included. It is a std::ranges::view and an input_range (not forward): pipe it
// into std::views as an rvalue, `make() | std::views::take(3)` or `std::move(g) | ...`, because
// a move-only view lvalue is not viewable_range.
//
// Lifetime rule: the body runs after the call that created the generator has returned, so
// reference parameters and lambda captures dangle after the first suspension. Take inputs by
// value or by std::shared_ptr<const T>; give a coroutine lambda parameters, not captures.
//
// Where the standard library has std::generator (__cpp_lib_generator), dip::generator<T> is
// std::generator<T> and DIP_GENERATOR_IS_STD is 1. Otherwise it is the fallback below
// (DIP_GENERATOR_IS_STD is 0), which differs from std::generator in these documented points:
//  - generator<T> with T not a reference has reference type `const T&` (std: `T&&`), so an
//    lvalue `co_yield x;` is never copied (std copies it). Portable code reads *it as const.
//  - generator<T&>, generator<const T&> and generator<T&&> have reference type T&, const T&, T&&.
//  - begin() at most once: a second call throws std::logic_error (std: undefined behaviour).
//  - default-constructed and moved-from generators are empty ranges (std: only destroy/assign).
//  - no allocator parameter and no std::ranges::elements_of; nest by looping over the inner
//    generator and yielding each element. co_await in the body is ill-formed in both.

#include <version>

#if defined(__cpp_lib_generator)

#include <generator>

#define DIP_GENERATOR_IS_STD 1

namespace dip {

template <class T>
using generator = std::generator<T>;

}  // namespace dip

#else

#include <cassert>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <utility>

#define DIP_GENERATOR_IS_STD 0

namespace dip {

// A view through view_base rather than view_interface: view_interface adds nothing to an input-only
// range (its members need forward ranges), and Clang before 16 checks those members' constraints
// while generator<T> is still incomplete, which rejects every function returning a generator.
template <class T>
class generator : public std::ranges::view_base {
 public:
  using value_type = std::remove_cvref_t<T>;
  using reference = std::conditional_t<std::is_reference_v<T>, T, const T&>;

  class promise_type {
   public:
    generator get_return_object() noexcept {
      return generator{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }

    // One overload covers lvalues and temporaries alike (for non-reference T): a temporary
    // lives until the end of the co_yield full-expression, i.e. until the next resumption.
    std::suspend_always yield_value(reference value) noexcept {
      value_ = std::addressof(value);
      return {};
    }
    void return_void() const noexcept {}
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    // A generator body has nothing to await.
    template <class U>
    std::suspend_never await_transform(U&&) = delete;

    reference value() const noexcept { return static_cast<reference>(*value_); }
    void rethrow_if_failed() {
      if (exception_) std::rethrow_exception(std::exchange(exception_, nullptr));
    }

   private:
    std::add_pointer_t<reference> value_ = nullptr;
    std::exception_ptr exception_;
  };

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using difference_type = std::ptrdiff_t;
    using value_type = typename generator::value_type;

    iterator() noexcept = default;
    iterator(iterator&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
    iterator& operator=(iterator&& other) noexcept {
      handle_ = std::exchange(other.handle_, {});
      return *this;
    }

    reference operator*() const noexcept {
      assert(handle_ && !handle_.done());
      return handle_.promise().value();
    }
    iterator& operator++() {
      assert(handle_ && !handle_.done());
      handle_.resume();
      handle_.promise().rethrow_if_failed();
      return *this;
    }
    void operator++(int) { ++*this; }

    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return !it.handle_ || it.handle_.done();
    }

   private:
    friend generator;
    explicit iterator(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}

    std::coroutine_handle<promise_type> handle_{};
  };

  generator() noexcept = default;
  generator(const generator&) = delete;
  generator& operator=(const generator&) = delete;
  // Iterators obtained from `other` stay valid and now iterate *this.
  generator(generator&& other) noexcept
      : handle_(std::exchange(other.handle_, {})), started_(std::exchange(other.started_, false)) {}
  generator& operator=(generator&& other) noexcept {
    if (this != &other) {
      destroy_frame();
      handle_ = std::exchange(other.handle_, {});
      started_ = std::exchange(other.started_, false);
    }
    return *this;
  }
  ~generator() { destroy_frame(); }

  // Runs the body up to its first co_yield. Single pass: throws std::logic_error if called
  // again on the same (non-empty) generator.
  iterator begin() {
    if (!handle_) return iterator{};
    if (started_) throw std::logic_error("dip::generator::begin() called twice (single-pass)");
    started_ = true;
    handle_.resume();
    handle_.promise().rethrow_if_failed();
    return iterator{handle_};
  }
  std::default_sentinel_t end() const noexcept { return std::default_sentinel; }

 private:
  explicit generator(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}

  void destroy_frame() noexcept {
    if (handle_) std::exchange(handle_, {}).destroy();
  }

  std::coroutine_handle<promise_type> handle_{};
  bool started_ = false;
};

}  // namespace dip

#endif
