// DIP's modality-aware partitioner: every modality module gets its own pipeline chain, cut into
// chunks spread over all ranks, so that each rank holds a share of every module and the
// per-batch schedule, not the split, absorbs the batch's modality mix.
//
// For a model (any DAG: several encoders feeding an LLM, an LLM feeding a diffusion decoder), a
// cost model and P ranks:
// 1. Segment groups (chain_groups.hpp): one chain per module; projectors ride with a
//    neighbour.
// 2. Sub-microbatch size B_g per group (sub_microbatch_size.hpp): smallest size within the
//    throughput threshold of the peak, unless the user fixes it.
// 3. Segments per rank K_g. The paper sorts the groups' latencies T_g at B_g and gives the
//    fastest one segment per rank, group g K_g = floor(T_g / T_1). Layers are not equal
//    (embeddings, heads, adapters), so floor(T_g / T_1) only approximates "chunks as long as the
//    fastest module's". Our rule (`segment_rule::refined`): with tau the longest chunk of the
//    fastest group cut into P chunks by the min-max DP, give group g the K in
//    [K_paper - r, K_paper + r] (and 1 <= K <= layers / P) whose longest chunk c_g(K), again
//    from the exact DP, is closest to tau in ratio (|ln(c_g(K) / tau)|), fewer chunks on ties.
//    `segment_rule::paper` keeps floor(T_g / T_1) (capped at layers / P).
// 4. Chunks: group g's layers in chain order are cut into P * K_g chunks of consecutive layers
//    by the min-max DP on per-layer forward + backward time at B_g items (min_max.hpp), chunk c
//    on rank (c + offset_g) mod P (round robin) or, as an option, V-shaped (odd rounds run back
//    from rank P-1 to 0). The offsets are chosen to balance each rank's expected work per
//    microbatch over all groups: exhaustively when there are at most 4096 combinations,
//    greedily group by group (heaviest first) otherwise.
// 5. Memory: weights, gradients and optimiser state per rank (weight_memory.hpp) must fit the
//    GPU; otherwise a dip::error(errc::infeasible) gives the needed and available bytes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dip/batch/module_items.hpp"
#include "dip/batch/uniform.hpp"
#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/model/model.hpp"
#include "dip/partition/chain_groups.hpp"
#include "dip/partition/chunk_order.hpp"
#include "dip/partition/contiguous_placement.hpp"
#include "dip/partition/min_max.hpp"
#include "dip/partition/placement.hpp"
#include "dip/partition/placement_report.hpp"
#include "dip/partition/sub_microbatch_size.hpp"
#include "dip/partition/weight_memory.hpp"

namespace dip {

enum class segment_rule { paper, refined };

struct partition_options {
  int ranks = 1;                                           // P, pipeline-parallel ranks
  double throughput_threshold = 0.95;                      // for B_g
  std::map<std::string, std::size_t> sub_microbatch_size;  // fixed B, by the name of any module of a group
  std::map<std::string, std::size_t> segments_per_rank;    // fixed K, likewise
  segment_rule rule = segment_rule::refined;
  std::size_t segment_search_radius = 1;  // r of the refined rule
  chunk_order order = chunk_order::round_robin;
  weight_memory_rule memory{};       // tp, bytes per parameter, GPU capacity
  uniform_microbatch_shape shape{};  // the typical microbatch (item profiles)
};

struct chain_group {
  std::vector<module_id> modules;  // in chain order
  module_id leader;                // the module with the most layers; names the group
  item_kind kind = item_kind::sequence;
  std::size_t sub_microbatch_size = 1;  // B_g (items per sub-microbatch)
  double efficiency = 1;                // throughput at B_g over the peak
  duration latency{};                   // T_g: forward + backward of all its layers at B_g items
  std::size_t paper_segments = 1;       // floor(T_g / T_1)
  std::size_t segments_per_rank = 1;    // K_g chosen
  double subs_per_microbatch = 1;       // typical items per microbatch / B_g
  std::size_t rank_offset = 0;          // chunk c sits on rank (order(c) + offset) mod P
};

struct modality_partition {
  std::vector<chain_group> groups;  // group g is placement chain g
  dip::placement placement;
  std::vector<duration> chunk_time;  // per chunk: forward + backward for one sub-microbatch (B_g items)
  std::vector<duration> rank_work;   // per rank: expected forward + backward per microbatch
  std::vector<bytes> weight_memory;  // per rank, per GPU
  sub_microbatch_policy policy;      // how the batch splitter must cut microbatches for this placement

