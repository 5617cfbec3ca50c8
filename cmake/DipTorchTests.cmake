# The interpreter that runs dip's torch tests, and whether they may skip.
#
# DIP_TORCH_PYTHON runs every test that needs torch (tests/torch_runtime_check.py, dip.torch's
# tests). Without torch such a test exits 77 and ctest reports a skip. scripts/test.sh points
# DIP_TORCH_PYTHON at its managed virtual environment .venv/ (dip pip-installed with the pinned
# torch from PyPI) and turns DIP_REQUIRE_TORCH on: then configuring fails when that interpreter
# cannot import torch, and a torch test that exits 77 fails, so CI never skips them.
set(DIP_TORCH_PYTHON python3 CACHE STRING
    "Python interpreter with torch and numpy that runs dip's torch tests")
option(DIP_REQUIRE_TORCH "Torch tests fail instead of skipping without torch (scripts/test.sh, CI)" OFF)

if(DIP_REQUIRE_TORCH)
  execute_process(COMMAND "${DIP_TORCH_PYTHON}" -c "import numpy, torch; print(torch.__version__)"
                  RESULT_VARIABLE dip_torch_missing OUTPUT_VARIABLE dip_torch_version
                  ERROR_VARIABLE dip_torch_error OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(dip_torch_missing)
    string(STRIP "${dip_torch_error}" dip_torch_error)
    if(dip_torch_error MATCHES "([^\n]+)$")
      set(dip_torch_why "${CMAKE_MATCH_1}")     # the exception's line
    else()
      set(dip_torch_why "${dip_torch_missing}") # e.g. "No such file or directory"
    endif()
    message(FATAL_ERROR "dip: DIP_REQUIRE_TORCH is on but DIP_TORCH_PYTHON=${DIP_TORCH_PYTHON} cannot "
                        "import torch and numpy (${dip_torch_why}). "
                        "Run scripts/test.sh (it installs them into .venv/), pip install '.[torch]' into "
                        "that interpreter, or configure with -DDIP_REQUIRE_TORCH=OFF to let the torch "
                        "tests skip.")
  endif()
  message(STATUS "dip: torch tests required, under ${DIP_TORCH_PYTHON} (torch ${dip_torch_version})")
endif()

# dip_torch_test(<test>...): marks tests that run under DIP_TORCH_PYTHON. Label `torch`; exit 77
# is a skip unless DIP_REQUIRE_TORCH is on, and the tests see DIP_REQUIRE_TORCH=1 then (for
# pytest-based ones, which should fail rather than skip). Call it where the tests are added.
function(dip_torch_test)
  foreach(test IN LISTS ARGN)
    set_property(TEST "${test}" APPEND PROPERTY LABELS torch)
    if(DIP_REQUIRE_TORCH)
      set_property(TEST "${test}" APPEND PROPERTY ENVIRONMENT DIP_REQUIRE_TORCH=1)
    else()
      set_property(TEST "${test}" PROPERTY SKIP_RETURN_CODE 77)
    endif()
  endforeach()
endfunction()
