// Choosing the segments per rank (K) of each chain by planning sample batches.
//
// The partitioner picks K per chain from stage times alone (the paper's floor(T_i / T_1), or
// our refined rule, modality_partition.hpp). Whether K segments interleave better than K - 1
// also depends on the batches' mix and on memory, which only a schedule shows: on VLM-S with
// OBELICS-like data, for example, one LLM segment per rank plans faster than the two the rule
// picks. The placement is fixed for a whole training run (weights live on their ranks), so this
// is an offline step: plan a few sample batches with the DIP planner (phase 2 alone, without
// search or memory strategies, so each trial takes milliseconds) for each candidate K and keep
// the fastest, by coordinate descent over the chains starting from the rule's K. A K that phase
// 2 alone cannot fit under the cap is planned again with memory strategies (when the planner
// allows them): under a tight cap the fastest K may be one that only fits by recomputing, and
// judging it unplannable would pick a K that fits without help but runs slower.
#pragma once

#include <cstddef>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dip/batch/packing.hpp"
#include "dip/batch/splitter.hpp"
#include "dip/core/error.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/model/model.hpp"
#include "dip/partition/modality_partition.hpp"
#include "dip/partition/placement.hpp"
#include "dip/planner/dip_planner.hpp"
#include "dip/schedule/build_stage_graph.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/sim/simulator.hpp"

namespace dip {

struct segment_trial {
  std::vector<std::size_t> segments_per_rank;  // K per chain (group), in group order
  std::optional<duration> mean_makespan;       // nothing: the partition or a plan did not fit
  bool with_memory_strategies = false;         // planned with phase 3 (phase 2 alone did not fit)
  std::string failure;                         // why, when it did not
};

struct segment_tuning {
  modality_partition partition;       // the fastest partition found
  std::vector<segment_trial> trials;  // every candidate tried, the rule's first
};

struct segment_tuning_options {
  std::size_t radius = 1;  // K - radius .. K + radius around the current K of a chain
  int max_rounds = 3;      // coordinate-descent sweeps over the chains
};

namespace detail {

inline partition_options with_segments(partition_options options, const modality_partition& from,
                                       const multimodal_model& model, const std::vector<std::size_t>& segments) {
  for (std::size_t g = 0; g < from.groups.size(); ++g) {
    for (module_id m : from.groups[g].modules) options.segments_per_rank[model.module(m).name] = segments[g];
  }
  return options;
}

}  // namespace detail

// Tunes K per chain for `samples` (each a global batch of packed microbatches; one or two
// batches of the training data are enough). `planner` gives the memory cap and link; its search
// budget is not used, its memory strategies only for a K that phase 2 alone cannot fit, and its
// weight memory is recomputed per placement. Throws
// dip::error(errc::invalid_argument) without samples, and what partition_modalities throws when
// even the rule's K does not partition.
template <cost_model_like Costs>
segment_tuning tune_segments_per_rank(const multimodal_model& model, const Costs& costs,
                                      const partition_options& options,
                                      std::span<const std::vector<packed_microbatch>> samples,
                                      dip_planner_options planner, const segment_tuning_options& tuning = {}) {
  require(!samples.empty(), errc::invalid_argument, "tune_segments_per_rank", "no sample batches");
  // Phase 2 alone (no search, no memory strategies): each trial then takes milliseconds, where
  // phase 3 on every relaxed cap takes seconds on VLM-L. Phase 3 only where phase 2 cannot fit.
  planner.search_ms = 0;
  planner.search_rollouts = 0;
  const bool strategies_allowed = planner.memory_strategies && planner.memory_cap.has_value();
  planner.memory_strategies = false;
  segment_tuning result{partition_modalities(model, costs, options), {}};
  std::map<std::vector<std::size_t>, std::optional<duration>> seen;

  const auto evaluate = [&](const std::vector<std::size_t>& segments) -> std::optional<duration> {
    if (auto found = seen.find(segments); found != seen.end()) return found->second;
    segment_trial trial{segments, std::nullopt, false, {}};
    std::optional<modality_partition> partition;
    const auto mean_over_samples = [&](const dip_planner_options& with) {
      duration total{};
      for (const std::vector<packed_microbatch>& batch : samples) {
        const std::vector<split_microbatch> split = split_batch(batch, model, partition->policy, costs);
        auto graph = std::make_shared<const stage_graph>(
            build_stage_graph(model, partition->placement, to_batch_work(split), costs));
        total += simulate(plan_dip(graph, with), simulation_options_of(with)).makespan;
      }
      return total / double(samples.size());
    };
    try {
      partition = partition_modalities(model, costs, detail::with_segments(options, result.partition, model, segments));
      planner.weight_memory = partition->weight_memory;
      try {
        trial.mean_makespan = mean_over_samples(planner);
      } catch (const error& e) {
        if (!strategies_allowed || e.code() != errc::invalid_plan) throw;
        // Phase 3 on the orders phase 2 makes at the real cap only: the looser caps cost seconds
        // a trial on VLM-L, and tuning wants a ranking of K, not the best plan.
        dip_planner_options with_strategies = planner;
        with_strategies.memory_strategies = true;
        with_strategies.relaxations.clear();
        trial.with_memory_strategies = true;
        trial.mean_makespan = mean_over_samples(with_strategies);
      }
    } catch (const error& e) {
      // A K the chain's layers cannot take, weights that do not fit, or no plan within the cap.
      trial.failure = e.what();
    }
    result.trials.push_back(trial);
    seen.emplace(segments, trial.mean_makespan);
    return trial.mean_makespan;
  };

  std::vector<std::size_t> current;
  for (const chain_group& g : result.partition.groups) current.push_back(g.segments_per_rank);
  std::optional<duration> best_time = evaluate(current);
  std::vector<std::size_t> best = current;
  for (int round = 0; round < tuning.max_rounds; ++round) {
    bool improved = false;
    for (std::size_t g = 0; g < current.size(); ++g) {
      const std::size_t k = best[g];
      for (std::size_t candidate = k > tuning.radius ? k - tuning.radius : 1; candidate <= k + tuning.radius;
           ++candidate) {
        if (candidate == k) continue;
        std::vector<std::size_t> trial = best;
        trial[g] = candidate;
        const std::optional<duration> t = evaluate(trial);
        if (t && (!best_time || *t < *best_time)) {
          best_time = t;
          best = trial;
          improved = true;
        }
      }
    }
    if (!improved) break;
  }
  if (best != current) {
    result.partition =
        partition_modalities(model, costs, detail::with_segments(options, result.partition, model, best));
  }
  return result;
}

}  // namespace dip
