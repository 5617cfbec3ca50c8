// Core: errors carry what and where; units refuse to mix; ids are distinct types.
#include <doctest/doctest.h>

#include <atomic>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include <dip/core/error.hpp>
#include <dip/core/ids.hpp>
#include <dip/core/parallel_for.hpp>
#include <dip/core/units.hpp>

using namespace dip::literals;

TEST_CASE("error composes where and what and keeps its category") {
  const dip::error e(dip::errc::parse_error, "model.json: modules[2].layers", "expected an integer");
  CHECK(std::string(e.what()) == "model.json: modules[2].layers: expected an integer");
  CHECK(e.where() == "model.json: modules[2].layers");
  CHECK(e.detail() == "expected an integer");
  CHECK(e.code() == dip::errc::parse_error);
  const dip::error bare(dip::errc::infeasible, "", "no schedule fits");
  CHECK(std::string(bare.what()) == "no schedule fits");
  CHECK_THROWS_AS(dip::require(false, dip::errc::invalid_argument, "--pp", "must be > 0"), dip::error);
  CHECK_NOTHROW(dip::require(true, dip::errc::invalid_argument, "--pp", "must be > 0"));
}

TEST_CASE("units convert exactly and only combine where physics allows") {
  CHECK(dip::to_milliseconds(10.5_ms) == doctest::Approx(10.5));
  CHECK(dip::to_seconds(1500_ms) == doctest::Approx(1.5));
  CHECK(dip::to_microseconds(2_ms) == doctest::Approx(2000));
  CHECK((80_GiB).base() == 80.0 * 1024 * 1024 * 1024);
  CHECK((80_GB).base() == 80e9);
  CHECK(dip::to_gib(dip::gib(3)) == doctest::Approx(3));
  // 1 TFLOP at 1 PFLOP/s is 1 ms; 1 GB at 200 GB/s is 5 ms.
  CHECK(dip::to_milliseconds(dip::flops(1e12) / dip::teraflops_per_second(1000)) == doctest::Approx(1));
  CHECK(dip::to_milliseconds(dip::gigabytes(1) / dip::gigabytes_per_second(200)) == doctest::Approx(5));
  CHECK((dip::gigabytes_per_second(100) * 2_s).base() == doctest::Approx(200e9));
  CHECK(3_ms / 1_ms == doctest::Approx(3.0));
  CHECK(2_ms + 1_ms == 3_ms);
  CHECK(2_ms * 3.0 == 6_ms);
  CHECK(1_ms < 2_ms);
  // The point of the types: these must not compile.
  static_assert(!std::is_convertible_v<double, dip::duration>);
  static_assert(!std::is_convertible_v<dip::bytes, dip::duration>);
  static_assert(!std::is_invocable_v<std::plus<>, dip::duration, dip::bytes>);
  static_assert(!std::is_invocable_v<std::plus<>, dip::duration, double>);
  static_assert(std::is_same_v<decltype(dip::bytes(1) / dip::bandwidth(1)), dip::duration>);
}

TEST_CASE("units print in a readable unit") {
  CHECK(dip::to_string(10.5_ms) == "10.500 ms");
  CHECK(dip::to_string(2_s) == "2.000 s");
  CHECK(dip::to_string(5_us) == "5.000 us");
  CHECK(dip::to_string(80_GiB) == "80.00 GiB");
  CHECK(dip::to_string(dip::bytes(512)) == "512 B");
  std::ostringstream out;
  out << 3_ms;
  CHECK(out.str() == "3.000 ms");
}

TEST_CASE("ids are distinct types, default invalid, hashable") {
  static_assert(!std::is_convertible_v<dip::module_id, dip::rank_id>);
  static_assert(!std::is_convertible_v<unsigned, dip::module_id>);
  dip::module_id none;
  CHECK_FALSE(none.valid());
  const auto three = dip::module_id::from_index(3);
  CHECK(three.valid());
  CHECK(three.index() == 3);
  CHECK(dip::module_id(2) < three);
  std::unordered_set<dip::module_id> set{three, dip::module_id(3), dip::module_id(4)};
  CHECK(set.size() == 2);
  std::ostringstream out;
  out << three << ' ' << none;
  CHECK(out.str() == "3 invalid");
}

TEST_CASE("parallel_for runs every index once, and rethrows the lowest index's error on any thread count") {
  for (unsigned threads : {0u, 1u, 2u, 5u}) {
    CAPTURE(threads);
    for (std::size_t count : {0u, 1u, 7u, 100u}) {
      std::vector<std::atomic<int>> runs(count);
      dip::parallel_for(count, threads, [&](std::size_t i) { runs[i].fetch_add(1); });
      for (const auto& r : runs) CHECK(r.load() == 1);
    }
    // Indices 30, 31 and 60 throw: the caller sees 30's error, as a sequential loop would.
    std::atomic<int> ran{0};
    const auto body = [&](std::size_t i) {
      ran.fetch_add(1);
      if (i == 30 || i == 31 || i == 60) throw std::runtime_error("index " + std::to_string(i));
    };
    CHECK_THROWS_WITH_AS(dip::parallel_for(100, threads, body), "index 30", std::runtime_error);
    CHECK(ran.load() >= 31);  // every index up to the first that throws ran
  }
}
