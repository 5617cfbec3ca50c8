// The version in dip/version.hpp is the CMake project's (tests/CMakeLists.txt passes
// DIP_EXPECTED_VERSION = ${PROJECT_VERSION}): bumping one without the other fails here.
#include <doctest/doctest.h>

#include <string>

#include <dip/dip.hpp>

#ifndef DIP_EXPECTED_VERSION
#error "tests/CMakeLists.txt must define DIP_EXPECTED_VERSION (the CMake project version)"
#endif

TEST_CASE("dip::version() is the CMake project version") {
  CHECK(dip::version() == DIP_EXPECTED_VERSION);
  CHECK(std::string(DIP_VERSION_STRING) == DIP_EXPECTED_VERSION);
  const std::string parts = std::to_string(DIP_VERSION_MAJOR) + "." + std::to_string(DIP_VERSION_MINOR) + "." +
                            std::to_string(DIP_VERSION_PATCH);
  CHECK(parts == DIP_EXPECTED_VERSION);
  CHECK(dip::version_major == DIP_VERSION_MAJOR);
  CHECK(dip::version_minor == DIP_VERSION_MINOR);
  CHECK(dip::version_patch == DIP_VERSION_PATCH);
  CHECK(std::string(dip::version_string) == dip::version());
  static_assert(DIP_VERSION == DIP_MAKE_VERSION(DIP_VERSION_MAJOR, DIP_VERSION_MINOR, DIP_VERSION_PATCH));
  static_assert(dip::version().size() >= 5);  // usable in constant expressions
}
