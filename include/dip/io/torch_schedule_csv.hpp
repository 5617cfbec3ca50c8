// Export of a plan to the "compute_only" CSV schedule of PyTorch's torch.distributed.pipelining
// (read by PipelineScheduleMulti._load_csv and _PipelineScheduleRuntime._load_csv), and a
// validator with the rules PyTorch applies when it loads one.
//
// The format, as of the pinned release (torch_pipelining_version): one row per pipeline rank,
// each cell one compute action "<stage><kind><microbatch>", e.g. 0F1, 1I0, 1W0, 2B3, where
// stage is the *global* stage index (stage s feeds stage s + 1 forward and s - 1 backward) and
// kind is F (forward), B (full backward), I (input gradient) or W (weight gradient). An empty
// cell is an idle step. PyTorch inserts the sends and receives itself (its lowering pass).
//
// What the format cannot express, and so what to_torch_schedule refuses, saying which:
// - more than one chain (DIP's modality-aware placements): PyTorch's stages form one sequence;
// - microbatches of different shapes: PyTorch splits one batch into equal microbatches, so
//   every stage of a chunk must cost the same in every (sub-)microbatch (time, kept memory,
//   output bytes); sub-microbatches become microbatches of their own when every microbatch has
//   the same number of them;
// - memory strategies other than keep (recompute and offload are not actions there);
// - the order of sends and receives (PyTorch derives its own from the compute order).
// PyTorch 2.5 cannot take these files: it has no I action and wants a W for every
// microbatch of every stage. The I / B / W rules below are those of 2.6 and later.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/strategy_cost.hpp"

namespace dip {

// The torch release whose format and _validate_schedule rules this file follows (checked by the
// optional test tests/torch_runtime_check.py against the installed torch).
inline constexpr std::string_view torch_pipelining_version = "2.15.0";

// One cell: "<stage><kind><microbatch>".
struct torch_action {
  std::uint32_t stage = 0;  // global stage index
  char kind = 'F';          // F, B, I or W
  std::uint32_t microbatch = 0;
  friend bool operator==(const torch_action&, const torch_action&) = default;
};

inline std::string to_string(const torch_action& a) {
  return std::to_string(a.stage) + a.kind + std::to_string(a.microbatch);
}

// A compute_only schedule: rows[r] = rank r's actions in order (nullopt: an idle step, which
// dip never writes but PyTorch's files may hold).
struct torch_schedule {
  std::vector<std::vector<std::optional<torch_action>>> rows;
  std::size_t stages = 0;        // num_stages: the chain's length
  std::size_t microbatches = 0;  // n_microbatches PyTorch must be given
};

// --- PyTorch's rules ---------------------------------------------------------------------------

// The first rule of PyTorch's _validate_schedule that `rows` breaks for a pipeline of
// `pp_group_size` ranks, `num_stages` stages and `num_microbatches` microbatches, or nothing:
// - one row per rank;
// - every stage index names a stage (PyTorch fails on a lookup otherwise), every action kind
//   is F, B, I or W, and (dip's addition) every microbatch index is < num_microbatches;
// - reading rows in rank order and each row in order, B and I of (stage, microbatch) come
//   after its F, and W after its I;
// - a stage's actions are all on one rank;
// - per stage: as many distinct F microbatches as num_microbatches, as many I as W, and
//   B + (I + W) / 2 == num_microbatches (distinct microbatches, as PyTorch counts sets).
inline std::optional<std::string> torch_schedule_violation(
    const std::vector<std::vector<std::optional<torch_action>>>& rows, std::size_t pp_group_size,
    std::size_t num_stages, std::size_t num_microbatches) {
  if (rows.size() != pp_group_size) {
    return "the schedule has " + std::to_string(rows.size()) + " rows (ranks), the pipeline " +
           std::to_string(pp_group_size);
  }
  // Distinct microbatches seen per stage and kind (F, B, I, W), and each stage's rank.
  static constexpr std::string_view kinds = "FBIW";
  std::vector<std::array<std::set<std::uint32_t>, 4>> seen(num_stages);
  std::vector<std::optional<std::size_t>> rank_of(num_stages);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (std::size_t step = 0; step < rows[r].size(); ++step) {
      if (!rows[r][step]) continue;
      const torch_action& a = *rows[r][step];
      const std::string at = "rank " + std::to_string(r) + " step " + std::to_string(step) + " (" + to_string(a) +
                             "): ";
      const std::size_t slot = kinds.find(a.kind);
      if (slot == std::string_view::npos) return at + "unknown action kind '" + std::string(1, a.kind) + "'";
      if (a.stage >= num_stages) {
        return at + "stage " + std::to_string(a.stage) + " does not exist (" + std::to_string(num_stages) + " stages)";
      }
      if (a.microbatch >= num_microbatches) {
        return at + "microbatch " + std::to_string(a.microbatch) + " does not exist (" +
               std::to_string(num_microbatches) + " microbatches)";
      }
      auto& stage = seen[a.stage];
      const auto done = [&](char kind) { return stage[kinds.find(kind)].count(a.microbatch) != 0; };
      if ((a.kind == 'B' || a.kind == 'I') && !done('F')) {
        return at + (a.kind == 'B' ? "full backward" : "backward input") + " of stage " + std::to_string(a.stage) +
               ", microbatch " + std::to_string(a.microbatch) + " runs without first running its forward";
      }
      if (a.kind == 'W' && !done('I')) {
        return at + "backward weight of stage " + std::to_string(a.stage) + ", microbatch " +
               std::to_string(a.microbatch) + " runs without first running its backward input";
      }
      stage[slot].insert(a.microbatch);
      if (rank_of[a.stage] && *rank_of[a.stage] != r) {
        return at + "stage " + std::to_string(a.stage) + " is on both rank " + std::to_string(r) + " and rank " +
               std::to_string(*rank_of[a.stage]);
      }
      rank_of[a.stage] = r;
    }
  }
  for (std::size_t s = 0; s < num_stages; ++s) {
    const std::size_t f = seen[s][0].size(), b = seen[s][1].size(), i = seen[s][2].size(), w = seen[s][3].size();
    const std::string at = "stage " + std::to_string(s) + ": ";
    if (f != num_microbatches) {
      return at + "runs F for " + std::to_string(f) + " microbatches, expected " + std::to_string(num_microbatches);
    }
    if (i != w)
      return at + "I and W must come in equal numbers, got I = " + std::to_string(i) + ", W = " + std::to_string(w);
    if (b + (i + w) / 2 != num_microbatches) {
      return at + "expected " + std::to_string(num_microbatches) + " backwards in all, got B = " + std::to_string(b) +
             ", I = " + std::to_string(i) + ", W = " + std::to_string(w);
    }
  }
  return std::nullopt;
}

