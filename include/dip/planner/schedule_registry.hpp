// dip::schedule_registry: the schedules a dip::planner can plan, by name.
//
// An entry says which placement the schedule runs on (a classic contiguous pipeline, round robin
// or V-shaped, DIP's modality-aware one, or the modality-aware one with one chunk per rank),
// whether its stage graph splits the backward into I and W, whether it plans under the memory
// cap itself or is fitted to it afterwards with recompute/offload, and the function that orders
// the stages. The built-in registry holds dip, static-dip, optimus and the classic six (gpipe,
// 1f1b, interleaved, zb1p, and zbv and dualpipev on the V); a trainer adds its own with `add`
// (same rules: the function returns a plan of the graph it gets, the planner validates and
// simulates it).
//
// Verbs: every planning function is plan_<schedule> (plan_dip, plan_static_dip, plan_optimus,
// plan_baseline); the registry maps names to them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/partition/chunk_order.hpp"
#include "dip/planner/dip_planner.hpp"
#include "dip/planner/modality_baselines.hpp"
#include "dip/schedule/baselines.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip {

// The placement a schedule runs on.
enum class schedule_placement {
  classic,             // one chain over the whole model (planner_options::partition: balanced or megatron)
  modality,            // DIP's modality-aware placement, K chunks per rank per chain (tuned)
  modality_one_chunk,  // the modality-aware placement with one chunk per rank for every chain (optimus)
};

// What a schedule's planning function gets: the stage graph of one batch on its placement, and
// the planner's options for it (memory cap, weights, link, search budget, seed). The cap is
// nullopt for a schedule fitted afterwards when planner_options::fit_memory is on.
struct schedule_request {
  std::shared_ptr<const stage_graph> graph;
  dip_planner_options options;
};

struct schedule_entry {
  schedule_placement placement = schedule_placement::classic;
  std::size_t chunks_per_rank = 1;  // classic placements: chunks per rank v; 0: planner_options::interleaved_chunks
  chunk_order order = chunk_order::round_robin;  // classic placements: round robin, or the V (2 chunks per rank)
  bool split_backward = false;                   // the stage graph splits B into I and W (zero-bubble schedules)
  bool plans_within_cap = false;  // true: plans under the memory cap itself (dip); false: fitted afterwards
  bool searched = false;          // true: the asynchronous planner offers its improvements (dip's search)
  std::function<plan(const schedule_request&)> make;
  std::string description;
};

class schedule_registry {
 public:
  // dip, static-dip, optimus, gpipe, 1f1b, interleaved, zb1p, zbv, dualpipev.
  static schedule_registry builtin() {
    schedule_registry r;
    r.add("dip", {.placement = schedule_placement::modality,
                  .plans_within_cap = true,
                  .searched = true,
                  .make = [](const schedule_request& q) { return plan_dip(q.graph, q.options); },
                  .description = "DIP: searched order of sub-microbatch passes, memory strategies within the cap"});
    r.add("static-dip", {.placement = schedule_placement::modality,
                         .make = [](const schedule_request& q) { return plan_static_dip(q.graph, q.options); },
                         .description = "DIP's placement, natural order and 1F1B's in-flight rule, no search"});
    r.add("optimus", {.placement = schedule_placement::modality_one_chunk,
                      .make = [](const schedule_request& q) { return plan_optimus(q.graph, q.options); },
                      .description = "a plain 1F1B backbone with the encoders in its bubbles"});
    for (const std::string& name : baseline_names()) {
      const baseline_needs needs = baseline_needs_of(name);
      // The V has two chunks per rank; a virtual pipeline (interleaved) the planner's choice.
      r.add(name, {.placement = schedule_placement::classic,
                   .chunks_per_rank = needs.order == chunk_order::v_shape ? 2u
                                      : needs.one_chunk_per_rank          ? 1u
                                                                          : 0u,
                   .order = needs.order,
                   .split_backward = needs.split_backward,
                   .make = [name](const schedule_request& q) { return plan_baseline(name, q.graph); },
                   .description = "classic pipeline schedule " + name});
    }
    return r;
  }

  // Adds (or replaces) a schedule. Throws dip::error(errc::invalid_argument) for an empty name
  // or an entry without a planning function.
  void add(std::string name, schedule_entry entry) {
    require(!name.empty(), errc::invalid_argument, "schedule_registry::add", "the schedule needs a name");
    require(bool(entry.make), errc::invalid_argument, "schedule '" + name + "'", "has no planning function");
    const auto found = index_of(name);
    if (found < entries_.size()) {
      entries_[found].second = std::move(entry);
    } else {
      entries_.emplace_back(std::move(name), std::move(entry));
    }
  }

  bool contains(std::string_view name) const noexcept { return index_of(name) < entries_.size(); }

  // Throws dip::error(errc::not_found) listing the known names for an unknown one.
  const schedule_entry& at(std::string_view name) const {
    const auto found = index_of(name);
    if (found == entries_.size()) {
      throw error(errc::not_found, "schedule", "unknown schedule '" + std::string(name) + "' (known: " + known() + ")");
    }
    return entries_[found].second;
  }

  // In the order they were added.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, entry] : entries_) out.push_back(name);
    return out;
  }

  // "dip, static-dip, ...": for error messages and help texts.
  std::string known() const {
    std::string out;
    for (const auto& [name, entry] : entries_) out += (out.empty() ? "" : ", ") + name;
    return out;
  }

 private:
  std::size_t index_of(std::string_view name) const noexcept {
    const auto it = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e.first == name; });
    return std::size_t(it - entries_.begin());
  }

  std::vector<std::pair<std::string, schedule_entry>> entries_;
};

}  // namespace dip
