// dip::exec::execute: runs a dip::plan for real, every rank in its own thread, on the exact
// CPU backend; dip::exec::run_rank: one rank's walk over its actions.
//
// The walk (run_rank) and the stage bookkeeping (stage_runner: bundles, saved forwards, memory
// strategies, weight jobs, peaks) are written once; the arithmetic comes from a compute backend
// (the `compute_backend` concept below): cpu_compute here (Eigen, double, bit-exact), the CUDA
// backend in reference_executor/cuda/ (cuBLAS bf16 GEMMs, device tensors). A backend's messages
// are its own pack type, carried by a transport_like<Transport, pack_type>.
//
// A rank takes its actions from dip::rank_actions in order:
// - compute F: runs its chunk's layers on the stage's units (chain_layout.hpp) from the bundles
//   of its input edges, and keeps what the backward needs as the action's memory strategy says:
//   keep: the layer tapes; recompute: only the chunk's input bundle (B/I re-runs the forward);
//   offload: the tapes, moved to a separate host store until B/I. A sink module's loss is
//   computed here.
// - compute B or I: the input gradient from the bundles of its input edges; I leaves weight
//   jobs for W, B runs them at once. W: the weight gradients, kept per (microbatch, unit).
// - send: packs the edge's bundle and hands it to the transport (non-blocking).
// - recv: NCCL matches messages of a (sender, receiver) pair in posting order, but a plan's
//   receiver may want them in another order; so a rank receives from a peer in the *sender's*
//   order (from the plan) and stashes messages it does not need yet.
// Consecutive communication actions form one transport group.
// execute() joins every thread always: an exception on one rank aborts the fabric, so the
// others fail within the timeout, and the first error is rethrown.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/bundle.hpp"
#include "dip/exec/chain_layout.hpp"
#include "dip/exec/cpu_transport.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/transport.hpp"
#include "dip/exec/unit_pass.hpp"
#include "dip/schedule/action_stream.hpp"
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
      require(batch.microbatches[j].modules.size() == model->model().module_count(), errc::invalid_argument,
              "execute", "microbatch " + std::to_string(j) + " does not give every module its work");
      for (std::size_t k = 0; k < g.placement().chains.size(); ++k) {
        if (g.sub_count(j, k) == 1) continue;
        for (const layer_span& s : g.placement().chunk(g.placement().chains[k][0]).spans) {
          require(batch.microbatches[j].modules[s.module.index()].size() == g.sub_count(j, k), errc::invalid_argument,
                  "execute", "the batch is not the one the plan's graph was built from (microbatch " +
                                 std::to_string(j) + ")");
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

struct execute_options {
  std::chrono::milliseconds timeout = std::chrono::seconds(10);  // longest a receive may wait
  // Called before every action of every rank (from that rank's thread); a test hook to make a
  // rank fail. Empty: nothing.
  std::function<void(rank_id, const action&)> before_action;
};

// One rank's figures after run_rank.
struct rank_report {
  gradient_store gradients;
  std::map<std::tuple<std::size_t, std::uint32_t, std::uint32_t>, double> losses;
  std::size_t peak_activation_bytes = 0;
  std::size_t peak_offloaded_bytes = 0;
  double seconds = 0;
};

// A sink unit's loss and the gradient of its output, for any backend's tensor.
template <class T>
struct basic_unit_loss {
  double value = 0;
  T gradient;
};

// What the shared walk needs from one rank's compute backend. T = tensor_type: an immutable
// value (copies may share storage; the runner never writes into a tensor it did not make).
// Tapes and weight jobs report their bytes() for the activation-memory figures.
template <class C>
concept compute_backend = requires(C c, const C& cc, const microbatch_work& mb, std::size_t n, unit_key key,
                                   basic_unit_state<typename C::tensor_type>& state,
                                   const typename C::tensor_type& t, typename C::tensor_type value,
                                   const sequence_lengths& lengths, std::vector<typename C::tape_type>* tapes,
                                   std::vector<std::vector<typename C::job_type>>& layer_jobs,
                                   const std::vector<typename C::job_type>& jobs,
                                   const std::map<unit_key, typename C::tensor_type>& parts,
                                   typename C::tape_type& tape, const basic_payload<typename C::tensor_type>& p,
                                   typename C::pack_type message, const std::string& where) {
  { c.start_unit(mb, n, key, std::function<const typename C::tensor_type*(unit_key)>(), where) }
      -> std::same_as<basic_unit_state<typename C::tensor_type>>;
  c.forward_layers(key, n, n, state, lengths, tapes);
  { c.backward_layers(key, n, n, *tapes, t, value, value, layer_jobs) } -> std::same_as<typename C::tensor_type>;
  { c.loss(n, key, t) } -> std::same_as<basic_unit_loss<typename C::tensor_type>>;
  { c.output_gradient(parts, std::int64_t(), std::int64_t()) } -> std::same_as<typename C::tensor_type>;
  { c.zero_context_gradient(t) } -> std::same_as<typename C::tensor_type>;
  { c.divide(t, 1.0) } -> std::same_as<typename C::tensor_type>;
  { c.weight_gradients(n, n, jobs) } -> std::same_as<std::vector<tensor>>;
  c.offload(tape);
  c.restore(tape);
  { c.pack(p) } -> std::same_as<typename C::pack_type>;
  { c.unpack(std::move(message), true, where) } -> std::same_as<basic_payload<typename C::tensor_type>>;
  c.finish();
  { byte_size(t) } -> std::convertible_to<std::size_t>;
  { cc.tape_bytes(tape) } -> std::convertible_to<std::size_t>;
};

// The exact CPU backend: the layers of layers.hpp through unit_pass.hpp, in double precision.
class cpu_compute {
 public:
  using tensor_type = tensor;
  using tape_type = layer_tape;
  using job_type = weight_job;
  using pack_type = tensor_pack;

  explicit cpu_compute(const executable_model& model) : model_(&model) {}

  unit_state start_unit(const microbatch_work& mb, std::size_t j, unit_key key,
                        const std::function<const tensor*(unit_key)>& output_of, const std::string& where) const {
    return dip::exec::start_unit(*model_, mb, j, key, output_of, where);
  }
  void forward_layers(unit_key key, std::size_t first, std::size_t last, unit_state& state,
                      const sequence_lengths& lengths, std::vector<layer_tape>* tapes) const {
    dip::exec::forward_layers(*model_, key, first, last, state, lengths, tapes);
  }
  tensor backward_layers(unit_key key, std::size_t first, std::size_t last, const std::vector<layer_tape>& tapes,
                         const tensor& c, tensor dy, tensor& dc, std::vector<std::vector<weight_job>>& jobs) const {
    return dip::exec::backward_layers(*model_, key, first, last, tapes, c, std::move(dy), dc, jobs);
  }
  basic_unit_loss<tensor> loss(std::size_t j, unit_key key, const tensor& y) const {
    unit_loss l = compute_loss(*model_, j, key, y);
    return {l.value, std::move(l.gradient)};
  }
  tensor output_gradient(const std::map<unit_key, tensor>& contributions, std::int64_t rows, std::int64_t width) const {
    return output_gradient_from_context(contributions, rows, width);
  }
  tensor zero_context_gradient(const tensor& c) const { return dip::exec::zero_context_gradient(c); }
  tensor divide(const tensor& t, double d) const { return t / d; }
  std::vector<tensor> weight_gradients(std::size_t module, std::size_t layer, const std::vector<weight_job>& jobs) const {
    return dip::exec::backward_weight(model_->at(module, layer), jobs);
  }
  // The host store is the same memory on the CPU: nothing to move.
  void offload(layer_tape&) const {}
  void restore(layer_tape&) const {}
  std::size_t tape_bytes(const layer_tape& t) const { return t.bytes(); }
  tensor_pack pack(const payload& p) const { return dip::exec::pack(p); }
  payload unpack(tensor_pack p, bool forward, const std::string& where) const {
    return dip::exec::unpack(std::move(p), forward, where);
  }
  void finish() const {}

 private:
  const executable_model* model_;
};

static_assert(compute_backend<cpu_compute>);

// One rank's stage computations and the activations they keep, on compute backend `Compute`.
template <compute_backend Compute>
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
          state = compute_.start_unit(mb, j, key, [&](unit_key k) -> const T* {
            auto it = input.outputs.find(k);
            return it == input.outputs.end() ? nullptr : &it->second;
          }, at);
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

using cpu_stage_runner = stage_runner<cpu_compute>;

// Runs rank `rank`'s actions with `runner` (its compute backend) on `transport`; the report's
// gradients, losses and peaks are the rank's own. Throws dip::error for a plan the data cannot
// follow, whatever the transport or the backend throws.
template <compute_backend Compute, transport_like<typename Compute::pack_type> Transport>
rank_report run_rank(const execution_context& ctx, rank_id rank, stage_runner<Compute>& runner, Transport& transport,
                     const execute_options& options = {}) {
  using payload_type = typename stage_runner<Compute>::payload;
  using pack_type = typename Compute::pack_type;
  const auto start = std::chrono::steady_clock::now();
  const stage_graph& g = ctx.graph();
  const std::size_t me = rank.index();
  std::map<std::uint32_t, payload_type> edges;     // data of edges this rank produced or received
  std::map<std::uint32_t, pack_type> stash;        // received ahead of the plan's order
  std::vector<std::pair<std::uint32_t, std::string>> arrived;  // received in the open group, unpacked at its end
  std::vector<std::size_t> received(ctx.schedule->ranks.size(), 0);  // per peer: messages taken
  const auto is_forward_edge = [&](std::uint32_t e) { return g.at(g.edges()[e].from).kind == stage_kind::forward; };
  const auto end_group = [&] {
    transport.group_end();
    for (const auto& [e, name] : arrived) {
      auto node = stash.extract(e);
      edges[e] = runner.backend().unpack(std::move(node.mapped()), is_forward_edge(e), name);
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
          const auto shapes = [&] {
            if (!is_forward_edge(tag)) return std::vector<tensor_shape>{};
            const stage& from = g.at(g.edges()[tag].from);
            return ctx.layout.forward_message(g, ctx.batch, from.chunk, from.microbatch.index(), from.sub);
          };
          const std::vector<tensor_shape> expected = shapes();
          stash.emplace(tag, transport.recv(int(peer), tag, expected));
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

// The same on the exact CPU backend.
template <transport_like Transport>
rank_report run_rank(const execution_context& ctx, rank_id rank, Transport& transport,
                     const execute_options& options = {}) {
  cpu_stage_runner runner(ctx, rank, cpu_compute(*ctx.model));
  return run_rank(ctx, rank, runner, transport, options);
}

// The step's result from every rank's report: gradients reduced in the canonical order, losses
// summed in (microbatch, module, unit) order, per-rank figures. Shared by every backend's execute.
inline step_result combine_reports(std::vector<rank_report> reports) {
  gradient_store all;
  std::map<std::tuple<std::size_t, std::uint32_t, std::uint32_t>, double> losses;
  step_result result;
  for (rank_report& r : reports) {
    all.merge(std::move(r.gradients));
    losses.merge(r.losses);
    result.peak_activation_bytes.push_back(r.peak_activation_bytes);
    result.peak_offloaded_bytes.push_back(r.peak_offloaded_bytes);
    result.rank_seconds.push_back(r.seconds);
  }
  result.gradients = all.reduce();
  result.loss = total_loss(losses);
  return result;
}

// Runs plan `p` of `model` on `batch` (the batch its graph was built from), one thread per
// rank over an in-process fabric, and returns the reduced gradients, loss and per-rank figures.
inline step_result execute(std::shared_ptr<const plan> p, const multimodal_model& model, const batch_work& batch,
                           const execute_options& options = {}) {
  require(p != nullptr && p->graph != nullptr, errc::invalid_argument, "execute", "no plan");
  const execution_context ctx(p, std::make_shared<const executable_model>(model), batch);
  const std::size_t ranks = p->ranks.size();
  cpu_fabric fabric(int(ranks), options.timeout);
  std::vector<rank_report> reports(ranks);
  std::mutex failure_mutex;
  std::exception_ptr first_failure;
  {
    std::vector<std::jthread> threads;
    threads.reserve(ranks);
    for (std::size_t r = 0; r < ranks; ++r) {
      threads.emplace_back([&, r] {
        cpu_transport transport(fabric, int(r));
        try {
          reports[r] = run_rank(ctx, rank_id::from_index(r), transport, options);
        } catch (...) {
          {
            std::lock_guard lock(failure_mutex);
            if (!first_failure) first_failure = std::current_exception();
          }
          transport.abort();
        }
      });
    }
  }  // jthreads join here, whatever happened
  if (first_failure) std::rethrow_exception(first_failure);
  return combine_reports(std::move(reports));
}

inline step_result execute(const plan& p, const multimodal_model& model, const batch_work& batch,
                           const execute_options& options = {}) {
  return execute(std::make_shared<const plan>(p), model, batch, options);
}

}  // namespace dip::exec
