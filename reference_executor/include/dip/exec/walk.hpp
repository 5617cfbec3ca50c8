// dip::exec::run_rank: one rank's walk over its actions, taken from dip::rank_actions in order,
// with a stage_runner (stage_runner.hpp) for the compute actions and a transport_like for the rest.
// - send: packs the edge's tensors and hands them to the transport (non-blocking); the receiver
//   expects the shapes the plan gives the edge.
// - recv: NCCL matches messages of a (sender, receiver) pair in posting order, but a plan's
//   receiver may want them in another order; so a rank receives from a peer in the *sender's*
//   order (from the plan) and stashes messages it does not need yet.
// Consecutive communication actions form one transport group; what a group received is unpacked
// when it ends.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/bundle.hpp"
#include "dip/exec/compute_backend.hpp"
#include "dip/exec/execution_context.hpp"
#include "dip/exec/rank_report.hpp"
#include "dip/exec/stage_runner.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/exec/transport.hpp"
#include "dip/schedule/action_stream.hpp"
#include "dip/schedule/plan.hpp"

namespace dip::exec {

struct execute_options {
  std::chrono::milliseconds timeout = std::chrono::seconds(10);  // longest a receive may wait
  // Called before every action of every rank (from that rank's thread); a test hook to make a
  // rank fail. Empty: nothing.
  std::function<void(rank_id, const action&)> before_action;
};

// Runs rank `rank`'s actions with `runner` (its compute backend) on `transport`; the report's
// gradients, losses and peaks are the rank's own. Throws dip::error for a plan the data cannot
// follow, whatever the transport or the backend throws.
template <compute_backend_like Compute, transport_like<typename Compute::pack_type> Transport>
rank_report run_rank(const execution_context& ctx, rank_id rank, stage_runner<Compute>& runner, Transport& transport,
                     const execute_options& options = {}) {
  using payload_type = typename stage_runner<Compute>::payload;
  using pack_type = typename Compute::pack_type;
  const auto start = std::chrono::steady_clock::now();
  const stage_graph& g = ctx.graph();
  const std::size_t me = rank.index();
  std::map<std::uint32_t, payload_type> edges;                       // data of edges this rank produced or received
  std::map<std::uint32_t, pack_type> stash;                          // received ahead of the plan's order
  std::vector<std::pair<std::uint32_t, std::string>> arrived;        // received in the open group, unpacked at its end
  std::vector<std::size_t> received(ctx.schedule->ranks.size(), 0);  // per peer: messages taken
  const auto end_group = [&] {
    transport.group_end();
    for (const auto& [e, name] : arrived) {
      auto node = stash.extract(e);
      edges[e] = runner.backend().unpack(std::move(node.mapped()), name);
    }
    arrived.clear();
  };
  bool in_group = false;
  for (const action& a : rank_actions(ctx.schedule, rank)) {
    if (options.before_action) options.before_action(rank, a);
    const bool communication = a.kind != action_kind::compute;
    if (communication && !in_group) transport.group_start();
    if (!communication && in_group) end_group();
    in_group = communication;
    const std::string name = "rank " + std::to_string(rank.value()) + " '" + describe(g, a) + "'";
    switch (a.kind) {
      case action_kind::compute: runner.compute(a, edges); break;
      case action_kind::send: {
        auto it = edges.find(a.edge);
        require(it != edges.end(), errc::invalid_plan, name, "sends data its rank has not computed");
        transport.send(int(a.peer.index()), a.edge, runner.backend().pack(it->second));
        edges.erase(it);
        break;
      }
      case action_kind::recv: {
        // The pack may be filled only when the group ends (NCCL): it is unpacked then.
        const std::size_t peer = a.peer.index();
        while (!stash.contains(a.edge)) {
          const auto& order = ctx.send_order[peer][me];
          require(received[peer] < order.size(), errc::invalid_plan, name, "the peer sends nothing more");
          const std::uint32_t tag = order[received[peer]++];
          stash.emplace(tag, transport.recv(int(peer), tag, shapes_of(ctx.tensors[tag])));
        }
        arrived.emplace_back(a.edge, name);
        break;
      }
    }
  }
  if (in_group) end_group();
  runner.backend().finish();
  rank_report report = std::move(runner.report());
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace dip::exec