// The first point where PyTorch's lowering (_add_send_recv) cannot place the sends and
// receives of a schedule that passed torch_schedule_violation, or nothing. The lowering walks
// the ranks round-robin and issues a rank's next action once its input is there: F of stage s
// > 0 needs F of s - 1 (on this rank, or received); B or I of stage s < last needs B or I of
// s + 1. A schedule where no rank can move deadlocks.
inline std::optional<std::string> torch_lowering_violation(
    const std::vector<std::vector<std::optional<torch_action>>>& rows, std::size_t num_stages) {
  // Per rank: the (stage, kind, microbatch) inputs it holds, computed or received.
  using key = std::tuple<std::uint32_t, char, std::uint32_t>;
  std::vector<std::set<key>> have(rows.size());
  std::map<std::uint32_t, std::size_t> rank_of;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (const auto& a : rows[r]) {
      if (a) rank_of.emplace(a->stage, r);
    }
  }
  const auto ready = [&](std::size_t r, const torch_action& a) {
    if (a.kind == 'F') return a.stage == 0 || have[r].count({a.stage - 1, 'F', a.microbatch}) != 0;
    if (a.kind == 'B' || a.kind == 'I') {
      return a.stage + 1 >= num_stages || have[r].count({a.stage + 1, 'B', a.microbatch}) != 0;
    }
    return true;
  };
  std::vector<std::size_t> next(rows.size(), 0);
  for (bool left = true; left;) {
    left = false;
    bool progress = false;
    for (std::size_t r = 0; r < rows.size(); ++r) {
      if (next[r] == rows[r].size()) continue;
      left = true;
      const std::optional<torch_action>& a = rows[r][next[r]];
      if (a && !ready(r, *a)) continue;
      if (a && a->kind != 'W') {
        // What F, B or I hands to the next stage (forward) or the previous one (backward): kept
        // on this rank and, through a message, on that stage's rank. Keyed as ready() looks for
        // it, 'B' for I too.
        const char sent = a->kind == 'F' ? 'F' : 'B';
        have[r].insert({a->stage, sent, a->microbatch});
        const bool sends = a->kind == 'F' ? a->stage + 1 < num_stages : a->stage > 0;
        if (sends) {
          const auto peer = rank_of.find(a->kind == 'F' ? a->stage + 1 : a->stage - 1);
          if (peer != rank_of.end()) have[peer->second].insert({a->stage, sent, a->microbatch});
        }
      }
      ++next[r];
      progress = true;
    }
    if (left && !progress) {
      std::string stuck;
      for (std::size_t r = 0; r < rows.size(); ++r) {
        if (next[r] < rows[r].size() && rows[r][next[r]]) {
          stuck += (stuck.empty() ? "" : ", ") + ("rank " + std::to_string(r) + " at " + to_string(*rows[r][next[r]]));
        }
      }
      return "the sends and receives cannot be placed: every rank waits on another (" + stuck + ")";
    }
  }
  return std::nullopt;
}

