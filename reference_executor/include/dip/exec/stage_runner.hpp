// dip::exec::stage_runner<Compute>: one rank's compute actions on any compute_backend_like
// backend, and the activations they keep: saved forwards, memory strategies, weight jobs, peaks.
// The walk (walk.hpp) hands it each compute action with the rank's edge data; every message is
// the list of tensors the plan gives its edge (bundle.hpp), checked against it when made and
// when read.
// - F: runs its chunk's spans on the stage's sub-microbatch (one unit per module, exec/data.hpp):
//   a module's first span starts it from its producers' outputs (of this chain, or gathered item
//   by item from the producer chain's sub-microbatches); it keeps what the backward needs as the
//   action's memory strategy says: keep: the layer tapes; recompute: only the chunk's inputs
//   (B/I re-runs the forward); offload: the tapes, moved to a separate host store until B/I.
//   A sink module's loss is computed here.
// - B or I: the gradients of the chunk's inputs from those of its outputs; a module's first span
//   adds the gradient of the producer rows it read to that producer's output gradient, which
//   travels back like the output did. I leaves weight jobs for W, B runs them at once. W: the
//   weight gradients, kept per (microbatch, unit).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/bundle.hpp"
#include "dip/exec/chain_layout.hpp"
#include "dip/exec/compute_backend.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/execution_context.hpp"
#include "dip/exec/rank_report.hpp"
#include "dip/exec/unit_pass.hpp"
#include "dip/schedule/plan.hpp"

namespace dip::exec {

// One rank's stage computations and the activations they keep, on compute backend `Compute`.
template <compute_backend_like Compute>
class stage_runner {
 public:
  using tensor_type = typename Compute::tensor_type;
  using payload = basic_payload<tensor_type>;
  using pack_type = typename Compute::pack_type;

  stage_runner(const execution_context& ctx, rank_id rank, Compute compute)
      : ctx_(&ctx), rank_(rank), compute_(std::move(compute)) {}

  Compute& backend() noexcept { return compute_; }

  // Runs compute action `a`, taking its inputs from `edges` and putting its outputs there.
  void compute(const action& a, std::map<std::uint32_t, payload>& edges) {
    const stage& s = graph().at(a.stage);
    switch (s.kind) {
      case stage_kind::forward: forward(a, edges); break;
      case stage_kind::backward:
      case stage_kind::backward_input: backward_input(a, edges, s.kind == stage_kind::backward); break;
      case stage_kind::backward_weight: backward_weight(a, edges); break;
    }
  }

  rank_report& report() noexcept { return report_; }
  std::size_t live_bytes() const noexcept { return live_; }

 private:
  using T = tensor_type;
  using state_type = basic_unit_state<T>;
  using rows_type = basic_item_rows<T>;
  using tape_type = typename Compute::tape_type;
  using job_type = typename Compute::job_type;

  struct unit_record {
    std::size_t first = 0, last = 0;  // layers run in this chunk
    unit_info info;
    T c;
    std::vector<tape_type> tapes;
    T loss_gradient;  // sink units whose module ends here
  };
  std::size_t bytes_of(const unit_record& r) const {
    std::size_t total = byte_size(r.c) + byte_size(r.loss_gradient);
    for (const tape_type& t : r.tapes) total += compute_.tape_bytes(t);
    return total;
  }
  // The chunk's data between its spans: module states and finished outputs.
  struct chunk_data {
    std::map<std::size_t, state_type> states;
    std::map<std::size_t, rows_type> outputs;
  };
  struct saved_forward {
    memory_strategy strategy = memory_strategy::keep;
    std::map<std::size_t, unit_record> units;                      // by module
    std::map<std::size_t, std::vector<std::size_t>> output_items;  // outputs the chunk held: their items
    std::map<std::uint32_t, payload> input;                        // recompute only: the in-edges' tensors
    std::size_t bytes = 0;
  };
  using pending_jobs = std::map<std::pair<unit_key, std::size_t>, std::vector<job_type>>;  // (unit, layer)

  const stage_graph& graph() const { return ctx_->graph(); }
  const executable_model& model() const { return *ctx_->model; }
  std::string where(stage_id id) const {
    return "rank " + std::to_string(rank_.value()) + " stage " + describe(graph(), id);
  }
  void grow(std::size_t bytes) {
    live_ += bytes;
    report_.peak_activation_bytes = std::max(report_.peak_activation_bytes, live_);
  }
  void shrink(std::size_t bytes) { live_ -= std::min(live_, bytes); }

