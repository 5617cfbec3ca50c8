# Registers the test cases of one test group's executable with CTest, each under the name of the
# file it is written in: test_planner/<test case>. Run by tests/CMakeLists.txt after the group is
# built (cmake -P). A group compiles several tests/test_*.cpp into one executable, so the cases
# are listed file by file (doctest's --source-file filter) and each runs with the same filter: two
# files may hold cases of the same name.
#
# Inputs (-D): TEST_EXECUTABLE, TEST_FILES (file stems, comma-separated: test_core,test_model),
# TEST_WORKING_DIR, CTEST_FILE (the script this writes, included by CTest).
cmake_minimum_required(VERSION 3.20)

foreach(input IN ITEMS TEST_EXECUTABLE TEST_FILES TEST_WORKING_DIR CTEST_FILE)
  if(NOT DEFINED ${input})
    message(FATAL_ERROR "discover_tests.cmake: -D${input}=... is required")
  endif()
endforeach()

# One CMake command per line, every argument in brackets so that a test case's name may hold any
# character but a newline.
set(script "")
function(append_command name)
  set(line "${name}(")
  foreach(argument IN LISTS ARGN)
    string(APPEND line " [==[${argument}]==]")
  endforeach()
  string(REPLACE "<semicolon>" ";" line "${line}") # kept aside while the arguments were a list
  set(script "${script}${line})\n" PARENT_SCOPE)
endfunction()

string(REPLACE "," ";" stems "${TEST_FILES}")
foreach(stem IN LISTS stems)
  set(file_filter "--source-file=*/${stem}.cpp")
  execute_process(COMMAND "${TEST_EXECUTABLE}" --list-test-cases "${file_filter}"
                  WORKING_DIRECTORY "${TEST_WORKING_DIR}"
                  OUTPUT_VARIABLE listing RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${TEST_EXECUTABLE} --list-test-cases ${file_filter} failed (${status}):\n${listing}")
  endif()
  # A list is split at semicolons: those in names (doctest lists one name per line) are kept aside.
  string(REPLACE ";" "<semicolon>" listing "${listing}")
  string(REPLACE "\n" ";" lines "${listing}")
  set(cases 0)
  foreach(line IN LISTS lines)
    # doctest's banner, rules and summary, then one test case per line.
    if(line STREQUAL "" OR line MATCHES "^===+$" OR line MATCHES "^\\[doctest\\] ")
      continue()
    endif()
    # --test-case= splits its value at commas; a comma in a name is written \, there.
    string(REPLACE "," "\\," case_filter "${line}")
    append_command(add_test "${stem}/${line}" "${TEST_EXECUTABLE}" "--test-case=${case_filter}" "${file_filter}")
    append_command(set_tests_properties "${stem}/${line}" PROPERTIES
                   WORKING_DIRECTORY "${TEST_WORKING_DIR}" LABELS unit)
    math(EXPR cases "${cases} + 1")
  endforeach()
  if(cases EQUAL 0)
    message(FATAL_ERROR "${TEST_EXECUTABLE} lists no test case of ${stem}.cpp: is it in this group?")
  endif()
endforeach()

file(WRITE "${CTEST_FILE}" "${script}")
