// Chrome trace export of a simulated plan: open the file in Perfetto (ui.perfetto.dev) or
// chrome://tracing. One track per rank for compute (F, B, I, W in different colours) and one
// per rank for its outgoing transfers, so bubbles and exposed communication are visible.
#pragma once

#include <ostream>
#include <string>

#include <nlohmann/json.hpp>

#include "dip/schedule/plan.hpp"
#include "dip/sim/simulator.hpp"

namespace dip {

// Appends the events of one simulated plan as process `pid` named `process` to `events` (a
// JSON array), so several schedules can share one trace file side by side. `result` must come
// from simulate(p, {.record_timeline = true}); one without a timeline is a dip::error.
inline void append_chrome_trace(nlohmann::json& events, const plan& p, const simulation_result& result, int pid,
                                const std::string& process) {
  require(!result.timeline.empty() || p.action_count() == 0, errc::invalid_argument, "chrome_trace",
          "the simulation has no timeline; simulate with record_timeline = true");
  const stage_graph& graph = *p.graph;
  events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", pid}, {"args", {{"name", process}}}});
  const int ranks = graph.ranks();
  for (int r = 0; r < ranks; ++r) {
    events.push_back({{"name", "thread_name"},
                      {"ph", "M"},
                      {"pid", pid},
                      {"tid", 2 * r},
                      {"args", {{"name", "rank " + std::to_string(r)}}}});
    events.push_back({{"name", "thread_name"},
                      {"ph", "M"},
                      {"pid", pid},
                      {"tid", 2 * r + 1},
                      {"args", {{"name", "rank " + std::to_string(r) + " sends"}}}});
  }
  for (const timed_action& t : result.timeline) {
    const action& a = p.ranks[t.rank.index()][t.index];
    if (a.kind == action_kind::recv) continue;  // a receive is the wait before its compute
    const bool compute = a.kind == action_kind::compute;
    const char kind = to_char(graph.at(a.stage).kind);
    const char* colour = !compute      ? "grey"
                         : kind == 'F' ? "thread_state_running"
                         : kind == 'W' ? "rail_idle"
                                       : "rail_response";
    events.push_back({{"name", describe(graph, a)},
                      {"cat", compute ? std::string(1, kind) : std::string("send")},
                      {"ph", "X"},
                      {"pid", pid},
                      {"tid", 2 * int(t.rank.index()) + (compute ? 0 : 1)},
                      {"ts", to_microseconds(t.start)},
                      {"dur", to_microseconds(t.end - t.start)},
                      {"cname", colour}});
  }
}

// A whole trace file holding one plan.
inline nlohmann::json chrome_trace(const plan& p, const simulation_result& result) {
  nlohmann::json events = nlohmann::json::array();
  append_chrome_trace(events, p, result, 0, "plan");
  return {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
}

}  // namespace dip