  payload take(std::map<std::uint32_t, payload>& edges, std::uint32_t e, stage_id id) {
    auto it = edges.find(e);
    require(it != edges.end(), errc::invalid_plan, where(id),
            "runs before its input from " + describe(graph(), graph().edges()[e].from) + " is there");
    payload p = std::move(it->second);
    edges.erase(it);
    std::vector<tensor_shape> shapes;
    for (const T& t : p) shapes.push_back(compute_.shape(t));
    check_message(shapes, ctx_->tensors[e], where(id) + " reading edge " + std::to_string(e));
    return p;
  }

  std::size_t chain_of_stage(stage_id id) const { return graph().placement().chunk(graph().at(id).chunk).chain; }
  const exported_microbatch& microbatch(std::size_t j) const { return ctx_->batch.microbatches.at(j); }

  // The ranges of `wanted` items of module m inside rows held for `held`.
  std::vector<row_range> ranges_of(std::size_t j, std::size_t m, const std::vector<std::size_t>& held,
                                   const std::vector<std::size_t>& wanted, const std::string& at) const {
    return select_items(microbatch(j), model().module(m), held, wanted, at);
  }

  // Pieces of a producer's output from several sub-microbatches, in item order.
  rows_type merge(std::size_t j, std::size_t m, std::vector<rows_type> pieces, const std::string& at) {
    if (pieces.size() == 1) return std::move(pieces.front());
    rows_type out;
    for (const rows_type& p : pieces) out.items.insert(out.items.end(), p.items.begin(), p.items.end());
    std::sort(out.items.begin(), out.items.end());
    require(std::adjacent_find(out.items.begin(), out.items.end()) == out.items.end(), errc::invalid_plan, at,
            "receives an item of module '" + model().module(m).name + "' twice");
    out.rows = compute_.zeros(item_rows(microbatch(j), model().module(m), out.items),
                              model().output_width(module_id::from_index(m)));
    for (const rows_type& p : pieces)
      out.rows = compute_.place(std::move(out.rows), ranges_of(j, m, out.items, p.items, at), p.rows);
    return out;
  }

  // A module's first layer's input, from its producers' outputs in `data`.
  state_type start(std::size_t j, unit_key key, const unit_info& info, const chunk_data& data, const std::string& at) {
    state_type state;
    const std::size_t m = key.module;
    const module_start how = model().start(m);
    const auto producer_rows = [&]() -> const rows_type& {
      const std::size_t p = *model().producer(m);
      auto it = data.outputs.find(p);
      require(it != data.outputs.end(), errc::invalid_plan, at,
              "module '" + model().module(m).name + "' starts without the output of its producer '" +
                  model().module(p).name + "'");
      return it->second;
    };
    if (how == module_start::continuation) {
      const rows_type& p = producer_rows();
      state.x = compute_.reshape(compute_.gather(p.rows, ranges_of(j, *model().producer(m), p.items, info.items, at)),
                                 model().input_width(m));
    } else {
      state.x = compute_.synthetic(j, key);
    }
    if (how == module_start::injection && !info.inject_items.empty()) {
      const rows_type& p = producer_rows();
      state.inject = compute_.gather(p.rows, ranges_of(j, *model().producer(m), p.items, info.inject_items, at));
    }
    if (model().context_width(m) > 0) {
      const rows_type& p = producer_rows();
      state.c = compute_.gather(p.rows, ranges_of(j, *model().producer(m), p.items, info.context_items, at));
    }
    return state;
  }