// Throws dip::error(errc::invalid_plan, "torch schedule", ...) for the first rule broken.
inline void validate(const torch_schedule& schedule, std::size_t pp_group_size) {
  std::optional<std::string> v =
      torch_schedule_violation(schedule.rows, pp_group_size, schedule.stages, schedule.microbatches);
  if (!v) v = torch_lowering_violation(schedule.rows, schedule.stages);
  if (v) throw error(errc::invalid_plan, "torch schedule", std::move(*v));
}

// --- from a dip plan ---------------------------------------------------------------------------

namespace detail {
inline bool nearly_equal(double a, double b) {
  return std::abs(a - b) <= 1e-9 * std::max({1.0, std::abs(a), std::abs(b)});
}
}  // namespace detail

// The compute_only schedule of `p`: rank r's computes in order, each stage as
// (its chunk's position in the chain, its kind, microbatch j * S + sub) where S is the number
// of sub-microbatches per microbatch. Throws dip::error(errc::invalid_argument, "torch
// schedule", why) for a plan the format cannot express (see the top of this file), and
// errc::invalid_plan if the result breaks PyTorch's rules (a plan dip::validate rejects).
inline torch_schedule to_torch_schedule(const plan& p) {
  const std::string where = "torch schedule";
  require(p.graph != nullptr, errc::invalid_argument, where, "the plan has no stage graph");
  const stage_graph& graph = *p.graph;
  const placement& place = graph.placement();
  require(place.chains.size() == 1, errc::invalid_argument, where,
          "the plan's placement has " + std::to_string(place.chains.size()) +
              " chains (one per module group, as DIP places a multimodal model); torch.distributed.pipelining "
              "runs one sequence of stages, so only single-chain placements (gpipe, 1f1b, interleaved, zb1p, "
              "zbv, dualpipev, or dip on a one-module model) can be exported");
  const std::uint32_t subs = graph.sub_count(0, 0);
  for (std::size_t j = 0; j < graph.microbatch_count(); ++j) {
    require(graph.sub_count(j, 0) == subs, errc::invalid_argument, where,
            "microbatch " + std::to_string(j) + " has " + std::to_string(graph.sub_count(j, 0)) +
                " sub-microbatches, microbatch 0 has " + std::to_string(subs) +
                "; torch splits a batch into equal microbatches, so every microbatch must be split alike");
  }
  // Every stage must cost what the same pass of the same chunk costs in microbatch 0, sub 0.
  for (std::size_t i = 0; i < graph.size(); ++i) {
    const stage& s = graph.stages()[i];
    const stage_id reference = graph.find(s.kind, s.chunk, 0, 0);
    const stage& first = graph.at(reference);
    const bool same = detail::nearly_equal(s.time.base(), first.time.base()) &&
                      detail::nearly_equal(s.memory_delta.base(), first.memory_delta.base()) &&
                      detail::nearly_equal(s.output.base(), first.output.base());
    require(same, errc::invalid_argument, where,
            "the microbatches have different shapes: " + describe(graph, stage_id::from_index(i)) + " costs " +
                to_string(s.time) + " and outputs " + to_string(s.output) + ", " + describe(graph, reference) +
                " costs " + to_string(first.time) + " and outputs " + to_string(first.output) +
                "; torch splits a batch into equal microbatches (export plans of uniform data)");
  }
  torch_schedule result;
  result.stages = place.chains[0].size();
  result.microbatches = graph.microbatch_count() * subs;
  result.rows.resize(p.ranks.size());
  for (std::size_t r = 0; r < p.ranks.size(); ++r) {
    for (std::size_t i = 0; i < p.ranks[r].size(); ++i) {
      const action& a = p.ranks[r][i];
      if (a.kind != action_kind::compute) continue;
      require(a.stage.index() < graph.size(), errc::invalid_plan, where,
              "rank " + std::to_string(r) + " action " + std::to_string(i) + " computes a stage that does not exist");
      const stage& s = graph.at(a.stage);
      require(a.strategy == memory_strategy::keep, errc::invalid_argument, where,
              "rank " + std::to_string(r) + " runs " + describe(graph, a.stage) + " with memory strategy " +
                  std::string(to_string(a.strategy)) +
                  "; the compute_only format has no memory strategies (plan with fit-memory off, or use "
                  "activation checkpointing inside the torch stage module)");
      result.rows[r].push_back(torch_action{std::uint32_t(place.chunk(s.chunk).position), to_char(s.kind),
                                            std::uint32_t(s.microbatch.index() * subs + s.sub)});
    }
  }
  validate(result, p.ranks.size());
  return result;
}

