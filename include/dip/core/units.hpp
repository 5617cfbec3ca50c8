// Units that cannot be mixed up silently: time, bytes, floating-point operations and the rates
// between them.
//
// Each quantity stores a double in its SI base unit (seconds, bytes, FLOPs, FLOP/s, bytes/s).
// Construction from a raw number is explicit and the named factories say the unit
// (`milliseconds(10.5)`, `gib(80)`), so `duration + bytes` does not compile and a value in ms is
// never read as seconds. Only the physically meaningful cross operations exist:
// flops / flop_rate = duration, bytes / bandwidth = duration, bytes / duration = bandwidth.
// Doubles (not integers) because costs are derived from fractional per-token figures; a GPU's
// 141 GB are represented exactly all the same (integers up to 2^53 are).
#pragma once

#include <cmath>
#include <compare>
#include <cstdio>
#include <ostream>
#include <string>

namespace dip {

template <class Tag>
class quantity {
 public:
  constexpr quantity() noexcept = default;
  constexpr explicit quantity(double base_units) noexcept : value_(base_units) {}

  // The value in the SI base unit of Tag (seconds, bytes, FLOPs, FLOP/s, bytes/s).
  constexpr double base() const noexcept { return value_; }

  constexpr quantity& operator+=(quantity other) noexcept {
    value_ += other.value_;
    return *this;
  }
  constexpr quantity& operator-=(quantity other) noexcept {
    value_ -= other.value_;
    return *this;
  }
  constexpr quantity& operator*=(double factor) noexcept {
    value_ *= factor;
    return *this;
  }
  constexpr quantity& operator/=(double divisor) noexcept {
    value_ /= divisor;
    return *this;
  }

  friend constexpr quantity operator+(quantity a, quantity b) noexcept { return quantity(a.value_ + b.value_); }
  friend constexpr quantity operator-(quantity a, quantity b) noexcept { return quantity(a.value_ - b.value_); }
  friend constexpr quantity operator-(quantity a) noexcept { return quantity(-a.value_); }
  friend constexpr quantity operator*(quantity a, double k) noexcept { return quantity(a.value_ * k); }
  friend constexpr quantity operator*(double k, quantity a) noexcept { return quantity(a.value_ * k); }
  friend constexpr quantity operator/(quantity a, double k) noexcept { return quantity(a.value_ / k); }
  // The ratio of two quantities of one kind is a plain number.
  friend constexpr double operator/(quantity a, quantity b) noexcept { return a.value_ / b.value_; }

  friend constexpr auto operator<=>(quantity, quantity) noexcept = default;
  friend constexpr bool operator==(quantity, quantity) noexcept = default;

  bool is_finite() const noexcept { return std::isfinite(value_); }

 private:
  double value_ = 0.0;
};

struct duration_tag {};
struct bytes_tag {};
struct flops_tag {};
struct flop_rate_tag {};
struct bandwidth_tag {};

using duration = quantity<duration_tag>;    // seconds
using bytes = quantity<bytes_tag>;          // bytes
using flops = quantity<flops_tag>;          // floating-point operations (a count)
using flop_rate = quantity<flop_rate_tag>;  // FLOP/s
using bandwidth = quantity<bandwidth_tag>;  // bytes/s

// --- factories and accessors, named by unit ---------------------------------------------------
constexpr duration seconds(double s) noexcept { return duration(s); }
constexpr duration milliseconds(double ms) noexcept { return duration(ms * 1e-3); }
constexpr duration microseconds(double us) noexcept { return duration(us * 1e-6); }
constexpr double to_seconds(duration d) noexcept { return d.base(); }
constexpr double to_milliseconds(duration d) noexcept { return d.base() * 1e3; }
constexpr double to_microseconds(duration d) noexcept { return d.base() * 1e6; }

constexpr bytes kib(double n) noexcept { return bytes(n * 1024.0); }
constexpr bytes mib(double n) noexcept { return bytes(n * 1024.0 * 1024.0); }
constexpr bytes gib(double n) noexcept { return bytes(n * 1024.0 * 1024.0 * 1024.0); }
constexpr bytes gigabytes(double n) noexcept { return bytes(n * 1e9); }  // decimal, as vendors quote
constexpr double to_gib(bytes b) noexcept { return b.base() / (1024.0 * 1024.0 * 1024.0); }

constexpr flop_rate teraflops_per_second(double t) noexcept { return flop_rate(t * 1e12); }
constexpr bandwidth gigabytes_per_second(double g) noexcept { return bandwidth(g * 1e9); }

// --- the cross-unit operations that have a physical meaning ----------------------------------
constexpr duration operator/(flops work, flop_rate rate) noexcept { return duration(work.base() / rate.base()); }
constexpr duration operator/(bytes size, bandwidth rate) noexcept { return duration(size.base() / rate.base()); }
constexpr bandwidth operator/(bytes size, duration time) noexcept { return bandwidth(size.base() / time.base()); }
constexpr flop_rate operator/(flops work, duration time) noexcept { return flop_rate(work.base() / time.base()); }
constexpr bytes operator*(bandwidth rate, duration time) noexcept { return bytes(rate.base() * time.base()); }
constexpr bytes operator*(duration time, bandwidth rate) noexcept { return rate * time; }

// --- literals: `using namespace dip::literals;` then 10.5_ms, 80_GiB --------------------------
namespace literals {
constexpr duration operator""_s(long double v) noexcept { return seconds(static_cast<double>(v)); }
constexpr duration operator""_s(unsigned long long v) noexcept { return seconds(static_cast<double>(v)); }
constexpr duration operator""_ms(long double v) noexcept { return milliseconds(static_cast<double>(v)); }
constexpr duration operator""_ms(unsigned long long v) noexcept { return milliseconds(static_cast<double>(v)); }
constexpr duration operator""_us(long double v) noexcept { return microseconds(static_cast<double>(v)); }
constexpr duration operator""_us(unsigned long long v) noexcept { return microseconds(static_cast<double>(v)); }
constexpr bytes operator""_B(unsigned long long v) noexcept { return bytes(static_cast<double>(v)); }
constexpr bytes operator""_KiB(unsigned long long v) noexcept { return kib(static_cast<double>(v)); }
constexpr bytes operator""_MiB(unsigned long long v) noexcept { return mib(static_cast<double>(v)); }
constexpr bytes operator""_GiB(unsigned long long v) noexcept { return gib(static_cast<double>(v)); }
constexpr bytes operator""_GB(unsigned long long v) noexcept { return gigabytes(static_cast<double>(v)); }
}  // namespace literals

// --- printing: the unit a human reads best ---------------------------------------------------
inline std::string to_string(duration d) {
  char text[48];
  const double s = d.base();
  const double magnitude = std::fabs(s);
  if (magnitude >= 1.0) std::snprintf(text, sizeof text, "%.3f s", s);
  else if (magnitude >= 1e-3) std::snprintf(text, sizeof text, "%.3f ms", s * 1e3);
  else std::snprintf(text, sizeof text, "%.3f us", s * 1e6);
  return text;
}

inline std::string to_string(bytes b) {
  static constexpr const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = b.base();
  int unit = 0;
  while (std::fabs(value) >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  char text[48];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", value, units[unit]);
  return text;
}

inline std::ostream& operator<<(std::ostream& out, duration d) { return out << to_string(d); }
inline std::ostream& operator<<(std::ostream& out, bytes b) { return out << to_string(b); }

}  // namespace dip