  // The chunk's forward from its in-edges' tensors: records per unit (tapes when `tapes`), the
  // chunk's data after it.
  chunk_data run_chunk(stage_id id, const std::map<std::uint32_t, payload>& inputs, saved_forward& saved, bool tapes,
                       bool record_loss) {
    const stage& s = graph().at(id);
    const chunk_spec& chunk = graph().placement().chunk(s.chunk);
    const std::size_t j = s.microbatch.index();
    const std::string at = where(graph().find(stage_kind::forward, s.chunk, j, s.sub));
    chunk_data data;
    std::map<std::size_t, std::vector<rows_type>> gathered;
    for (const auto& [e, tensors] : inputs) {
      const bool same_chain = chain_of_stage(graph().edges()[e].from) == chunk.chain;
      const std::vector<message_tensor>& specs = ctx_->tensors[e];
      for (std::size_t i = 0; i < specs.size(); ++i) {
        const message_tensor& spec = specs[i];
        const std::size_t m = spec.module.index();
        if (spec.kind == tensor_kind::state) {
          data.states[m].x = tensors[i];
        } else if (spec.kind == tensor_kind::context) {
          data.states[m].c = tensors[i];
        } else if (same_chain) {
          data.outputs[m] = {spec.items, tensors[i]};
        } else {
          gathered[m].push_back({spec.items, tensors[i]});
        }
      }
    }
    for (auto& [m, pieces] : gathered) data.outputs[m] = merge(j, m, std::move(pieces), at);
    saved.units.clear();
    for (const auto& [m, rows] : data.outputs) saved.output_items[m] = rows.items;
    for (const layer_span& span : chunk.spans) {
      const std::size_t m = span.module.index();
      const unit_key key{std::uint32_t(m), s.sub};
      unit_info info = make_unit_info(model(), ctx_->batch, j, key);
      state_type state;
      if (span.first == 0) {
        state = start(j, key, info, data, at);
      } else {
        auto it = data.states.find(m);
        require(it != data.states.end(), errc::invalid_plan, at,
                "did not receive the state of module '" + model().module(m).name + "'");
        state = std::move(it->second);
        data.states.erase(it);
      }
      unit_record r{span.first, span.last, std::move(info), state.c, {}, {}};
      compute_.forward_layers(j, key, span.first, span.last, state, r.info, tapes ? &r.tapes : nullptr);
      if (span.last < model().layer_count(m)) {
        data.states.emplace(m, std::move(state));
      } else {
        if (model().is_sink(m)) {
          basic_unit_loss<T> loss = compute_.loss(j, key, state.x);
          if (record_loss) report_.losses[{j, key.module, key.unit}] = loss.value;
          r.loss_gradient = std::move(loss.gradient);
        }
        saved.output_items[m] = r.info.items;
        data.outputs[m] = {r.info.items, std::move(state.x)};
      }
      saved.units.emplace(m, std::move(r));
    }
    return data;
  }

  // The tensors of out-edge e, as the plan lists them, from `pick(spec)`.
  template <class Pick>
  payload message(std::uint32_t e, stage_id id, Pick&& pick) {
    payload out;
    std::vector<tensor_shape> shapes;
    for (const message_tensor& spec : ctx_->tensors[e]) {
      out.push_back(pick(spec));
      shapes.push_back(compute_.shape(out.back()));
    }
    check_message(shapes, ctx_->tensors[e], where(id) + " making edge " + std::to_string(e));
    return out;
  }

  void forward(const action& a, std::map<std::uint32_t, payload>& edges) {
    const stage& s = graph().at(a.stage);
    const std::size_t j = s.microbatch.index();
    std::map<std::uint32_t, payload> input;
    for (std::uint32_t e : graph().in_edges(a.stage)) input.emplace(e, take(edges, e, a.stage));
    saved_forward saved;
    saved.strategy = a.strategy;
    const bool recompute = a.strategy == memory_strategy::recompute;
    chunk_data data = run_chunk(a.stage, input, saved, !recompute, true);
    std::size_t bytes = 0;
    if (recompute) {
      for (const auto& [e, p] : input) bytes += byte_size(p);
      saved.input = std::move(input);
    }
    for (auto& [m, r] : saved.units) bytes += bytes_of(r);
    saved.bytes = bytes;
    const std::string at = where(a.stage);
    for (std::uint32_t e : graph().out_edges(a.stage)) {
      edges[e] = message(e, a.stage, [&](const message_tensor& spec) -> T {
        const std::size_t m = spec.module.index();
        if (spec.kind == tensor_kind::output) {
          auto it = data.outputs.find(m);
          require(it != data.outputs.end(), errc::invalid_plan, at,
                  "edge " + std::to_string(e) + " carries the output of module '" + model().module(m).name +
                      "', which this chunk does not hold");
          if (it->second.items == spec.items) return it->second.rows;
          return compute_.gather(it->second.rows, ranges_of(j, m, it->second.items, spec.items, at));
        }
        auto it = data.states.find(m);
        require(it != data.states.end(), errc::invalid_plan, at,
                "edge " + std::to_string(e) + " carries the state of module '" + model().module(m).name +
                    "', which this chunk does not hold");
        return spec.kind == tensor_kind::state ? it->second.x : it->second.c;
      });
    }
    if (a.strategy == memory_strategy::offload) {
      for (auto& [m, r] : saved.units) {
        for (tape_type& t : r.tapes) compute_.offload(t);
      }
      // The device holds the tapes while F runs; then they live in the host store until B/I.
      grow(bytes);
      shrink(bytes);
      host_bytes_ += bytes;
      report_.peak_offloaded_bytes = std::max(report_.peak_offloaded_bytes, host_bytes_);
      host_.emplace(a.stage, std::move(saved));
    } else {
      grow(bytes);
      device_.emplace(a.stage, std::move(saved));
    }
  }