// --- the file ----------------------------------------------------------------------------------

// One line per rank, cells separated by commas, as Python's csv module reads them.
inline std::string to_torch_csv(const torch_schedule& schedule) {
  std::string text;
  for (const auto& row : schedule.rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (i > 0) text += ',';
      if (row[i]) text += to_string(*row[i]);
    }
    text += '\n';
  }
  return text;
}

// Parses compute_only CSV text: one row per line, cells "<stage><F|B|I|W><microbatch>" or empty
// (idle). Stricter than PyTorch's parser, which ignores text after a match: anything else in a
// cell, and communication actions (SEND_F, RECV_B, ... which compute_only files may not hold),
// are a dip::error(errc::parse_error) naming the source, line and cell. `stages` and
// `microbatches` of the result are left 0: the caller knows them.
inline std::vector<std::vector<std::optional<torch_action>>> parse_torch_csv(std::string_view text,
                                                                             std::string_view source) {
  std::vector<std::vector<std::optional<torch_action>>> rows;
  std::size_t line_start = 0, line = 1;
  while (line_start < text.size()) {
    std::size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view row = text.substr(line_start, line_end - line_start);
    if (!row.empty() && row.back() == '\r') row.remove_suffix(1);
    auto& out = rows.emplace_back();
    std::size_t cell_start = 0;
    for (std::size_t cell = 1; !row.empty(); ++cell) {
      const std::size_t comma = row.find(',', cell_start);
      std::string_view text_cell =
          row.substr(cell_start, comma == std::string_view::npos ? std::string_view::npos : comma - cell_start);
      while (!text_cell.empty() && (text_cell.front() == ' ' || text_cell.front() == '\t')) text_cell.remove_prefix(1);
      while (!text_cell.empty() && (text_cell.back() == ' ' || text_cell.back() == '\t')) text_cell.remove_suffix(1);
      const std::string where = std::string(source) + ": line " + std::to_string(line) + ", cell " +
                                std::to_string(cell);
      if (text_cell.empty()) {
        out.emplace_back();
      } else {
        std::size_t k = 0;
        const auto number = [&]() {
          const std::size_t begin = k;
          std::uint64_t value = 0;
          while (k < text_cell.size() && text_cell[k] >= '0' && text_cell[k] <= '9' && k - begin < 9) {
            value = value * 10 + std::uint64_t(text_cell[k++] - '0');
          }
          return k == begin ? std::optional<std::uint32_t>() : std::optional<std::uint32_t>(std::uint32_t(value));
        };
        const std::optional<std::uint32_t> stage = number();
        const char kind = k < text_cell.size() ? text_cell[k++] : '\0';
        const std::optional<std::uint32_t> microbatch = number();
        const bool compute_kind = kind == 'F' || kind == 'B' || kind == 'I' || kind == 'W';
        if (!stage || !compute_kind || !microbatch || k != text_cell.size()) {
          throw error(errc::parse_error, where,
                      "expected a compute action <stage><F|B|I|W><microbatch> such as 2F0, got '" +
                          std::string(text_cell) + "' (compute_only schedules hold no communication or FSDP actions)");
        }
        out.push_back(torch_action{*stage, kind, *microbatch});
      }
      if (comma == std::string_view::npos) break;
      cell_start = comma + 1;
    }
    line_start = line_end + 1;
    ++line;
  }
  return rows;
}

// Writes the schedule as CSV; throws dip::error(errc::not_found) if the file cannot be written.
inline void write_torch_csv(const std::filesystem::path& path, const torch_schedule& schedule) {
  std::ofstream out(path);
  require(bool(out), errc::not_found, path.string(), "cannot write the torch schedule");
  out << to_torch_csv(schedule);
  require(bool(out), errc::not_found, path.string(), "writing the torch schedule failed");
}

}  // namespace dip
