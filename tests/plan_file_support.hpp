// Test support for the action-list JSON reader (test_plan_export.cpp, test_executable_plan.cpp).
#pragma once

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <dip/core/error.hpp>
#include <dip/io/plan_export.hpp>

namespace dip_test {

// The error reading `doc` raises (the test fails if it reads).
inline dip::error read_error(const nlohmann::json& doc) {
  try {
    dip::plan_from_json(doc, "plan.json");
  } catch (const dip::error& e) {
    return e;
  }
  FAIL("plan_from_json accepted the document");
  return dip::error(dip::errc::invalid_argument, "", "");
}

}  // namespace dip_test
