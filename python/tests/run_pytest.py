"""Runs pytest with the given arguments; exits 77 (ctest: skipped) when pytest is missing.

ctest runs python/tests through this (python/CMakeLists.txt, torch_tests.cmake) so that a
machine without python3-pytest skips the Python tests instead of failing them. With
DIP_REQUIRE_TORCH=1 (scripts/test.sh, CI) a test that pytest skips is a failure: the torch
tests must run there.
"""

import os
import sys

try:
    import pytest
except ImportError:
    print(f"dip: pytest is not installed for {sys.executable} "
          "(apt-get install python3-pytest, or configure with -DDIP_PYTEST_PYTHON=<python with pytest>); "
          "skipping the Python tests")
    sys.exit(77)


class SkipCounter:
    def __init__(self):
        self.skipped = []

    def pytest_runtest_logreport(self, report):
        if report.skipped:
            self.skipped.append(report.nodeid)


def main() -> int:
    counter = SkipCounter()
    # No .pytest_cache in the source tree.
    status = pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]], plugins=[counter])
    if os.environ.get("DIP_REQUIRE_TORCH") == "1" and counter.skipped:
        print(f"dip: DIP_REQUIRE_TORCH=1 and {len(counter.skipped)} test(s) skipped: {counter.skipped[:5]}")
        status = status or 1
    return int(status)


# Guarded: dip.torch's tests start rank processes with multiprocessing's spawn, which imports
# this main module again in each child.
if __name__ == "__main__":
    sys.exit(main())
