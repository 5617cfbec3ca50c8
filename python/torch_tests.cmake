# dip.torch's tests (python/tests/torch), under DIP_TORCH_PYTHON (scripts/test.sh: .venv/ with
# the pinned torch) and this build tree's dip (PYTHONPATH=build/python). Each group is its own
# ctest, so that ctest -j spreads them over the cores; a pytest skip fails when torch is
# required (DIP_REQUIRE_TORCH, run_pytest.py turns skips into a failure then).
#   torch_layers       the reference layers (layers.py); one rank in-process against the
#                      sequential model; your own modules (ModuleLayersModel); dip's ZB-V and
#                      DualPipeV orders against PyTorch's own schedule classes
#   torch_verify_<m>_pp<p>  every schedule on tiny-vlm / tiny-t2v at PP 2 and 4, against the
#                      sequential model on the traces of ../shared/data (tests/data without it)
#   torch_runtime      dip's sub-microbatches in float64, the memory cap (recompute/offload lower
#                      the measured peak), 30 training steps, a check that can fail, the faults
set(dip_torch_tests_dir "${CMAKE_CURRENT_SOURCE_DIR}/tests/torch")
set(dip_torch_env "PYTHONPATH=${CMAKE_CURRENT_BINARY_DIR}" "OMP_NUM_THREADS=1")

function(dip_add_torch_pytest name timeout)
  add_test(NAME ${name}
           COMMAND "${DIP_TORCH_PYTHON}" "${CMAKE_CURRENT_SOURCE_DIR}/tests/run_pytest.py" -q
                   ${ARGN}
           WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}")
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${dip_torch_env}" TIMEOUT ${timeout} LABELS python)
  dip_torch_test(${name})
endfunction()

dip_add_torch_pytest(torch_layers 300 "${dip_torch_tests_dir}/test_layers.py" "${dip_torch_tests_dir}/test_model.py"
                     "${dip_torch_tests_dir}/test_v_schedules.py")
foreach(model vlm t2v)
  foreach(pp 2 4)
    dip_add_torch_pytest(torch_verify_${model}_pp${pp} 900 "${dip_torch_tests_dir}/test_verify.py"
                         -k "test_every_schedule_matches_sequential and ${model} and pp${pp}")
  endforeach()
endforeach()
dip_add_torch_pytest(torch_runtime 900 "${dip_torch_tests_dir}/test_verify.py"
                     -k "not test_every_schedule_matches_sequential and not fault")
dip_add_torch_pytest(torch_faults 300 "${dip_torch_tests_dir}/test_verify.py" -k "fault")
# Calibration and `python -m dip.torch bench` (its quick form on the tiny model and fixtures).
dip_add_torch_pytest(torch_bench 600 "${dip_torch_tests_dir}/test_bench.py")
include("${PROJECT_SOURCE_DIR}/bench/torch_bench.cmake")  # dip.torch against torch.distributed.pipelining
