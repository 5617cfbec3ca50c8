// Exports plans for a PyTorch trainer:
//
//   Llama3-8B, 4 ranks, 8 microbatches --1F1B / ZB1P--> torch.distributed.pipelining CSV
//        (schedule._load_csv("zb1p.csv") on a _PipelineScheduleRuntime; docs/plan-format.md)
//   tiny-vlm DIP plan (a chain per module) --the CSV cannot say that, and dip says why-->
//        dip's action-list JSON instead: per rank, computes, sends and receives with shapes
//
// Files go to the folder given as the first argument (default: a temporary folder).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <dip/batch/uniform.hpp>
#include <dip/dip.hpp>
#include <dip/io/plan_export.hpp>
#include <dip/io/torch_schedule_csv.hpp>
#include <dip/partition/baseline_partitions.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/dip_planner.hpp>

int main(int argc, char** argv) {
  const std::filesystem::path out =
      argc > 1 ? std::filesystem::path(argv[1]) : std::filesystem::temp_directory_path() / "dip-export-pytorch";
  std::filesystem::create_directories(out);

  // A plain LLM pipeline: what PyTorch's schedules express (one chain of stages, equal microbatches).
  const dip::model_preset llm = dip::find_preset("llama3-8b");
  const dip::analytic_cost_model costs(dip::find_gpu(llm.gpu), llm.parallel.tp);
  const auto work_of = [&](const dip::module_spec& m) { return dip::uniform_module_work(llm.model, m); };
  const dip::placement placement = dip::balanced_partition(llm.model, costs, work_of, 4);
  const dip::batch_work batch = dip::uniform_batch(llm.model, 8, work_of);
  for (const char* name : {"1f1b", "zb1p"}) {
    // Zero bubble splits each backward into input (I) and weight (W) gradients.
    const auto graph = std::make_shared<const dip::stage_graph>(dip::build_stage_graph(
        llm.model, placement, batch, costs, {.split_backward = std::string(name) == "zb1p"}));
    const dip::torch_schedule schedule = dip::to_torch_schedule(dip::baseline_plan(name, graph));
    const std::filesystem::path file = out / (std::string(name) + ".csv");
    dip::write_torch_csv(file, schedule);
    const std::string csv = dip::to_torch_csv(schedule);
    std::printf("%s: %zu stages, n_microbatches %zu -> %s; rank 0 runs %s", name, schedule.stages,
                schedule.microbatches, file.string().c_str(), csv.substr(0, csv.find('\n') + 1).c_str());
  }

  // A DIP plan of a multimodal model: one chain per module, which the CSV format cannot express.
  const dip::model_preset vlm = dip::find_preset("tiny-vlm");
  const dip::analytic_cost_model vlm_costs(dip::find_gpu(vlm.gpu), vlm.parallel.tp);
  dip::partition_options partition;
  partition.ranks = vlm.parallel.pp;
  const dip::modality_partition part = dip::partition_modalities(vlm.model, vlm_costs, partition);
  const dip::batch_work vlm_batch = dip::uniform_batch(vlm.model, 4, [&](const dip::module_spec& m) {
    return dip::uniform_module_work(vlm.model, m, {.images = 2, .llm_tokens = 64});
  });
  const auto graph = std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(vlm.model, part.placement, vlm_batch, vlm_costs));
  const dip::plan dip_plan = dip::plan_dip_schedule(graph, {});
  try {
    dip::to_torch_schedule(dip_plan);
  } catch (const dip::error& e) {
    std::printf("dip plan as a torch CSV: refused: %s\n", e.detail().c_str());
  }
  const std::filesystem::path file = out / "dip.json";
  dip::write_plan_file(file, dip::export_plan(dip_plan, vlm.model, vlm_batch, "dip"));
  const dip::exported_plan back = dip::read_plan_file(file);  // strict reader, validates again
  std::printf("dip plan as action-list JSON -> %s (%zu ranks, %zu actions on rank 0, read back)\n",
              file.string().c_str(), back.schedule.ranks.size(), back.schedule.ranks[0].size());
  return 0;
}
