// A trainer-like consumer: plans one batch with dip's headers as a project that uses them would
// see them (installed, vendored or fetched). The project asks for no language standard of its
// own; linking dip::dip is what brings in C++20.
#include <cstdio>
#include <memory>

#include <dip/batch/uniform.hpp>
#include <dip/dip.hpp>
#include <dip/exec/executor.hpp>  // the reference executor's header-only core ships too
#include <dip/partition/baseline_partitions.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/stage_graph.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

static_assert(__cplusplus >= 202002L, "dip::dip must give its consumers C++20");

#ifdef DIP_CONSUMER_EXPECTED_VERSION  // the version CMake's package files report
static_assert(dip::version() == DIP_CONSUMER_EXPECTED_VERSION,
              "dip/version.hpp disagrees with the version of the dip CMake package");
#endif

int main() {
  // Llama3-8B on 4 pipeline ranks, 8 uniform microbatches, 1F1B.
  const dip::model_preset preset = dip::find_preset("llama3-8b");
  const dip::analytic_cost_model costs(dip::find_gpu(preset.gpu), preset.parallel.tp);
  const auto work_of = [&](const dip::module_spec& m) { return dip::uniform_module_work(preset.model, m); };
  const dip::placement placement = dip::balanced_partition(preset.model, costs, work_of, 4);
  const auto graph = std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(preset.model, placement, dip::uniform_batch(preset.model, 8, work_of), costs));
  const dip::plan plan = dip::plan_baseline("1f1b", graph);
  dip::validate(plan);
  const dip::simulation_result result = dip::simulate(plan);
  std::printf("dip %s: llama3-8b, 1f1b on 4 ranks, 8 microbatches: %s, bubble %.3f\n", dip::version().data(),
              dip::to_string(result.makespan).c_str(), result.bubble_ratio);
  // 1F1B on uniform stages: bubble (p - 1) / (m + p - 1) = 3 / 11, up to the stages' imbalance.
  return result.bubble_ratio > 0.2 && result.bubble_ratio < 0.4 ? 0 : 1;
}
