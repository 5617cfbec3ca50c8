// dip::exec::run_sequential: the executor's ground truth. One thread, no placement, no plan:
// every microbatch forward through every module in topological order, each unit (sub-microbatch
// of the executable batch) in turn, the loss, then backward in reverse order, with the data rule
// of exec/data.hpp. Any plan run by execute() on the same batch must give bit-identical
// gradients and loss.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "dip/exec/data.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/unit_pass.hpp"
#include "dip/io/executable_batch.hpp"
#include "dip/model/model.hpp"

namespace dip::exec {

inline step_result run_sequential(const multimodal_model& model, const exported_batch& batch) {
  const executable_model exec(model);
  gradient_store store;
  std::map<std::tuple<std::size_t, std::uint32_t, std::uint32_t>, double> losses;
  const auto order = model.topological_order();
  for (std::size_t j = 0; j < batch.microbatches.size(); ++j) {
    const exported_microbatch& mb = batch.microbatches[j];
    const std::string where = "run_sequential microbatch " + std::to_string(j);
    require(mb.subs.size() == model.module_count(), errc::invalid_argument, "run_sequential",
            "microbatch " + std::to_string(j) + " does not give every module its sub-microbatches");
    struct record {
      unit_info info;
      tensor c;  // context rows, needed backward
      std::vector<layer_tape> tapes;
      tensor loss_gradient;
    };
    std::map<unit_key, record> records;
    std::map<std::size_t, item_rows_of> outputs;  // per module: all its items' rows, in item order
    const auto all_items = [&](std::size_t m) {
      std::vector<std::size_t> items;
      for (const exported_sub& s : mb.subs[m]) items.insert(items.end(), s.items.begin(), s.items.end());
      std::sort(items.begin(), items.end());
      return items;
    };
    for (module_id id : order) {
      const std::size_t m = id.index();
      item_rows_of& out = outputs[m];
      out.items = all_items(m);
      out.rows = tensor::Zero(item_rows(mb, exec.module(m), out.items), exec.output_width(id));
      for (std::size_t u = 0; u < mb.subs[m].size(); ++u) {
        const unit_key key{std::uint32_t(m), std::uint32_t(u)};
        record r;
        r.info = make_unit_info(exec, batch, j, key);
        unit_state state;
        const auto producer_rows = [&](const std::vector<std::size_t>& items) {
          const std::size_t p = *exec.producer(m);
          const item_rows_of& held = outputs.at(p);
          return gather_rows(held.rows, select_items(mb, exec.module(p), held.items, items, where));
        };
        if (exec.start(m) == module_start::continuation) {
          state.x = reshape_rows(producer_rows(r.info.items), exec.input_width(m));
        } else {
          state.x = synthetic_input(exec, batch, j, key);
        }
        if (exec.start(m) == module_start::injection && !r.info.inject_items.empty()) {
          state.inject = producer_rows(r.info.inject_items);
        }
        if (exec.context_width(m) > 0) state.c = producer_rows(r.info.context_items);
        r.c = state.c;
        forward_layers(exec, mb, key, 0, exec.layer_count(m), state, r.info, &r.tapes);
        if (exec.is_sink(m)) {
          unit_loss loss = compute_loss(exec, batch, j, key, state.x);
          losses[{j, key.module, key.unit}] = loss.value;
          r.loss_gradient = std::move(loss.gradient);
        }
        out.rows =
            place_rows(std::move(out.rows), select_items(mb, exec.module(m), out.items, r.info.items, where), state.x);
        records.emplace(key, std::move(r));
      }
    }
    std::map<std::size_t, tensor> output_gradients;  // per module, over all its items (outputs[m].items)
    const auto add_gradient = [&](std::size_t p, const std::vector<std::size_t>& items, const tensor& part) {
      const item_rows_of& held = outputs.at(p);
      auto it = output_gradients.try_emplace(p, tensor::Zero(held.rows.rows(), held.rows.cols())).first;
      it->second =
          scatter_add_rows(std::move(it->second), select_items(mb, exec.module(p), held.items, items, where), part);
    };
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      const std::size_t m = it->index();
      for (std::size_t u = 0; u < mb.subs[m].size(); ++u) {
        const unit_key key{std::uint32_t(m), std::uint32_t(u)};
        record& r = records.at(key);
        const item_rows_of& held = outputs.at(m);
        tensor dy;
        if (exec.is_sink(m)) {
          dy = r.loss_gradient;
        } else if (auto g = output_gradients.find(m); g != output_gradients.end()) {
          dy = gather_rows(g->second, select_items(mb, exec.module(m), held.items, r.info.items, where));
        } else {
          dy = tensor::Zero(r.info.rows, held.rows.cols());
        }
        tensor dc = exec.context_width(m) > 0 ? tensor::Zero(r.c.rows(), r.c.cols()).eval() : tensor();
        tensor d_inject;
        std::vector<std::vector<weight_job>> jobs;
        const tensor dx = backward_layers(exec, mb, key, 0, exec.layer_count(m), r.tapes, r.c, std::move(dy), dc,
                                          d_inject, r.info, jobs);
        for (std::size_t i = 0; i < jobs.size(); ++i) {
          store.add(m, i, j, key.unit, backward_weight(exec.at(m, i), jobs[i]));
        }
        if (const auto p = exec.producer(m)) {
          if (exec.start(m) == module_start::continuation) {
            add_gradient(*p, r.info.items, reshape_rows(dx, exec.output_width(module_id::from_index(*p))));
          } else if (exec.start(m) == module_start::injection && !r.info.inject_items.empty()) {
            add_gradient(*p, r.info.inject_items, d_inject);
          }
          if (exec.context_width(m) > 0) add_gradient(*p, r.info.context_items, dc);
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
