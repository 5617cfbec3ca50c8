# Runs dip-plan with --json and checks fields of its output against expected values.
# -DDIP_PLAN=<exe> -DARGS="a;b;c" -DCHECKS="summary.1f1b.mean_makespan_ms=66;..." [-DTOLERANCE=1e-9]
# An expected value of * only requires the field to exist; "path<=value"
# requires the field to be at most the value.
if(NOT DEFINED TOLERANCE)
  set(TOLERANCE 1e-9) # relative
endif()
execute_process(COMMAND ${DIP_PLAN} ${ARGS} --json RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "dip-plan failed (${rc}): ${err}\n${out}")
endif()
foreach(check IN LISTS CHECKS)
  if(check MATCHES "^([^=<]+)<=(.*)$")  # path<=value
    set(path "${CMAKE_MATCH_1}")
    set(expected "<=${CMAKE_MATCH_2}")
  else()
    string(REPLACE "=" ";" parts "${check}")
    list(GET parts 0 path)
    list(GET parts 1 expected)
  endif()
  string(REPLACE "." ";" keys "${path}")
  string(JSON actual ERROR_VARIABLE json_error GET "${out}" ${keys})
  if(json_error)
    message(FATAL_ERROR "no field ${path} in dip-plan's output: ${json_error}\n${out}")
  endif()
  # CMake has no floating-point comparison; python3 is installed by scripts/install-deps.sh.
  if(expected STREQUAL "*") # the field must exist, any value
    message(STATUS "${path} = ${actual}")
    continue()
  endif()
  # Numbers compare within the tolerance (or as at most, "<=value"), anything else (module
  # names) as text.
  execute_process(COMMAND python3 -c "
import sys
a, e, t = sys.argv[1], sys.argv[2], float(sys.argv[3])
try:
    if e.startswith('<='):
        ok = float(a) <= float(e[2:]) * (1 + t)
    else:
        ok = abs(float(a) - float(e)) <= t * max(1.0, abs(float(e)))
except ValueError:
    ok = a == e
sys.exit(0 if ok else 1)"
                          "${actual}" "${expected}" "${TOLERANCE}" RESULT_VARIABLE cmp)
  if(NOT cmp EQUAL 0)
    message(FATAL_ERROR "${path} = ${actual}, expected ${expected}\n${out}")
  endif()
  message(STATUS "${path} = ${actual} (expected ${expected})")
endforeach()
