# With --json, a schedule that is refused prints its reason on stderr and the exit status is 3
# (some schedules refused, others planned; docs/dip-plan.md). Under --partition dip the classic
# 1F1B cannot run on the two-chain placement while dip plans.
# -DDIP_PLAN=<exe>
execute_process(COMMAND ${DIP_PLAN} --model vlm-s --data laion --microbatches 4 --partition dip --search-ms 0
                        --schedules dip,1f1b --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 3)
  message(FATAL_ERROR "expected exit status 3 (some schedules refused), got ${rc}: ${err}")
endif()
if(NOT err MATCHES "dip-plan: 1f1b refused in iteration 0: 1f1b: needs a single-chain placement")
  message(FATAL_ERROR "the refusal's reason is not on stderr: ${err}")
endif()
string(JSON reason ERROR_VARIABLE json_error GET "${out}" summary 1f1b error)
string(JSON planned ERROR_VARIABLE json_error2 GET "${out}" summary dip mean_makespan_ms)
if(json_error OR json_error2)
  message(FATAL_ERROR "--json lacks the refusal or the plan: ${json_error} ${json_error2}\n${out}")
endif()
# Every schedule refused: exit status 1.
execute_process(COMMAND ${DIP_PLAN} --model vlm-s --data laion --microbatches 4 --partition dip --schedules 1f1b --json
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "expected exit status 1 when no schedule planned, got ${rc}")
endif()