  // The saved forward of `forward_id` back on the device, with tapes (re-run for recompute).
  saved_forward restore(stage_id forward_id) {
    if (auto it = host_.find(forward_id); it != host_.end()) {
      saved_forward saved = std::move(it->second);
      host_.erase(it);
      host_bytes_ -= saved.bytes;
      grow(saved.bytes);
      for (auto& [m, r] : saved.units) {
        for (tape_type& t : r.tapes) compute_.restore(t);
      }
      return saved;
    }
    auto it = device_.find(forward_id);
    require(it != device_.end(), errc::invalid_plan, where(forward_id), "its backward runs before it");
    saved_forward saved = std::move(it->second);
    device_.erase(it);
    if (saved.strategy == memory_strategy::recompute) {
      run_chunk(forward_id, saved.input, saved, true, false);
      std::size_t extra = 0;
      for (auto& [m, r] : saved.units) extra += bytes_of(r);
      grow(extra);
      saved.bytes += extra;
    }
    return saved;
  }

  void backward_input(const action& a, std::map<std::uint32_t, payload>& edges, bool with_weights) {
    const stage& s = graph().at(a.stage);
    const std::size_t j = s.microbatch.index();
    const stage_id forward_id = graph().find(stage_kind::forward, s.chunk, j, s.sub);
    const std::string at = where(a.stage);
    saved_forward saved = restore(forward_id);
    std::map<std::size_t, state_type> states;  // dx, dc of modules in progress
    std::map<std::size_t, T> outputs;          // gradients of the outputs the chunk held, over their items
    const auto add_output = [&](std::size_t m, const std::vector<std::size_t>& items, const T& part) {
      auto held = saved.output_items.find(m);
      require(held != saved.output_items.end(), errc::invalid_plan, at,
              "gets a gradient for the output of module '" + model().module(m).name + "', which it did not hold");
      auto it = outputs.find(m);
      if (it == outputs.end()) {
        it = outputs
                 .emplace(m, compute_.zeros(item_rows(microbatch(j), model().module(m), held->second),
                                            model().output_width(module_id::from_index(m))))
                 .first;
      }
      it->second = compute_.scatter_add(std::move(it->second), ranges_of(j, m, held->second, items, at), part);
    };
    for (std::uint32_t e : graph().in_edges(a.stage)) {
      payload p = take(edges, e, a.stage);
      const std::vector<message_tensor>& specs = ctx_->tensors[e];
      for (std::size_t i = 0; i < specs.size(); ++i) {
        const std::size_t m = specs[i].module.index();
        if (specs[i].kind == tensor_kind::state) {
          states[m].x = std::move(p[i]);
        } else if (specs[i].kind == tensor_kind::context) {
          states[m].c = std::move(p[i]);
        } else {
          add_output(m, specs[i].items, p[i]);
        }
      }
    }
    const chunk_spec& chunk = graph().placement().chunk(s.chunk);
    pending_jobs jobs;
    std::size_t job_bytes = 0;
    for (auto span = chunk.spans.rbegin(); span != chunk.spans.rend(); ++span) {
      const std::size_t m = span->module.index();
      const unit_key key{std::uint32_t(m), s.sub};
      unit_record& r = saved.units.at(m);
      T dy, dc, d_inject;
      if (span->last == model().layer_count(m)) {
        if (model().is_sink(m)) {
          dy = r.loss_gradient;
        } else if (auto it = outputs.find(m); it != outputs.end()) {
          dy = std::move(it->second);
          outputs.erase(it);
        } else {
          dy = compute_.zeros(r.info.rows, model().output_width(module_id::from_index(m)));
        }
        if (model().context_width(m) > 0) dc = compute_.zeros(compute_.shape(r.c).rows, compute_.shape(r.c).cols);
      } else {
        auto it = states.find(m);
        require(it != states.end(), errc::invalid_plan, at,
                "did not receive the gradient of module '" + model().module(m).name + "'");
        dy = std::move(it->second.x);
        dc = std::move(it->second.c);
        states.erase(it);
        // The context travels only while dit blocks remain: its gradient starts where it ends.
        if (model().context_width(m) > 0 && compute_.shape(dc).rows == 0 && compute_.shape(r.c).rows > 0) {
          dc = compute_.zeros(compute_.shape(r.c).rows, compute_.shape(r.c).cols);
        }
      }
      std::vector<std::vector<job_type>> layer_jobs;
      T dx = compute_.backward_layers(j, key, r.first, r.last, r.tapes, r.c, std::move(dy), dc, d_inject, r.info,
                                      layer_jobs);
      for (std::size_t i = 0; i < layer_jobs.size(); ++i) {
        for (const job_type& job : layer_jobs[i]) job_bytes += job.bytes();
        jobs.emplace(std::pair{key, r.first + i}, std::move(layer_jobs[i]));
      }
      if (r.first > 0) {
        states[m] = state_type{std::move(dx), std::move(dc), {}};
        continue;
      }
      // The module's first layer: what it read of its producer gets the gradient.
      if (const auto p = model().producer(m)) {
        switch (model().start(m)) {
          case module_start::continuation:
            add_output(*p, r.info.items, compute_.reshape(dx, model().output_width(module_id::from_index(*p))));
            break;
          case module_start::injection:
            if (!r.info.inject_items.empty()) add_output(*p, r.info.inject_items, d_inject);
            break;
          case module_start::synthetic: break;
        }
        if (model().context_width(m) > 0) add_output(*p, r.info.context_items, dc);
      }
    }
    // The tapes are freed; the weight jobs hold what W needs.
    shrink(saved.bytes);
    grow(job_bytes);
    if (with_weights) {
      run_weight_jobs(j, std::move(jobs), job_bytes);
    } else {
      pending_.emplace(forward_id, std::pair{std::move(jobs), job_bytes});
    }
    for (std::uint32_t e : graph().out_edges(a.stage)) {
      edges[e] = message(e, a.stage, [&](const message_tensor& spec) -> T {
        const std::size_t m = spec.module.index();
        if (spec.kind == tensor_kind::output) {
          const std::vector<std::size_t>& held = saved.output_items.at(m);
          auto it = outputs.find(m);
          if (it == outputs.end()) {
            return compute_.zeros(spec.rows, spec.features);  // no consumer read it (yet): zero gradient
          }
          if (held == spec.items) return it->second;
          return compute_.gather(it->second, ranges_of(j, m, held, spec.items, at));
        }
        auto it = states.find(m);
        require(it != states.end(), errc::invalid_plan, at,
                "edge " + std::to_string(e) + " carries the gradient of module '" + model().module(m).name +
                    "', which this chunk did not compute");
        return spec.kind == tensor_kind::state ? it->second.x : it->second.c;
      });
    }
  }

