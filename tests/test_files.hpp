// Test support shared by the unit tests: where their input files are (the fixtures shipped in
// tests/data, and the traces of ../shared/data, which may be absent), and a substring check for
// error messages. One definition for every test file, since they are compiled together in groups
// (tests/CMakeLists.txt).
#pragma once

#include <string>

namespace dip_test {

// tests/data/<name> (DIP_TEST_DATA_DIR, set by tests/CMakeLists.txt).
inline std::string data_file(const char* name) { return std::string(DIP_TEST_DATA_DIR) + "/" + name; }

// ../shared/data/<name> (DIP_SHARED_DATA_DIR); tests that read it skip when it is missing.
inline std::string shared_file(const char* name) { return std::string(DIP_SHARED_DATA_DIR) + "/" + name; }

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace dip_test
