// The one doctest main shared by every unit-test executable (tests/CMakeLists.txt).
//
// A run whose filters select no test case fails. CTest runs each case by name and file
// (discover_tests.cmake); a name the filter no longer matches (a renamed case, a character the
// filter syntax reads specially) would otherwise run nothing and pass. Listing and the other
// query options are not runs and are unaffected.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

namespace {

// How many test cases passed the filters of the last run; -1 until a run ends.
long selected_test_cases = -1;

// A doctest listener that only reads the run's totals.
struct selection_counter : doctest::IReporter {
  explicit selection_counter(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& stats) override {
    selected_test_cases = stats.numTestCasesPassingFilters;
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

REGISTER_LISTENER("selection_counter", 1, selection_counter);

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int status = context.run();
  if (context.shouldExit()) return status;  // --help, --version
  if (status == 0 && selected_test_cases == 0) {
    std::fprintf(stderr, "doctest: no test case matches the filters given; nothing was tested\n");
    return 1;
  }
  return status;
}
