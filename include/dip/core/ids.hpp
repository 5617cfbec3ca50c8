// Strongly typed integer ids: a module id cannot be passed where a rank is expected.
//
// An id is a dense index (0, 1, 2, ...) into the container that owns the thing it names, so
// `value()` can index a std::vector directly. A default-constructed id is invalid.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <ostream>

namespace dip {

template <class Tag, class Rep = std::uint32_t>
class strong_id {
 public:
  using rep_type = Rep;
  static constexpr Rep invalid_value = std::numeric_limits<Rep>::max();

  constexpr strong_id() noexcept = default;
  constexpr explicit strong_id(Rep value) noexcept : value_(value) {}
  // From a container index; the caller guarantees it fits (ids index vectors far below 2^32).
  static constexpr strong_id from_index(std::size_t index) noexcept { return strong_id(static_cast<Rep>(index)); }

  constexpr Rep value() const noexcept { return value_; }
  constexpr std::size_t index() const noexcept { return static_cast<std::size_t>(value_); }
  constexpr bool valid() const noexcept { return value_ != invalid_value; }

  friend constexpr auto operator<=>(strong_id, strong_id) noexcept = default;
  friend constexpr bool operator==(strong_id, strong_id) noexcept = default;
  friend std::ostream& operator<<(std::ostream& out, strong_id id) {
    return id.valid() ? out << +id.value_ : out << "invalid";
  }

 private:
  Rep value_ = invalid_value;
};

using module_id = strong_id<struct module_tag>;
using rank_id = strong_id<struct rank_tag>;
using chunk_id = strong_id<struct chunk_tag>;
using microbatch_id = strong_id<struct microbatch_tag>;
using stage_id = strong_id<struct stage_tag>;

}  // namespace dip

template <class Tag, class Rep>
struct std::hash<dip::strong_id<Tag, Rep>> {
  std::size_t operator()(dip::strong_id<Tag, Rep> id) const noexcept { return std::hash<Rep>{}(id.value()); }
};
