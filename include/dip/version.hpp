// dip's version, kept by hand in step with `project(dip VERSION ...)` in CMakeLists.txt; the test
// dip-test-version (tests/test_version.cpp) fails when the two disagree, and the find_package
// consumer test checks it against the installed package's dipConfigVersion.cmake.
//
//   #if DIP_VERSION >= DIP_MAKE_VERSION(0, 2, 0)   // compile-time checks
//   std::puts(dip::version().data());              // "0.1.0"
#pragma once

#include <string_view>

#define DIP_VERSION_MAJOR 0
#define DIP_VERSION_MINOR 1
#define DIP_VERSION_PATCH 0
#define DIP_VERSION_STRING "0.1.0"

// One integer for comparisons in the preprocessor: major * 10000 + minor * 100 + patch.
#define DIP_MAKE_VERSION(major, minor, patch) ((major)*10000 + (minor)*100 + (patch))
#define DIP_VERSION DIP_MAKE_VERSION(DIP_VERSION_MAJOR, DIP_VERSION_MINOR, DIP_VERSION_PATCH)

namespace dip {

inline constexpr int version_major = DIP_VERSION_MAJOR;
inline constexpr int version_minor = DIP_VERSION_MINOR;
inline constexpr int version_patch = DIP_VERSION_PATCH;
inline constexpr const char* version_string = DIP_VERSION_STRING;

// The library's version, "major.minor.patch" (DIP_VERSION_STRING).
constexpr std::string_view version() noexcept { return DIP_VERSION_STRING; }

}  // namespace dip
