// Fuzz target: planning a fuzzed batch end to end through dip::planner, as dip-plan does for
// one iteration.
//
//   bytes --FuzzedDataProvider--> model (tiny-vlm | tiny-t2v), pp 1-4, schedule, memory cap,
//         planner options, samples --packer--> 1-6 microbatches
//         --dip::planner::plan--> partition (K tuned or fixed) + split + stage graph + plan
//                                 + fit memory + validate + simulate
//   planned batch --validate--> makespan >= lower bound
//
// Every plan that comes out must pass the validator, simulate to the end and not beat the lower
// bound (the busiest rank, the critical path, all work spread over the ranks). Refusals are
// allowed only as dip::error of the kinds a planner documents: infeasible, invalid_argument, and
// invalid_plan from the DIP planner when a tight memory cap leaves it nothing that fits.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <dip/batch/packing.hpp>
#include <dip/batch/trace.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/weight_memory.hpp>
#include <dip/planner/planner.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

#include "fuzz_check.hpp"

namespace {

using dip::fuzz::check;

struct planning_case {
  const dip::model_preset* preset = nullptr;
  int pp = 1;
  std::string schedule;
  std::size_t rollouts = 0;  // the dip schedule's segment search budget
  bool memory_strategies = true;
  std::size_t segments_per_rank = 0;  // 0: the partitioner's rule, or tuned
  bool tune_segments = false;         // with segments_per_rank 0: K per chain tuned on the batch
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
      case 1:
        s.images.push_back(dip::trace_image::with_tokens(in.ConsumeIntegralInRange<std::int64_t>(1, 3000)));
        break;
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
  c.schedule =
      in.PickValueInArray({"dip", "static-dip", "optimus", "1f1b", "zb1p", "interleaved", "gpipe", "zbv", "dualpipev"});
  c.rollouts = in.ConsumeIntegralInRange<std::size_t>(0, 6);
  c.memory_strategies = in.ConsumeBool();
  c.segments_per_rank = in.ConsumeIntegralInRange<std::size_t>(0, 3);
  c.tune_segments = c.segments_per_rank == 0 && in.ConsumeBool();
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

// The planner dip-plan would build for this case: the preset's TP and GPU at `pp` ranks, the
// case's link latency, `cap` per GPU (nullopt: the GPU's memory) and options.
dip::planner<dip::analytic_cost_model> planner_for(const planning_case& c, std::optional<dip::bytes> cap) {
  dip::cluster_spec cluster = dip::cluster_of(*c.preset);
  cluster.pp = c.pp;
  cluster.p2p_latency = c.latency;
  cluster.memory_cap = cap;
  dip::planner_options options;
  options.segments_per_rank = c.segments_per_rank;
  options.sub_microbatch_size = c.sub_microbatch_size;
  options.tune_segments = c.tune_segments;
  if (c.tune_segments) options.tuning_batches = {c.batch};  // as tuning on the first batch planned does
  options.search_ms = 0;
  options.search_rollouts = c.rollouts;
  options.threads = 1;
  options.seed = 7;
  options.memory_strategies = c.memory_strategies;
  return {c.preset->model, dip::analytic_cost_model(cluster.gpu, cluster.tp), cluster, options};
}

void plan_and_check(const planning_case& c) {
  std::optional<dip::bytes> cap;
  if (c.tight_cap_headroom) {
    // The weights the schedule's placement puts on its fullest rank at the GPU's memory, plus
    // the headroom: the tight planner partitions (and tunes) again under that cap.
    const auto roomy = planner_for(c, std::nullopt);
    const dip::cluster_spec& cluster = roomy.cluster();
    const std::vector<dip::bytes> weights = dip::weight_bytes_per_rank(c.preset->model, roomy.placement_of(c.schedule),
                                                                       cluster.tp, cluster.bytes_per_parameter);
    cap = *std::max_element(weights.begin(), weights.end()) + *c.tight_cap_headroom;
  }
  const auto planner = planner_for(c, cap);
  const dip::planned_batch planned = planner.plan(c.batch, c.schedule);
  check(planned.schedule == c.schedule, "the planned batch names its schedule");
  check(planned.plan.graph->placement().ranks == c.pp, "the placement has the ranks asked for");
  check(planned.split.size() == c.batch.size(), "one split per packed microbatch");

  const auto violation = dip::first_violation(
      planned.plan, {.memory_cap = planner.cluster().cap(), .weight_memory = planned.weight_memory});
  if (violation) std::fprintf(stderr, "dip fuzz: %s plan: %s\n", c.schedule.c_str(), violation->c_str());
  check(!violation, "a plan that comes out passes the validator, its memory cap included");

  const dip::simulation_result& result = planned.simulation;
  const double makespan = dip::to_milliseconds(result.makespan);
  const double bound = dip::to_milliseconds(result.bounds.classic());
  if (makespan < bound * (1 - 1e-9))
    std::fprintf(stderr, "dip fuzz: makespan %.9g ms < bound %.9g ms\n", makespan, bound);
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
