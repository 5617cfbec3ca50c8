// Fuzz target: planning a fuzzed batch end to end, as dip-plan does for one iteration.
//
//   bytes --FuzzedDataProvider--> model (tiny-vlm | tiny-t2v), pp 1-4, schedule, memory cap,
//         samples --packer--> 1-6 microbatches --partition + split--> stage graph --> plan
//   plan --validate--> --simulate--> makespan >= lower bound
//
// Every plan that comes out must pass the validator, simulate to the end and not beat the lower
// bound (the busiest rank, the critical path, all work spread over the ranks). Refusals are
// allowed only as dip::error of the kinds a planner documents: infeasible, invalid_argument, and
// invalid_plan from the DIP planner when a tight memory cap leaves it nothing that fits.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <dip/batch/module_items.hpp>
#include <dip/batch/packing.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/batch/trace.hpp>
#include <dip/batch/uniform.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/hardware.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/baseline_partitions.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/dip_planner.hpp>
#include <dip/schedule/modality_baselines.hpp>
#include <dip/schedule/placement.hpp>
#include <dip/schedule/stage_graph.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

#include "fuzz_check.hpp"

namespace {

using dip::fuzz::check;

struct planning_case {
  const dip::model_preset* preset = nullptr;
  int pp = 1;
  std::string schedule;
  std::size_t rollouts = 0;          // the dip schedule's segment search budget
  bool memory_strategies = true;
  std::size_t segments_per_rank = 0;  // 0: the partitioner's rule
  std::size_t sub_microbatch_size = 0;
  std::optional<dip::bytes> tight_cap_headroom;  // activation bytes allowed above the weights; none: the GPU's memory
  dip::duration latency{};
  std::vector<dip::packed_microbatch> batch;
};

const dip::model_preset& tiny_vlm() {
  static const dip::model_preset preset = dip::find_preset("tiny-vlm");
  return preset;
}
const dip::model_preset& tiny_t2v() {
  static const dip::model_preset preset = dip::find_preset("tiny-t2v");
  return preset;
}

dip::training_sample vision_language_sample(FuzzedDataProvider& in) {
  dip::training_sample s;
  s.text_tokens = in.ConsumeIntegralInRange<std::int64_t>(0, 12000);  // above 8192: truncated
  const int images = in.ConsumeIntegralInRange(0, 6);
  for (int i = 0; i < images; ++i) {
    switch (in.ConsumeIntegralInRange(0, 2)) {
      case 0: s.images.push_back(dip::trace_image::default_size()); break;
      case 1: s.images.push_back(dip::trace_image::with_tokens(in.ConsumeIntegralInRange<std::int64_t>(1, 3000))); break;
      default:
        s.images.push_back(dip::trace_image::with_pixels(in.ConsumeIntegralInRange<std::int64_t>(1, 4000),
                                                         in.ConsumeIntegralInRange<std::int64_t>(1, 4000)));
    }
  }
  return s;
}

dip::training_sample text_to_video_sample(FuzzedDataProvider& in) {
  dip::training_sample s;
  s.text_tokens = in.ConsumeIntegralInRange<std::int64_t>(0, 300);
  const int clips = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < clips; ++i) s.clips.push_back({in.ConsumeFloatingPointInRange(0.01, 40.0)});
  return s;
}

planning_case decode(FuzzedDataProvider& in) {
  planning_case c;
  const bool video = in.ConsumeBool();
  c.preset = video ? &tiny_t2v() : &tiny_vlm();
  c.pp = in.ConsumeIntegralInRange(1, 4);
  c.schedule = in.PickValueInArray({"dip", "static-dip", "1f1b", "zb1p", "interleaved", "gpipe"});
  c.rollouts = in.ConsumeIntegralInRange<std::size_t>(0, 6);
  c.memory_strategies = in.ConsumeBool();
  c.segments_per_rank = in.ConsumeIntegralInRange<std::size_t>(0, 3);
  c.sub_microbatch_size = in.ConsumeIntegralInRange<std::size_t>(0, 4);
  if (in.ConsumeBool()) c.tight_cap_headroom = dip::bytes(double(in.ConsumeIntegralInRange<std::int64_t>(0, 1 << 26)));
  c.latency = dip::microseconds(double(in.ConsumeIntegralInRange(0, 100)));
  const std::size_t microbatches = in.ConsumeIntegralInRange<std::size_t>(1, 6);

  // Samples packed the way batch_source packs a trace, until enough microbatches are closed.
  dip::sequence_packer packer(c.preset->model);
  for (std::uint64_t i = 0; packer.ready() < microbatches && in.remaining_bytes() > 0 && i < 64; ++i) {
    packer.add(video ? text_to_video_sample(in) : vision_language_sample(in), i);
  }
  packer.flush();
  while (packer.ready() > 0 && c.batch.size() < microbatches) c.batch.push_back(packer.take());
  return c;
}

