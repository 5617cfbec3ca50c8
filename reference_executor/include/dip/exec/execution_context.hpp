// dip::exec::execution_context: what every rank of one execution shares, read-only, built once
// per execute(): the plan, the executable model, the batch, the chain layout and, per (sender,
// receiver), the edges in the sender's action order. The constructor checks that the batch is the
// one the plan's graph was built from and that every receive has a matching send, so a plan that
// could only hang fails before any thread starts.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/chain_layout.hpp"
#include "dip/exec/data.hpp"
#include "dip/schedule/plan.hpp"

namespace dip::exec {

// Everything ranks share, read-only, built once per execute().
struct execution_context {
  std::shared_ptr<const plan> schedule;
  std::shared_ptr<const executable_model> model;
  batch_work batch;
  chain_layout layout;
  // send_order[from][to]: the edges `from` sends to `to`, in its action order.
  std::vector<std::vector<std::vector<std::uint32_t>>> send_order;

  execution_context(std::shared_ptr<const plan> p, std::shared_ptr<const executable_model> m, batch_work b)
      : schedule(std::move(p)), model(std::move(m)), batch(std::move(b)), layout(*model, graph().placement()) {
    const stage_graph& g = graph();
    require(batch.microbatches.size() == g.microbatch_count(), errc::invalid_argument, "execute",
            "the batch has " + std::to_string(batch.microbatches.size()) + " microbatches, the plan's graph " +
                std::to_string(g.microbatch_count()));
    for (std::size_t j = 0; j < batch.microbatches.size(); ++j) {
      require(batch.microbatches[j].modules.size() == model->model().module_count(), errc::invalid_argument, "execute",
              "microbatch " + std::to_string(j) + " does not give every module its work");
      for (std::size_t k = 0; k < g.placement().chains.size(); ++k) {
        if (g.sub_count(j, k) == 1) continue;
        for (const layer_span& s : g.placement().chunk(g.placement().chains[k][0]).spans) {
          require(batch.microbatches[j].modules[s.module.index()].size() == g.sub_count(j, k), errc::invalid_argument,
                  "execute",
                  "the batch is not the one the plan's graph was built from (microbatch " + std::to_string(j) + ")");
        }
      }
    }
    const std::size_t ranks = schedule->ranks.size();
    send_order.assign(ranks, std::vector<std::vector<std::uint32_t>>(ranks));
    for (std::size_t r = 0; r < ranks; ++r) {
      for (const action& a : schedule->ranks[r]) {
        if (a.kind == action_kind::send) send_order[r].at(a.peer.index()).push_back(a.edge);
      }
    }
    // A receive with no matching send can never complete: say so before any thread starts.
    for (std::size_t r = 0; r < ranks; ++r) {
      for (const action& a : schedule->ranks[r]) {
        if (a.kind != action_kind::recv) continue;
        const auto& sent = send_order.at(a.peer.index())[r];
        require(std::find(sent.begin(), sent.end(), a.edge) != sent.end(), errc::invalid_plan,
                "rank " + std::to_string(r),
                "receives '" + describe(g, a) + "' but rank " + std::to_string(a.peer.value()) +
                    " never sends it to rank " + std::to_string(r));
      }
    }
  }

  const stage_graph& graph() const { return *schedule->graph; }
};

}  // namespace dip::exec
