# The Python examples that need torch, run by ctest from the repository root under
# DIP_TORCH_PYTHON with this build tree's dip (build/python). Included where dip's Python
# package is built (python/CMakeLists.txt), after cmake/DipTorchTests.cmake (dip_torch_test).
#   example_torch_training_loop   examples/torch_training_loop.py: 2 gloo ranks, a plan per batch
add_test(NAME example_torch_training_loop
         COMMAND "${DIP_TORCH_PYTHON}" "${PROJECT_SOURCE_DIR}/examples/torch_training_loop.py" --steps 3
         WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}")
set_tests_properties(example_torch_training_loop PROPERTIES
                     ENVIRONMENT "PYTHONPATH=${CMAKE_BINARY_DIR}/python;OMP_NUM_THREADS=1"
                     LABELS "example;python" TIMEOUT 300)
dip_torch_test(example_torch_training_loop)
