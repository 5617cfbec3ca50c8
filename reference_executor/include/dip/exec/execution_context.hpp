// dip::exec::execution_context: what every rank of one execution shares, read-only, built once
// per execute(): the plan, the executable model, the executable batch (the items and rows of
// every sub-microbatch as the schedule runs it), the tensors of every edge, the chain layout and,
// per (sender, receiver), the edges in the sender's action order. The constructor checks that
// the batch is one the plan's graph runs, that the edge tensors are the plan's (a plan file's
// against those derived from its batch), and that every receive has a matching send, so a plan
// that could only hang fails before any thread starts.
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
#include "dip/io/executable_batch.hpp"
#include "dip/schedule/plan.hpp"

namespace dip::exec {

// Everything ranks share, read-only, built once per execute().
struct execution_context {
  std::shared_ptr<const plan> schedule;
  std::shared_ptr<const executable_model> model;
  exported_batch batch;
  std::vector<std::vector<message_tensor>> tensors;  // by edge
  chain_layout layout;
  // send_order[from][to]: the edges `from` sends to `to`, in its action order.
  std::vector<std::vector<std::vector<std::uint32_t>>> send_order;

  // `edge_tensors_of_plan`: the plan file's tensors (checked against the batch's), or empty.
  execution_context(std::shared_ptr<const plan> p, std::shared_ptr<const executable_model> exec_model, exported_batch b,
                    const std::vector<std::vector<message_tensor>>& edge_tensors_of_plan = {})
      : schedule(std::move(p)), model(std::move(exec_model)), batch(std::move(b)), layout(*model, graph().placement()) {
    const stage_graph& g = graph();
    require(batch.microbatches.size() == g.microbatch_count(), errc::invalid_argument, "execute",
            "the batch has " + std::to_string(batch.microbatches.size()) + " microbatches, the plan's graph " +
                std::to_string(g.microbatch_count()));
    const std::size_t modules = model->model().module_count();
    for (std::size_t j = 0; j < batch.microbatches.size(); ++j) {
      const exported_microbatch& mb = batch.microbatches[j];
      require(mb.subs.size() == modules, errc::invalid_argument, "execute",
              "microbatch " + std::to_string(j) + " does not give every module its sub-microbatches");
      for (std::size_t m = 0; m < modules; ++m) {
        const std::size_t runs = g.sub_count(j, layout.chain_of(m));
        require(mb.subs[m].size() == runs, errc::invalid_argument, "execute",
                "microbatch " + std::to_string(j) + " module '" + model->module(m).name + "' has " +
                    std::to_string(mb.subs[m].size()) + " sub-microbatches, the plan's graph runs " +
                    std::to_string(runs) + " (the batch is not the one the graph was built from)");
        for (const exported_sub& s : mb.subs[m]) {
          require(item_rows(mb, model->module(m), s.items) == s.rows, errc::invalid_argument, "execute",
                  "microbatch " + std::to_string(j) + " module '" + model->module(m).name +
                      "': a sub-microbatch's rows are not its items'");
        }
      }
    }
    tensors = edge_tensors(g, model->exported(), batch);
    if (!edge_tensors_of_plan.empty()) {
      require(edge_tensors_of_plan.size() == tensors.size(), errc::invalid_plan, "execute",
              "the plan lists tensors for " + std::to_string(edge_tensors_of_plan.size()) + " edges, its graph has " +
                  std::to_string(tensors.size()));
      for (std::size_t e = 0; e < tensors.size(); ++e) {
        require(edge_tensors_of_plan[e] == tensors[e], errc::invalid_plan, "execute",
                "edge " + std::to_string(e) + " (" + describe(g, g.edges()[e].from) + " -> " +
                    describe(g, g.edges()[e].to) + "): the plan's tensors are not those its batch gives");
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
