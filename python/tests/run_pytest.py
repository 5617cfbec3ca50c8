"""Runs pytest with the given arguments; exits 77 (ctest: skipped) when pytest is missing.

ctest runs python/tests through this (python/CMakeLists.txt) so that a machine without
python3-pytest skips the Python tests instead of failing them.
"""

import sys

try:
    import pytest
except ImportError:
    print(f"dip: pytest is not installed for {sys.executable} "
          "(apt-get install python3-pytest, or configure with -DDIP_PYTEST_PYTHON=<python with pytest>); "
          "skipping the Python tests")
    sys.exit(77)

# No .pytest_cache in the source tree.
sys.exit(pytest.main(["-p", "no:cacheprovider", *sys.argv[1:]]))