  // Largest over mean rank work: 1 is perfect balance.
  double balance() const { return max_over_mean(rank_work); }
};

namespace detail {

inline std::optional<std::size_t> fixed_for_group(const std::map<std::string, std::size_t>& fixed,
                                                  const multimodal_model& model, const std::vector<module_id>& modules,
                                                  const char* what) {
  std::optional<std::size_t> value;
  for (const auto& [name, v] : fixed) {
    const module_id id = model.at(name);  // throws not_found naming the module
    if (std::find(modules.begin(), modules.end(), id) == modules.end()) continue;
    require(v >= 1, errc::invalid_argument, std::string(what) + " of module '" + name + "'", "must be >= 1");
    require(!value || *value == v, errc::invalid_argument, std::string(what),
            "two modules of one chain were given different values");
    value = v;
  }
  return value;
}

// Per-layer forward + backward seconds of a group's layers in chain order, at `count` items.
template <cost_model_like Costs>
std::vector<double> group_layer_weights(const Costs& costs, const multimodal_model& model,
                                        const std::vector<module_id>& modules,
                                        const std::vector<module_item_profile>& profiles, double count) {
  std::vector<double> weights;
  for (module_id m : modules) {
    const module_spec& spec = model.module(m);
    const work_unit work = repeat(profiles[m.index()].item, count);
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
      const layer_cost c = costs.cost(spec, i, work);
      validate(c, "module '" + spec.name + "' layer " + std::to_string(i));
      weights.push_back(to_seconds(c.forward + c.backward()));
    }
  }
  return weights;
}

// Offsets (one per group, the first fixed at 0 since rotating every group alike only renames the
// ranks) minimising the largest rank load, then the sum of squared loads.
inline std::vector<std::size_t> balance_offsets(const std::vector<std::vector<double>>& chunk_loads, std::size_t ranks,
                                                chunk_order order) {
  const std::size_t groups = chunk_loads.size();
  // Adds group g's chunk loads to `loads` with the group rotated by `offset`.
  const auto add_group = [&](std::vector<double>& loads, std::size_t g, std::size_t offset) {
    for (std::size_t c = 0; c < chunk_loads[g].size(); ++c) {
      loads[(chunk_rank_in_order(c, ranks, order) + offset) % ranks] += chunk_loads[g][c];
    }
  };
  // (largest load, sum of squared loads): what the offsets minimise, in that order.
  const auto score_of = [](const std::vector<double>& loads) {
    double most = 0, squares = 0;
    for (double l : loads) {
      most = std::max(most, l);
      squares += l * l;
    }
    return std::pair{most, squares};
  };
  const auto score = [&](const std::vector<std::size_t>& offsets) {
    std::vector<double> loads(ranks, 0.0);
    for (std::size_t g = 0; g < groups; ++g) add_group(loads, g, offsets[g]);
    return score_of(loads);
  };
  const auto better = [](std::pair<double, double> a, std::pair<double, double> b) {
    if (a.first < b.first * (1 - 1e-12)) return true;
    if (a.first > b.first * (1 + 1e-12)) return false;
    return a.second < b.second * (1 - 1e-12);
  };
  std::vector<std::size_t> best(groups, 0);
  if (groups <= 1 || ranks <= 1) return best;
  double combinations = 1;
  for (std::size_t g = 1; g < groups; ++g) combinations *= double(ranks);
  if (combinations <= 4096) {
    std::vector<std::size_t> offsets(groups, 0);
    auto best_score = score(best);
    while (true) {  // odometer over offsets[1..]
      std::size_t g = 1;
      while (g < groups && ++offsets[g] == ranks) offsets[g++] = 0;
      if (g == groups) break;
      const auto s = score(offsets);
      if (better(s, best_score)) {
        best_score = s;
        best = offsets;
      }
    }
    return best;
  }
  // Greedy: heaviest group first, each taking its best offset given the ones already placed.
  std::vector<std::size_t> by_weight(groups);
  for (std::size_t g = 0; g < groups; ++g) by_weight[g] = g;
  const auto total = [&](std::size_t g) {
    double t = 0;
    for (double l : chunk_loads[g]) t += l;
    return t;
  };
  std::stable_sort(by_weight.begin(), by_weight.end(),
                   [&](std::size_t a, std::size_t b) { return total(a) > total(b); });
  std::vector<double> loads(ranks, 0.0);
  for (std::size_t i = 0; i < groups; ++i) {
    const std::size_t g = by_weight[i];
    auto best_score = std::pair{std::numeric_limits<double>::infinity(), 0.0};
    for (std::size_t o = 0; o < (i == 0 ? 1 : ranks); ++o) {
      std::vector<double> trial = loads;
      add_group(trial, g, o);
      const auto s = score_of(trial);
      if (better(s, best_score)) {
        best_score = s;
        best[g] = o;
      }
    }
    add_group(loads, g, best[g]);
  }
  return best;
}

}  // namespace detail