bool is_modality_schedule(const std::string& name) { return name == "dip" || name == "static-dip"; }

void plan_and_check(const planning_case& c) {
  const dip::multimodal_model& model = c.preset->model;
  const int tp = c.preset->parallel.tp;
  const dip::gpu_spec gpu = dip::find_gpu("H800");
  const dip::analytic_cost_model costs(gpu, tp);
  const dip::weight_memory_rule memory_rule{tp, 16.0, gpu.memory};
  const dip::communication_model comm{c.latency, gpu.nvlink};

  std::optional<dip::modality_partition> modality;
  dip::placement place;
  dip::sub_microbatch_policy policy = dip::unsplit_policy(model);
  if (is_modality_schedule(c.schedule)) {
    dip::partition_options options;
    options.ranks = c.pp;
    options.memory = memory_rule;
    for (const dip::module_spec& m : model.modules()) {
      const dip::item_kind kind = dip::module_item_kind(model, m.id);
      if (c.sub_microbatch_size > 0 && (kind == dip::item_kind::image || kind == dip::item_kind::clip)) {
        options.sub_microbatch_size[m.name] = c.sub_microbatch_size;
      }
      if (c.segments_per_rank > 0) options.segments_per_rank[m.name] = c.segments_per_rank;
    }
    modality = dip::partition_modalities(model, costs, options);
    place = modality->placement;
    policy = modality->policy;
  } else {
    const auto uniform_work = [&](const dip::module_spec& m) { return dip::uniform_module_work(model, m); };
    place = dip::balanced_partition(model, costs, uniform_work, c.pp, c.schedule == "interleaved" ? 2 : 1, memory_rule);
  }
  check(place.ranks == c.pp, "the placement has the ranks asked for");

  const std::vector<dip::split_microbatch> split = dip::split_batch(c.batch, model, policy, costs);
  const std::vector<dip::bytes> weights = dip::weight_bytes_per_rank(model, place, tp);
  auto graph = std::make_shared<const dip::stage_graph>(
      dip::build_stage_graph(model, place, dip::to_batch_work(split), costs, {.split_backward = c.schedule == "zb1p"}));

  dip::bytes cap = gpu.memory;
  if (c.tight_cap_headroom) cap = *std::max_element(weights.begin(), weights.end()) + *c.tight_cap_headroom;

  dip::plan plan;
  if (c.schedule == "dip") {
    plan = dip::plan_dip_schedule(graph, {.memory_cap = cap,
                                          .weight_memory = weights,
                                          .comm = comm,
                                          .search_ms = 0,
                                          .search_rollouts = c.rollouts,
                                          .threads = 1,
                                          .seed = 7,
                                          .memory_strategies = c.memory_strategies});
  } else {
    plan = c.schedule == "static-dip"
               ? dip::plan_static_dip(graph, {.memory_cap = std::nullopt, .weight_memory = weights, .comm = comm})
               : dip::baseline_plan(c.schedule, graph);
    dip::fit_memory(plan, cap, weights);  // as dip-plan's --fit-memory does
  }

  const auto violation = dip::first_violation(plan, {.memory_cap = cap, .weight_memory = weights});
  if (violation) std::fprintf(stderr, "dip fuzz: %s plan: %s\n", c.schedule.c_str(), violation->c_str());
  check(!violation, "a plan that comes out passes the validator, its memory cap included");

  const dip::simulation_result result = dip::simulate(plan, {.comm = comm, .weight_memory = weights});
  const double makespan = dip::to_milliseconds(result.makespan);
  const double bound = dip::to_milliseconds(result.bounds.best());
  if (makespan < bound * (1 - 1e-9)) std::fprintf(stderr, "dip fuzz: makespan %.9g ms < bound %.9g ms\n", makespan, bound);
  check(makespan >= bound * (1 - 1e-9), "no plan beats the lower bound");
  check(result.bubble_ratio >= -1e-9 && result.bubble_ratio <= 1 + 1e-9, "the bubble ratio is a ratio");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const planning_case c = decode(in);
  if (c.batch.empty()) return 0;  // every sample dropped (no text, no clip): nothing to plan
  try {
    plan_and_check(c);
  } catch (const dip::error& e) {
    const bool documented = e.code() == dip::errc::infeasible || e.code() == dip::errc::invalid_argument ||
                            (e.code() == dip::errc::invalid_plan && c.schedule == "dip" && c.tight_cap_headroom);
    if (!documented) std::fprintf(stderr, "dip fuzz: unexpected refusal: %s\n", e.what());
    check(documented, "planning refuses only with a documented dip::error");
  }
  return 0;
}
