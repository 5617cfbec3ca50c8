# Builds and runs one consumer project of dip; a ctest runs it with `cmake -P`.
#   -DMODE=find_package      install dip's build tree into WORK_DIR/prefix, then the consumer
#                            finds it with find_package(dip CONFIG REQUIRED)
#                            (`cmake --install`), checks what was installed (headers, package
#                            files, dip-plan and dip-exec, which must run from there)
#   -DMODE=add_subdirectory  the consumer adds DIP_SOURCE_DIR as a subdirectory
#   -DMODE=fetchcontent      the consumer gets DIP_SOURCE_DIR with FetchContent (local, no network)
# Every consumer builds tests/consumer/consumer.cpp, which plans a batch, and runs it.
# Also: DIP_SOURCE_DIR, DIP_BINARY_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, and optionally
# CONSUMER_GENERATOR, CONSUMER_CXX_COMPILER, CONSUMER_CONFIG (to match dip's own build) and
# DIP_VERSION (the version the installed package must report) and DIP_EXPECT_TOOLS (dip-plan
# and dip-exec are built, so they must be installed).
cmake_minimum_required(VERSION 3.21)

foreach(var IN ITEMS MODE DIP_SOURCE_DIR CONSUMER_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

# Runs one step; on failure prints the command and everything it wrote, and stops.
function(dip_consumer_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " command)
    message("$ ${command}\n${out}") # verbatim; FATAL_ERROR would re-wrap the lines
    message(FATAL_ERROR "consumer (${MODE}): ${name} failed (exit status ${rc})")
  endif()
  message(STATUS "consumer (${MODE}): ${name}: ok")
  set(dip_consumer_output "${out}" PARENT_SCOPE)
endfunction()

set(config_args)
if(CONSUMER_CONFIG)
  set(config_args --config ${CONSUMER_CONFIG})
endif()
set(configure_args)
if(CONSUMER_GENERATOR)
  list(APPEND configure_args -G ${CONSUMER_GENERATOR})
endif()
if(CONSUMER_CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER})
endif()
if(CONSUMER_CONFIG)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${CONSUMER_CONFIG})
endif()

file(REMOVE_RECURSE "${WORK_DIR}")
set(build_dir "${WORK_DIR}/build")

if(MODE STREQUAL "find_package")
  if(NOT DIP_BINARY_DIR)
    message(FATAL_ERROR "run_consumer.cmake: -DDIP_BINARY_DIR=... is required for find_package")
  endif()
  set(prefix "${WORK_DIR}/prefix")
  dip_consumer_step(install
    "${CMAKE_COMMAND}" --install "${DIP_BINARY_DIR}" --prefix "${prefix}" ${config_args})
  dip_consumer_step(configure
    "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}/find_package" -B "${build_dir}" ${configure_args}
    "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  # What `cmake --install` must place: headers (dip's and the executor's), the package files,
  # the tools. The libdir may be lib or lib64, so the package files are looked for.
  set(expected_files include/dip/dip.hpp include/dip/version.hpp include/dip/planner/dip_async.hpp
                     include/dip/exec/executor.hpp share/doc/dip/LICENSE)
  if(DIP_EXPECT_TOOLS)
    list(APPEND expected_files bin/dip-plan bin/dip-exec)
  endif()
  foreach(file IN LISTS expected_files)
    if(NOT EXISTS "${prefix}/${file}")
      message(FATAL_ERROR "consumer (find_package): '${file}' was not installed under '${prefix}'")
    endif()
  endforeach()
  foreach(name IN ITEMS dipConfig.cmake dipConfigVersion.cmake dipTargets.cmake)
    file(GLOB_RECURSE config_file "${prefix}/*/cmake/dip/${name}")
    if(NOT config_file)
      message(FATAL_ERROR "consumer (find_package): no <libdir>/cmake/dip/${name} under '${prefix}'")
    endif()
  endforeach()
  message(STATUS "consumer (${MODE}): installed files: ok")
  if(DIP_EXPECT_TOOLS)
    # The installed tools run from the prefix (the example model ships with the sources).
    dip_consumer_step("installed dip-plan --help" "${prefix}/bin/dip-plan" --help)
    dip_consumer_step("installed dip-plan plans the toy model"
      "${prefix}/bin/dip-plan" --model "${DIP_SOURCE_DIR}/tests/data/toy.json" --pp 4 --schedules 1f1b --json)
    dip_consumer_step("installed dip-exec --help" "${prefix}/bin/dip-exec" --help)
  endif()
  if(DIP_VERSION)
    file(READ "${prefix}/include/dip/version.hpp" version_header)
    if(NOT version_header MATCHES "#define DIP_VERSION_STRING \"${DIP_VERSION}\"")
      message(FATAL_ERROR "consumer (find_package): the installed dip/version.hpp does not say ${DIP_VERSION}")
    endif()
  endif()
  # The dip found must be the one just installed, not some other copy on the system.
  file(STRINGS "${build_dir}/CMakeCache.txt" dip_dir_line REGEX "^dip_DIR:")
  string(REGEX REPLACE "^dip_DIR:[A-Z]+=" "" found_dir "${dip_dir_line}")
  cmake_path(IS_PREFIX prefix "${found_dir}" NORMALIZE found_in_prefix)
  if(NOT found_in_prefix)
    message(FATAL_ERROR "consumer (find_package): found dip in '${found_dir}', not under '${prefix}'")
  endif()
elseif(MODE STREQUAL "add_subdirectory")
  dip_consumer_step(configure
    "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}/add_subdirectory" -B "${build_dir}" ${configure_args}
    "-DDIP_SOURCE_DIR=${DIP_SOURCE_DIR}")
elseif(MODE STREQUAL "fetchcontent")
  dip_consumer_step(configure
    "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}/fetchcontent" -B "${build_dir}" ${configure_args}
    "-DDIP_SOURCE_DIR=${DIP_SOURCE_DIR}")
else()
  message(FATAL_ERROR "run_consumer.cmake: MODE must be find_package, add_subdirectory or fetchcontent, not '${MODE}'")
endif()

dip_consumer_step(build "${CMAKE_COMMAND}" --build "${build_dir}" ${config_args})

set(exe "${build_dir}/bin/consumer")
if(CMAKE_HOST_WIN32)
  string(APPEND exe ".exe")
endif()
dip_consumer_step(run "${exe}")
message(STATUS "consumer (${MODE}): ${dip_consumer_output}")
