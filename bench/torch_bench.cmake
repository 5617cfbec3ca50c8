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
