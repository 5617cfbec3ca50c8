// The modality-aware partitioner on the five DESIGN.md models (H800, each model's TP and PP):
// for every chain its sub-microbatch size B and segments per rank K (with the paper's rule's K
// beside it), and the per-rank work balance (max / mean) of the DIP placement against the two
// static baselines, Megatron's parameter-balanced split and the best contiguous split by time.
//
//   build/examples/dip-example-partition_report
#include <cmath>
#include <cstdio>
#include <string>

#include <dip/batch/uniform.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/baseline_partitions.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/partition/placement_report.hpp>

int main() {
  const dip::gpu_spec gpu = dip::find_gpu("H800");
  std::printf("%-6s %-3s %-26s %4s %10s %4s %8s | %-26s\n", "model", "pp", "chain", "B", "T at B ms", "K", "paper K",
              "rank work max/mean: dip megatron balanced");
  for (const char* name : {"vlm-s", "vlm-m", "vlm-l", "t2v-s", "t2v-l"}) {
    const dip::model_preset preset = dip::find_preset(name);
    const dip::analytic_cost_model costs(gpu, preset.parallel.tp);
    dip::partition_options options;
    options.ranks = preset.parallel.pp;
    options.memory = {preset.parallel.tp, 16.0, gpu.memory};
    const dip::modality_partition part = dip::partition_modalities(preset.model, costs, options);

    const auto work_of = [&](const dip::module_spec& m) { return dip::uniform_module_work(preset.model, m); };
    const auto once = [](const dip::chunk_spec&) { return 1.0; };
    const auto balance_of = [&](const dip::placement& p) {
      return dip::max_over_mean(dip::rank_totals(p, dip::chunk_times(preset.model, p, costs, work_of), once));
    };
    const double megatron = balance_of(dip::megatron_partition(preset.model, options.ranks, 1, options.memory));
    const double balanced =
        balance_of(dip::balanced_partition(preset.model, costs, work_of, options.ranks, 1, options.memory));

    for (std::size_t g = 0; g < part.groups.size(); ++g) {
      const dip::chain_group& group = part.groups[g];
      std::string chain;
      for (dip::module_id m : group.modules) chain += (chain.empty() ? "" : "+") + preset.model.module(m).name;
      chain += " (" + std::string(dip::to_string(group.kind)) + "s)";
      std::printf("%-6s %-3d %-26s %4zu %10.2f %4zu %8zu |", g == 0 ? name : "", options.ranks, chain.c_str(),
                  group.sub_microbatch_size, dip::to_milliseconds(group.latency), group.segments_per_rank,
                  group.paper_segments);
      if (g == 0) std::printf(" %.4f %.4f %.4f", part.balance(), megatron, balanced);
      std::printf("\n");
      if (!(part.balance() <= balanced + 1e-9)) return 1;  // the example doubles as a check
    }
  }
  return 0;
}
