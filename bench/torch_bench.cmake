# bench/torch_runtime_vs_pipelining.py --quick: dip.torch's runtime against PyTorch's
# torch.distributed.pipelining (gpipe, 1f1b, interleaved, zb1p) on a tiny causal LM, two gloo
# ranks; fails when the two runtimes' gradients differ (about 15 s). Included from
# python/torch_tests.cmake, where DIP_TORCH_PYTHON and dip_torch_test() are defined. The full
# benchmark (bench/RESULTS.md) is the same script without --quick.
if(TARGET dip-plan)
  add_test(NAME torch_bench_vs_pipelining_quick
           COMMAND "${DIP_TORCH_PYTHON}" "${PROJECT_SOURCE_DIR}/bench/torch_runtime_vs_pipelining.py" --quick
                   --dip-plan "$<TARGET_FILE:dip-plan>"
           WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}")
  set_tests_properties(torch_bench_vs_pipelining_quick PROPERTIES
                       ENVIRONMENT "PYTHONPATH=${CMAKE_BINARY_DIR}/python;OMP_NUM_THREADS=1"
                       TIMEOUT 120 LABELS "python;bench")
  dip_torch_test(torch_bench_vs_pipelining_quick)
endif()
# bench/dip_bench.py --quick --sections measured: `python -m dip.torch bench` on tiny-vlm and
# tiny-t2v (calibration, dip, 1f1b and static-dip on one batch of two microbatches, two ranks),
# its table and plots into the build folder; fails when the command fails or its table comes out
# empty or malformed (well under a minute). The driver runs under the Python found for the
# bindings (no torch needed); plots where that one or /usr/bin/python3 has matplotlib. Exit 77
# (a skip unless DIP_REQUIRE_TORCH) when DIP_TORCH_PYTHON cannot import torch.
add_test(NAME dip_bench_measured_quick
         COMMAND "${Python3_EXECUTABLE}" "${PROJECT_SOURCE_DIR}/bench/dip_bench.py" --quick --sections measured
                 --torch-python "${DIP_TORCH_PYTHON}" --out "${CMAKE_BINARY_DIR}/bench/measured-quick"
         WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}")
set_tests_properties(dip_bench_measured_quick PROPERTIES
                     ENVIRONMENT "PYTHONPATH=${CMAKE_BINARY_DIR}/python;OMP_NUM_THREADS=1"
                     TIMEOUT 300 LABELS "python;bench")
dip_torch_test(dip_bench_measured_quick)
