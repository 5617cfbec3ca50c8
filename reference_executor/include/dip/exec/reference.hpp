// dip::exec::run_sequential: the executor's ground truth. One thread, no placement, no plan:
// every microbatch forward through every module in topological order, the loss, then backward
// in reverse order, with the data rule of exec/data.hpp. Any plan run by execute() must give
// bit-identical gradients and loss.
#pragma once

#include <cstddef>
#include <map>
#include <tuple>
#include <vector>

#include "dip/exec/data.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/unit_pass.hpp"
#include "dip/model/model.hpp"
#include "dip/schedule/stage_graph.hpp"

namespace dip::exec {

inline step_result run_sequential(const multimodal_model& model, const batch_work& batch) {
  const executable_model exec(model);
  gradient_store store;
  std::map<std::tuple<std::size_t, std::uint32_t, std::uint32_t>, double> losses;
  for (std::size_t j = 0; j < batch.microbatches.size(); ++j) {
    const microbatch_work& mb = batch.microbatches[j];
    require(mb.modules.size() == model.module_count(), errc::invalid_argument, "run_sequential",
            "microbatch " + std::to_string(j) + " does not give every module its work");
    struct record {
      unit_state start;  // c is needed backward
      std::vector<layer_tape> tapes;
      tensor output, loss_gradient;
    };
    std::map<unit_key, record> records;
    for (module_id m : model.topological_order()) {
      for (std::size_t u = 0; u < mb.modules[m.index()].size(); ++u) {
        const unit_key key{std::uint32_t(m.index()), std::uint32_t(u)};
        const auto output_of = [&](unit_key k) -> const tensor* {
          auto it = records.find(k);
          return it == records.end() ? nullptr : &it->second.output;
        };
        record r;
        unit_state state = start_unit(exec, mb, j, key, output_of, "run_sequential microbatch " + std::to_string(j));
        r.start.c = state.c;
        forward_layers(exec, key, 0, exec.layer_count(key.module), state, unit_sequences(mb.modules[key.module][u]),
                       &r.tapes);
        r.output = std::move(state.x);
        if (exec.is_sink(key.module)) {
          unit_loss loss = compute_loss(exec, j, key, r.output);
          losses[{j, key.module, key.unit}] = loss.value;
          r.loss_gradient = std::move(loss.gradient);
        }
        records.emplace(key, std::move(r));
      }
    }
    std::map<unit_key, std::map<unit_key, tensor>> contributions;  // producer unit -> consumer unit -> dc / N
    const auto order = model.topological_order();
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      for (std::size_t u = 0; u < mb.modules[it->index()].size(); ++u) {
        const unit_key key{std::uint32_t(it->index()), std::uint32_t(u)};
        record& r = records.at(key);
        tensor dy = exec.is_sink(key.module)
                        ? r.loss_gradient
                        : output_gradient_from_context(contributions[key], r.output.rows(), r.output.cols());
        tensor dc = zero_context_gradient(r.start.c);
        std::vector<std::vector<weight_job>> jobs;
        backward_layers(exec, key, 0, exec.layer_count(key.module), r.tapes, r.start.c, std::move(dy), dc, jobs);
        for (std::size_t i = 0; i < jobs.size(); ++i) {
          store.add(key.module, i, j, key.unit, backward_weight(exec.at(key.module, i), jobs[i]));
        }
        if (dc.size() > 0) {
          const tensor share = dc / double(context_rows(exec, mb, key));
          for (unit_key s : context_sources(exec, mb, key)) contributions[s][key] = share;
        }
      }
    }
  }
  step_result result;
  result.gradients = store.reduce();
  result.loss = total_loss(losses);
  return result;
}

}  // namespace dip::exec
