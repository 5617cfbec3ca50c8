// dip::exec::stage_runner<Compute>: one rank's compute actions on any compute_backend_like
// backend, and the activations they keep: bundles, saved forwards, memory strategies, weight
// jobs, peaks. The walk (walk.hpp) hands it each compute action with the rank's edge data.
// - F: runs its chunk's layers on the stage's units (chain_layout.hpp) from the bundles of its
//   input edges, and keeps what the backward needs as the action's memory strategy says:
//   keep: the layer tapes; recompute: only the chunk's input bundle (B/I re-runs the forward);
//   offload: the tapes, moved to a separate host store until B/I. A sink module's loss is
//   computed here.
// - B or I: the input gradient from the bundles of its input edges; I leaves weight jobs for W,
//   B runs them at once. W: the weight gradients, kept per (microbatch, unit).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <variant>
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
  using activation_bundle = basic_activation_bundle<T>;
  using gradient_bundle = basic_gradient_bundle<T>;
  using tape_type = typename Compute::tape_type;
  using job_type = typename Compute::job_type;

  struct unit_record {
    std::size_t first = 0, last = 0;  // layers run in this chunk
    sequence_lengths lengths;
    T c;
    std::vector<tape_type> tapes;
    T loss_gradient;  // sink units whose module ends here
  };
  std::size_t bytes_of(const unit_record& r) const {
    std::size_t total = byte_size(r.c) + byte_size(r.loss_gradient);
    for (const tape_type& t : r.tapes) total += compute_.tape_bytes(t);
    return total;
  }
  struct saved_forward {
    memory_strategy strategy = memory_strategy::keep;
    std::map<unit_key, unit_record> units;
    activation_bundle input;  // recompute only
    std::size_t bytes = 0;
  };
  using pending_jobs = std::map<std::pair<unit_key, std::size_t>, std::vector<job_type>>;  // (unit, layer)

  const stage_graph& graph() const { return ctx_->graph(); }
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
    return p;
  }

  // The chunk's forward from `input`: records per unit (tapes when `tapes`), the output bundle.
  activation_bundle run_chunk(const stage& s, activation_bundle input, std::map<unit_key, unit_record>& records,
                              bool tapes, bool record_loss) {
    const execution_context& ctx = *ctx_;
    const chunk_spec& chunk = graph().placement().chunk(s.chunk);
    const std::size_t j = s.microbatch.index();
    const microbatch_work& mb = ctx.batch.microbatches[j];
    const std::string at = where(ctx.graph().find(stage_kind::forward, s.chunk, j, s.sub));
    for (const layer_span& span : chunk.spans) {
      const std::size_t m = span.module.index();
      for (std::uint32_t u : ctx.layout.units(graph(), ctx.batch, chunk.chain, j, s.sub, m)) {
        const unit_key key{std::uint32_t(m), u};
        state_type state;
        if (span.first == 0) {
          state = compute_.start_unit(
              mb, j, key,
              [&](unit_key k) -> const T* {
                auto it = input.outputs.find(k);
                return it == input.outputs.end() ? nullptr : &it->second;
              },
              at);
        } else {
          auto it = input.states.find(key);
          require(it != input.states.end(), errc::invalid_plan, at,
                  "did not receive module '" + ctx.model->model().modules()[m].name + "' unit " + std::to_string(u));
          state = std::move(it->second);
          input.states.erase(it);
        }
        unit_record r{span.first, span.last, unit_sequences(mb.modules[m][u]), state.c, {}, {}};
        compute_.forward_layers(key, span.first, span.last, state, r.lengths, tapes ? &r.tapes : nullptr);
        if (span.last < ctx.model->layer_count(m)) {
          input.states.emplace(key, std::move(state));
        } else if (ctx.model->is_sink(m)) {
          basic_unit_loss<T> loss = compute_.loss(j, key, state.x);
          if (record_loss) report_.losses[{j, key.module, key.unit}] = loss.value;
          r.loss_gradient = std::move(loss.gradient);
        } else {
          input.outputs.emplace(key, std::move(state.x));
        }
        records.emplace(key, std::move(r));
      }
    }
    // Outputs no later stage of this chain or a consumer chain reads are dropped.
    for (auto it = input.outputs.begin(); it != input.outputs.end();) {
      it = ctx.layout.output_live_after(it->first.module, chunk.chain, chunk.position) ? std::next(it)
                                                                                       : input.outputs.erase(it);
    }
    return input;
  }

  void forward(const action& a, std::map<std::uint32_t, payload>& edges) {
    const stage& s = graph().at(a.stage);
    activation_bundle input;
    for (std::uint32_t e : graph().in_edges(a.stage)) {
      payload p = take(edges, e, a.stage);
      auto* b = std::get_if<activation_bundle>(&p);
      require(b != nullptr, errc::invalid_plan, where(a.stage), "got a message that is not an activation bundle");
      input.states.merge(b->states);
      input.outputs.merge(b->outputs);
    }
    saved_forward saved;
    saved.strategy = a.strategy;
    const bool recompute = a.strategy == memory_strategy::recompute;
    if (recompute) saved.input = input;
    activation_bundle output = run_chunk(s, std::move(input), saved.units, !recompute, true);
    std::size_t bytes = recompute ? byte_size(saved.input) : 0;
    for (auto& [key, r] : saved.units) bytes += bytes_of(r);
    saved.bytes = bytes;
    if (a.strategy == memory_strategy::offload) {
      for (auto& [key, r] : saved.units) {
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
    for (std::uint32_t e : graph().out_edges(a.stage)) {
      const bool to_forward = graph().at(graph().edges()[e].to).kind == stage_kind::forward;
      edges[e] = to_forward ? payload(output) : payload(std::monostate{});
    }
  }

  // The saved forward of `forward_id` back on the device, with tapes (re-run for recompute).
  saved_forward restore(stage_id forward_id) {
    if (auto it = host_.find(forward_id); it != host_.end()) {
      saved_forward saved = std::move(it->second);
      host_.erase(it);
      host_bytes_ -= saved.bytes;
      grow(saved.bytes);
      for (auto& [key, r] : saved.units) {
        for (tape_type& t : r.tapes) compute_.restore(t);
      }
      return saved;
    }
    auto it = device_.find(forward_id);
    require(it != device_.end(), errc::invalid_plan, where(forward_id), "its backward runs before it");
    saved_forward saved = std::move(it->second);
    device_.erase(it);
    if (saved.strategy == memory_strategy::recompute) {
      std::map<unit_key, unit_record> records;
      run_chunk(graph().at(forward_id), saved.input, records, true, false);
      std::size_t extra = 0;
      for (auto& [key, r] : records) extra += bytes_of(r);
      grow(extra);
      saved.bytes += extra;
      saved.units = std::move(records);
    }
    return saved;
  }

  void backward_input(const action& a, std::map<std::uint32_t, payload>& edges, bool with_weights) {
    const execution_context& ctx = *ctx_;
    const stage& s = graph().at(a.stage);
    const std::size_t j = s.microbatch.index();
    const microbatch_work& mb = ctx.batch.microbatches[j];
    const stage_id forward_id = graph().find(stage_kind::forward, s.chunk, j, s.sub);
    gradient_bundle grad;
    for (std::uint32_t e : graph().in_edges(a.stage)) {
      payload p = take(edges, e, a.stage);
      if (auto* g = std::get_if<gradient_bundle>(&p)) {
        grad.states.merge(g->states);
        for (auto& [producer, parts] : g->contributions) grad.contributions[producer].merge(parts);
      }
    }
    saved_forward saved = restore(forward_id);
    const chunk_spec& chunk = graph().placement().chunk(s.chunk);
    pending_jobs jobs;
    std::size_t job_bytes = 0;
    for (auto span = chunk.spans.rbegin(); span != chunk.spans.rend(); ++span) {
      const std::size_t m = span->module.index();
      for (std::uint32_t u : ctx.layout.units(graph(), ctx.batch, chunk.chain, j, s.sub, m)) {
        const unit_key key{std::uint32_t(m), u};
        unit_record& r = saved.units.at(key);
        T dy, dc;
        if (span->last == ctx.model->layer_count(m)) {
          if (ctx.model->is_sink(m)) {
            dy = r.loss_gradient;
          } else {
            const std::int64_t rows = unit_rows(mb.modules[m][u]);
            dy = compute_.output_gradient(grad.contributions[key], rows,
                                          ctx.model->output_width(module_id::from_index(m)));
            grad.contributions.erase(key);
          }
          dc = compute_.zero_context_gradient(r.c);
        } else {
          auto it = grad.states.find(key);
          require(it != grad.states.end(), errc::invalid_plan, where(a.stage),
                  "did not receive the gradient of module '" + ctx.model->model().modules()[m].name + "' unit " +
                      std::to_string(u));
          dy = std::move(it->second.x);
          dc = std::move(it->second.c);
          grad.states.erase(it);
        }
        std::vector<std::vector<job_type>> layer_jobs;
        T dx = compute_.backward_layers(key, r.first, r.last, r.tapes, r.c, std::move(dy), dc, layer_jobs);
        for (std::size_t i = 0; i < layer_jobs.size(); ++i) {
          for (const job_type& job : layer_jobs[i]) job_bytes += job.bytes();
          jobs.emplace(std::pair{key, r.first + i}, std::move(layer_jobs[i]));
        }
        if (r.first > 0) {
          grad.states.emplace(key, state_type{std::move(dx), std::move(dc)});
        } else if (byte_size(dc) > 0) {
          const T share = compute_.divide(dc, double(context_rows(*ctx.model, mb, key)));
          for (unit_key source : context_sources(*ctx.model, mb, key)) grad.contributions[source][key] = share;
        }
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
      const stage& to = graph().at(graph().edges()[e].to);
      if (to.kind == stage_kind::backward_weight) {
        edges[e] = std::monostate{};
      } else if (to.chunk != s.chunk && graph().placement().chunk(to.chunk).chain == chunk.chain) {
        edges[e] = grad;  // the previous chunk of this chain
      } else {
        // A producer chain's last chunk: the contributions to the outputs of its units.
        const chunk_spec& producer = graph().placement().chunk(to.chunk);
        gradient_bundle part;
        for (const auto& [key, parts] : grad.contributions) {
          if (ctx.layout.chain_of(key.module) != producer.chain) continue;
          const auto us = ctx.layout.units(graph(), ctx.batch, producer.chain, j, to.sub, key.module);
          if (std::find(us.begin(), us.end(), key.unit) != us.end()) part.contributions.emplace(key, parts);
        }
        edges[e] = std::move(part);
      }
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
