// Exports plans for a PyTorch trainer:
//
//   Llama3-8B, 4 ranks, 8 microbatches --planner.plan(batch, "1f1b" / "zb1p" / "zbv" / "dualpipev")-->
//        torch.distributed.pipelining CSV (schedule._load_csv("zb1p.csv") on a
//        _PipelineScheduleRuntime; docs/plan-format.md; zbv and dualpipev put two stages per rank
//        on the V, rank 0 holding stages 0 and 7)
//   tiny-vlm planner.plan(batch) (a chain per module) --the CSV cannot say that, and dip says why-->
//        dip's action-list JSON instead: per rank, computes, sends and receives with their tensors,
//        and which images each sub-microbatch holds
//
// Files go to the folder given as the first argument (default: a temporary folder).
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <dip/dip.hpp>
#include <dip/io/plan_export.hpp>
#include <dip/io/torch_schedule_csv.hpp>

int main(int argc, char** argv) {
  const std::filesystem::path out = argc > 1 ? std::filesystem::path(argv[1])
                                             : std::filesystem::temp_directory_path() / "dip-export-pytorch";
  std::filesystem::create_directories(out);

  // A plain LLM pipeline: what PyTorch's schedules express (one chain of stages, equal microbatches).
  const dip::model_preset llm = dip::find_preset("llama3-8b");  // TP 4, PP 4
  const dip::planner llm_planner = dip::make_planner(llm);      // classic schedules: the time-balanced placement
  const std::vector<dip::packed_microbatch> uniform = dip::make_batch_source("uniform", llm.model).next_batch(8);
  for (const char* name : {"1f1b", "zb1p", "zbv", "dualpipev"}) {
    // Zero bubble splits each backward into input (I) and weight (W) gradients: the registry knows.
    const dip::planned_batch planned = llm_planner.plan(uniform, name);
    const dip::torch_schedule schedule = dip::to_torch_schedule(planned.plan);
    const std::filesystem::path file = out / (std::string(name) + ".csv");
    dip::write_torch_csv(file, schedule);
    const std::string csv = dip::to_torch_csv(schedule);
    std::printf("%s: %zu stages, n_microbatches %zu -> %s; rank 0 runs %s", name, schedule.stages,
                schedule.microbatches, file.string().c_str(), csv.substr(0, csv.find('\n') + 1).c_str());
  }

  // A DIP plan of a multimodal model: one chain per module, which the CSV format cannot express.
  // Four equal microbatches of two images and 64 LLM tokens each.
  const dip::model_preset vlm = dip::find_preset("tiny-vlm");
  const dip::planner vlm_planner = dip::make_planner(vlm, {.search_ms = 0});  // no search: the natural order
  const std::vector<dip::packed_microbatch> batch(
      4, dip::uniform_packed_microbatch(vlm.model, {.images = 2, .llm_tokens = 64}));
  const dip::planned_batch planned = vlm_planner.plan(batch);
  try {
    dip::to_torch_schedule(planned.plan);
  } catch (const dip::error& e) {
    std::printf("dip plan as a torch CSV: refused: %s\n", e.detail().c_str());
  }
  const std::filesystem::path file = out / "dip.json";
  dip::write_plan_file(file, dip::export_plan(planned.plan, vlm.model, planned.work, planned.split, batch, "dip"));
  const dip::exported_plan back = dip::read_plan_file(file);  // strict reader, validates again
  std::printf("dip plan as action-list JSON -> %s (%zu ranks, %zu actions on rank 0, read back)\n",
              file.string().c_str(), back.schedule.ranks.size(), back.schedule.ranks[0].size());
  return 0;
}
