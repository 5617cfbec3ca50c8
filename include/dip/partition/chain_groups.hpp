// Segment groups: which modules share one pipeline chain in a modality-aware (DIP) placement.
//
// DIP gives every modality module its own chain of chunks spread over all ranks. A module too
// small for that (a projector: one or two MLP layers cannot be cut into a chunk per rank) rides
// on a neighbour's chain instead:
// - a projector, or any module with fewer layers than ranks, joins the chain of its producer
//   when it has exactly one producer and is that producer's only consumer (a vision encoder's
//   adapter runs right after the encoder, per image);
// - otherwise it joins its consumer's chain under the mirrored condition (an adapter in front of
//   the module it feeds);
// - otherwise it keeps a chain of its own (and the partitioner reports that it has too few
//   layers, if it does).
// A group's modules form a path in the module DAG, so its chain runs them in that order. A
// group's inputs are the groups of every producer outside the group.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "dip/core/ids.hpp"
#include "dip/model/model.hpp"

namespace dip {

struct chain_group_layout {
  std::vector<std::vector<module_id>> groups;    // modules of each group, in chain order
  std::vector<std::size_t> group_of;             // by module index
  std::vector<std::vector<std::size_t>> inputs;  // groups feeding each group
};

// A module that cannot have a chain of its own over `ranks` ranks.
inline bool rides_on_neighbour(const module_spec& module, int ranks) {
  return module.role == module_role::projector || module.layers.size() < std::size_t(std::max(ranks, 1));
}

inline chain_group_layout chain_groups(const multimodal_model& model, int ranks) {
  const std::size_t n = model.module_count();
  constexpr std::size_t none = static_cast<std::size_t>(-1);
  chain_group_layout layout;
  layout.group_of.assign(n, none);
  std::vector<std::vector<module_id>>& groups = layout.groups;

  // Pass 1, topological order: every module opens a group unless it attaches to its producer's
  // group, whose last module must then be that producer (the group stays a path).
  std::vector<module_id> deferred;
  for (module_id m : model.topological_order()) {
    const std::vector<module_id> producers = model.inputs_of(m);
    if (rides_on_neighbour(model.module(m), ranks) && producers.size() == 1 &&
        model.outputs_of(producers[0]).size() == 1) {
      const std::size_t g = layout.group_of[producers[0].index()];
      if (g != none && groups[g].back() == producers[0]) {
        groups[g].push_back(m);
        layout.group_of[m.index()] = g;
        continue;
      }
    }
    if (rides_on_neighbour(model.module(m), ranks)) {
      deferred.push_back(m);  // maybe attaches to its consumer, decided in pass 2
      continue;
    }
    layout.group_of[m.index()] = groups.size();
    groups.push_back({m});
  }
  // Pass 2, reverse topological order: attach to the consumer's group, at its front.
  for (auto it = deferred.rbegin(); it != deferred.rend(); ++it) {
    const module_id m = *it;
    const std::vector<module_id> consumers = model.outputs_of(m);
    if (consumers.size() == 1 && model.inputs_of(consumers[0]).size() == 1) {
      const std::size_t g = layout.group_of[consumers[0].index()];
      if (g != none && groups[g].front() == consumers[0]) {
        groups[g].insert(groups[g].begin(), m);
        layout.group_of[m.index()] = g;
        continue;
      }
    }
    layout.group_of[m.index()] = groups.size();
    groups.push_back({m});
  }
  // Groups in topological order of their first module, so chain k's inputs come before it.
  std::vector<std::size_t> rank_in_order(n);
  const auto order = model.topological_order();
  for (std::size_t i = 0; i < order.size(); ++i) rank_in_order[order[i].index()] = i;
  std::vector<std::size_t> permutation(groups.size());
  for (std::size_t g = 0; g < groups.size(); ++g) permutation[g] = g;
  std::sort(permutation.begin(), permutation.end(), [&](std::size_t a, std::size_t b) {
    return rank_in_order[groups[a].front().index()] < rank_in_order[groups[b].front().index()];
  });
  std::vector<std::vector<module_id>> sorted;
  sorted.reserve(permutation.size());
  for (std::size_t g : permutation) sorted.push_back(groups[g]);
  groups = std::move(sorted);
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (module_id m : groups[g]) layout.group_of[m.index()] = g;
  }
  layout.inputs.assign(groups.size(), {});
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (module_id m : groups[g]) {
      for (module_id producer : model.inputs_of(m)) {
        const std::size_t source = layout.group_of[producer.index()];
        if (source != g &&
            std::find(layout.inputs[g].begin(), layout.inputs[g].end(), source) == layout.inputs[g].end()) {
          layout.inputs[g].push_back(source);
        }
      }
    }
  }
  return layout;
}

}  // namespace dip