  void backward_weight(const action& a, std::map<std::uint32_t, payload>& edges) {
    const stage& s = graph().at(a.stage);
    for (std::uint32_t e : graph().in_edges(a.stage)) take(edges, e, a.stage);
    const stage_id forward_id = graph().find(stage_kind::forward, s.chunk, s.microbatch.index(), s.sub);
    auto it = pending_.find(forward_id);
    require(it != pending_.end(), errc::invalid_plan, where(a.stage), "runs before its I stage");
    auto [jobs, bytes] = std::move(it->second);
    pending_.erase(it);
    run_weight_jobs(s.microbatch.index(), std::move(jobs), bytes);
    for (std::uint32_t e : graph().out_edges(a.stage)) edges[e] = payload{};
  }

  void run_weight_jobs(std::size_t j, pending_jobs jobs, std::size_t bytes) {
    for (auto& [at, list] : jobs) {
      const auto& [key, layer_index] = at;
      report_.gradients.add(key.module, layer_index, j, key.unit,
                            compute_.weight_gradients(key.module, layer_index, list));
    }
    shrink(bytes);
  }

  const execution_context* ctx_;
  rank_id rank_;
  Compute compute_;
  rank_report report_;
  std::size_t live_ = 0, host_bytes_ = 0;
  std::map<stage_id, saved_forward> device_, host_;
  std::map<stage_id, std::pair<pending_jobs, std::size_t>> pending_;
};

}  // namespace dip::exec