// The modality-aware partition of `model` over options.ranks ranks; `profiles` (indexed by
// module id) says what one item of each module is and how many a microbatch holds.
template <cost_model_like Costs>
modality_partition partition_modalities(const multimodal_model& model, const Costs& costs,
                                        const std::vector<module_item_profile>& profiles,
                                        const partition_options& options) {
  const std::string where = "partition of model '" + model.name() + "'";
  require(options.ranks >= 1, errc::invalid_argument, where, "needs at least one rank");
  require(profiles.size() == model.module_count(), errc::invalid_argument, where, "needs one item profile per module");
  const std::size_t ranks = std::size_t(options.ranks);
  const chain_group_layout layout = chain_groups(model, options.ranks);

  modality_partition result;
  result.policy.items_per_sub.assign(model.module_count(), 0);
  result.policy.bin_group.assign(model.module_count(), 0);
  std::vector<std::vector<double>> weights(layout.groups.size());  // per layer at B_g

  // B_g and T_g per group.
  for (std::size_t g = 0; g < layout.groups.size(); ++g) {
    chain_group group;
    group.modules = layout.groups[g];
    group.leader = group.modules.front();
    for (module_id m : group.modules) {
      if (model.module(m).layers.size() > model.module(group.leader).layers.size()) group.leader = m;
    }
    group.kind = profiles[group.leader.index()].kind;
    bool same_kind = true;
    for (module_id m : group.modules) same_kind = same_kind && profiles[m.index()].kind == group.kind;
    const module_item_profile& lead = profiles[group.leader.index()];
    const std::size_t layers = [&] {
      std::size_t n = 0;
      for (module_id m : group.modules) n += model.module(m).layers.size();
      return n;
    }();
    require(layers >= ranks, errc::infeasible, where,
            "module '" + model.module(group.leader).name + "' (with the modules sharing its chain) has " +
                std::to_string(layers) + " layers, fewer than the " + std::to_string(ranks) +
                " ranks it must be spread over");

    if (auto fixed =
            detail::fixed_for_group(options.sub_microbatch_size, model, group.modules, "sub-microbatch size")) {
      group.sub_microbatch_size = *fixed;
      group.efficiency = std::numeric_limits<double>::quiet_NaN();  // not measured against a peak
    } else if (same_kind && lead.max_per_microbatch > 1) {
      const sub_microbatch_size_choice choice = choose_sub_microbatch_size(
          costs, model, group.modules, profiles, lead.max_per_microbatch, options.throughput_threshold);
      group.sub_microbatch_size = choice.size;
      group.efficiency = choice.efficiency;
    }
    const double b = double(group.sub_microbatch_size);
    group.latency = group_time(costs, model, group.modules, profiles, b);
    require(group.latency > duration{}, errc::invalid_argument, where,
            "module '" + model.module(group.leader).name + "' costs nothing under the cost model");
    group.subs_per_microbatch = std::max(lead.typical_per_microbatch, 1.0) / b;
    if (!same_kind || group.kind == item_kind::sequence) group.subs_per_microbatch = 1;
    weights[g] = detail::group_layer_weights(costs, model, group.modules, profiles, b);
    for (module_id m : group.modules) {
      // A chain mixing item kinds cannot split its modules alike: it runs microbatches whole.
      result.policy.items_per_sub[m.index()] =
          same_kind && group.kind != item_kind::sequence ? group.sub_microbatch_size : 0;
      result.policy.bin_group[m.index()] = same_kind ? g : layout.groups.size() + m.index();
    }
    result.groups.push_back(std::move(group));
  }

  // K_g.
  std::size_t fastest = 0;
  for (std::size_t g = 1; g < result.groups.size(); ++g) {
    if (result.groups[g].latency < result.groups[fastest].latency) fastest = g;
  }
  const double t1 = to_seconds(result.groups[fastest].latency);
  const double tau = min_max_partition(weights[fastest], ranks, where).largest;
  for (std::size_t g = 0; g < result.groups.size(); ++g) {
    chain_group& group = result.groups[g];
    const std::size_t most = std::max<std::size_t>(weights[g].size() / ranks, 1);
    // The ratio is unbounded when the fastest chain takes next to no time (measured costs scaled
    // down to nothing); a chain cannot have more segments than layers, so clamp before the cast.
    const double ratio = t1 > 0 ? std::floor(to_seconds(group.latency) / t1 + 1e-9) : 1.0;
    group.paper_segments = std::size_t(std::clamp(ratio, 1.0, double(std::max<std::size_t>(weights[g].size(), 1))));
    if (auto fixed = detail::fixed_for_group(options.segments_per_rank, model, group.modules, "segments per rank")) {
      require(*fixed <= most, errc::infeasible, "segments per rank of module '" + model.module(group.leader).name + "'",
              std::to_string(*fixed) + " x " + std::to_string(ranks) + " ranks is more chunks than its " +
                  std::to_string(weights[g].size()) + " layers");
      group.segments_per_rank = *fixed;
      continue;
    }
    const std::size_t paper = std::min(group.paper_segments, most);
    group.segments_per_rank = paper;
    if (options.rule == segment_rule::paper || g == fastest) continue;
    const std::size_t r = options.segment_search_radius;
    double best_score = std::numeric_limits<double>::infinity();
    for (std::size_t k = paper > r ? paper - r : 1; k <= std::min(paper + r, most); ++k) {
      const double longest = min_max_partition(weights[g], k * ranks, where).largest;
      const double score = std::abs(std::log(longest / tau));
      if (score < best_score - 1e-12) {
        best_score = score;
        group.segments_per_rank = k;
      }
    }
  }

  // Chunks, their loads per microbatch, and the offsets that balance the ranks.
  std::vector<contiguous_partition> cuts;
  std::vector<std::vector<double>> loads(result.groups.size());
  for (std::size_t g = 0; g < result.groups.size(); ++g) {
    const chain_group& group = result.groups[g];
    cuts.push_back(min_max_partition(weights[g], group.segments_per_rank * ranks, where));
    for (std::size_t c = 0; c < cuts[g].parts(); ++c) {
      double sum = 0;
      for (std::size_t i = cuts[g].starts[c]; i < cuts[g].end_of(c, weights[g].size()); ++i) sum += weights[g][i];
      loads[g].push_back(sum * group.subs_per_microbatch);
    }
  }
  const std::vector<std::size_t> offsets = detail::balance_offsets(loads, ranks, options.order);

  placement& p = result.placement;
  p.ranks = options.ranks;
  p.chains.assign(result.groups.size(), {});
  p.chain_inputs = layout.inputs;
  result.rank_work.assign(ranks, duration{});
  for (std::size_t g = 0; g < result.groups.size(); ++g) {
    chain_group& group = result.groups[g];
    group.rank_offset = offsets[g];
    // Layer i of the group's chain order -> (module, layer).
    std::vector<layer_ref> refs;
    for (module_id m : group.modules) {
      for (std::size_t i = 0; i < model.module(m).layers.size(); ++i) refs.push_back({m, i});
    }
    for (std::size_t c = 0; c < cuts[g].parts(); ++c) {
      chunk_spec chunk;
      chunk.rank = rank_id::from_index((chunk_rank_in_order(c, ranks, options.order) + offsets[g]) % ranks);
      chunk.chain = g;
      chunk.position = c;
      double chunk_seconds = 0;
      for (std::size_t i = cuts[g].starts[c]; i < cuts[g].end_of(c, refs.size()); ++i) {
        chunk_seconds += weights[g][i];
        if (chunk.spans.empty() || chunk.spans.back().module != refs[i].module) {
          chunk.spans.push_back({refs[i].module, refs[i].layer, refs[i].layer + 1});
        } else {
          chunk.spans.back().last = refs[i].layer + 1;
        }
      }
      result.chunk_time.push_back(seconds(chunk_seconds));
      result.rank_work[chunk.rank.index()] += seconds(loads[g][c]);
      p.chains[g].push_back(chunk_id::from_index(p.chunks.size()));
      p.chunks.push_back(std::move(chunk));
    }
  }
  validate(p, model);
  validate(result.policy, model);
  result.weight_memory = check_weight_memory(model, p, options.memory, where);
  return result;
}

// The same with every module's default item profile (module_items.hpp) for options.shape.
template <cost_model_like Costs>
modality_partition partition_modalities(const multimodal_model& model, const Costs& costs,
                                        const partition_options& options) {
  std::vector<module_item_profile> profiles;
  for (std::size_t m = 0; m < model.module_count(); ++m) {
    profiles.push_back(default_item_profile(model, module_id::from_index(m), options.shape));
  }
  return partition_modalities(model, costs, profiles, options);
}

}  // namespace dip
