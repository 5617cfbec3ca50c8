# Runs dip-plan --export, --export-dir and --export-torch on the 8-layer toy (4 ranks, 8 uniform
# microbatches, 1F1B then ZB1P) and checks the files; then checks that a plan the torch format
# cannot express (DIP's two-chain placement) is refused with the reason.
# -DDIP_PLAN=<exe> -DWORK_DIR=<dir>
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}/all")
execute_process(COMMAND ${DIP_PLAN} --model tests/data/toy.json --pp 4 --microbatches 8 --iterations 2
                        --schedules 1f1b,zb1p --export ${WORK_DIR}/plan.json --export-dir ${WORK_DIR}/all
                        --export-torch ${WORK_DIR}/plan.csv
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "dip-plan failed (${rc}): ${err}\n${out}")
endif()

file(READ "${WORK_DIR}/plan.json" plan)
foreach(check IN ITEMS "format=dip.plan" "version=2" "schedule=1f1b" "iteration=0" "pipeline_ranks=4"
                       "microbatches=8" "split_backward=OFF" "ranks.0.actions.0.op=compute"
                       "ranks.0.actions.0.kind=F" "ranks.0.actions.1.op=send" "ranks.0.actions.1.peer=1"
                       "ranks.1.actions.0.op=recv" "ranks.1.actions.0.peer=0" "ranks.1.actions.0.wait_before=1")
  string(REPLACE "=" ";" parts "${check}")
  list(GET parts 0 path)
  list(GET parts 1 expected)
  string(REPLACE "." ";" keys "${path}")
  string(JSON actual ERROR_VARIABLE json_error GET "${plan}" ${keys})
  if(json_error OR NOT actual STREQUAL expected)
    message(FATAL_ERROR "plan.json: ${path} = '${actual}' ${json_error}, expected '${expected}'")
  endif()
endforeach()
string(JSON rank_count LENGTH "${plan}" ranks)
if(NOT rank_count EQUAL 4)
  message(FATAL_ERROR "plan.json: ${rank_count} ranks, expected 4")
endif()

foreach(name IN ITEMS 1f1b-0 1f1b-1 zb1p-0 zb1p-1)
  if(NOT EXISTS "${WORK_DIR}/all/${name}.json")
    message(FATAL_ERROR "--export-dir did not write ${name}.json")
  endif()
endforeach()
file(READ "${WORK_DIR}/all/1f1b-0.json" first)
if(NOT first STREQUAL plan)
  message(FATAL_ERROR "--export and --export-dir disagree on 1f1b's first plan")
endif()

file(READ "${WORK_DIR}/plan.csv" csv)
set(expected_csv "0F0,0F1,0F2,0F3,0B0,0F4,0B1,0F5,0B2,0F6,0B3,0F7,0B4,0B5,0B6,0B7
1F0,1F1,1F2,1B0,1F3,1B1,1F4,1B2,1F5,1B3,1F6,1B4,1F7,1B5,1B6,1B7
2F0,2F1,2B0,2F2,2B1,2F3,2B2,2F4,2B3,2F5,2B4,2F6,2B5,2F7,2B6,2B7
3F0,3B0,3F1,3B1,3F2,3B2,3F3,3B3,3F4,3B4,3F5,3B5,3F6,3B6,3F7,3B7
")
if(NOT csv STREQUAL expected_csv)
  message(FATAL_ERROR "plan.csv:\n${csv}\nexpected:\n${expected_csv}")
endif()

# DIP on the vit -> llm model has a chain per module: refused, saying so, exit status 2.
execute_process(COMMAND ${DIP_PLAN} --model tests/data/vlm_fixed.json --microbatches 2 --schedules dip --search-ms 0
                        --export-torch ${WORK_DIR}/dip.csv
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "--export-torch: cannot write dip's plan as a torch schedule: the plan's placement has 2 chains")
  message(FATAL_ERROR "expected a refusal with exit status 2, got ${rc}: ${err}")
endif()
message(STATUS "exports checked in ${WORK_DIR}")
