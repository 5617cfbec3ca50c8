// dip::planner: plan a batch in one call. Built once per training run from the model, its cost
// model and the cluster; owns what is fixed for the run (the placements, K per chain, how
// microbatches are split, the planner's options) and plans each batch with any schedule of its
// registry:
//
//   const dip::model_preset preset = dip::find_preset("vlm-s");
//   dip::planner planner = dip::make_planner(preset);                 // analytic costs, preset's PP/TP/GPU
//   dip::batch_source data = dip::make_batch_source("obelics", preset.model, /*seed=*/1);
//   const dip::planned_batch next = planner.plan(data.next_batch(8));  // dip by default
//   // next.plan: validated per-rank actions; next.simulation.makespan; next.split: who holds what
//
// Per batch, `plan` runs: split the packed microbatches for the schedule's placement -> stage
// graph -> the schedule's planning function -> fit memory (recompute/offload) unless the schedule
// plans within the cap -> validate -> simulate. A schedule that cannot fit is refused with a
// dip::error whose where() is the schedule's name and whose detail says why.
//
// Lazily, on first use and once per run (thread-safe): the modality-aware partition with K per
// chain tuned on planner_options::tuning_batches (or, when there are none, on the first batch a
// modality-aware schedule plans), the one-chunk-per-rank partition optimus runs on, and the
// classic contiguous placements by chunks per rank.
//
// submit(i, batch) / get(i, deadline) plan ahead on the asynchronous planner's workers
// (dip/planner/async_planner.hpp): dip's search offers its best plan so far at a deadline, and
// the static-dip plan fitted to the cap stands in when it has none.
//
// The cost model is a template argument: anything that satisfies dip::cost_model_like.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dip/batch/batch_work.hpp"
#include "dip/batch/module_items.hpp"
#include "dip/batch/packing.hpp"
#include "dip/batch/splitter.hpp"
#include "dip/batch/uniform.hpp"
#include "dip/core/error.hpp"
#include "dip/core/units.hpp"
#include "dip/cost/analytic.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/model/hardware.hpp"
#include "dip/model/model.hpp"
#include "dip/model/presets.hpp"
#include "dip/partition/baseline_partitions.hpp"
#include "dip/partition/modality_partition.hpp"
#include "dip/partition/placement.hpp"
#include "dip/partition/weight_memory.hpp"
#include "dip/planner/async_planner.hpp"
#include "dip/planner/dip_async.hpp"
#include "dip/planner/dip_planner.hpp"
#include "dip/planner/schedule_registry.hpp"
#include "dip/planner/segment_tuning.hpp"
#include "dip/schedule/build_stage_graph.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/validate.hpp"
#include "dip/sim/lower_bounds.hpp"
#include "dip/sim/simulator.hpp"

namespace dip {

// The cluster one training run uses: its pipeline, tensor parallelism, GPU and links.
struct cluster_spec {
  int pp = 1;  // pipeline-parallel ranks
  int tp = 1;  // tensor-parallel degree (divides weights and work)
  gpu_spec gpu = find_gpu("H800");
  std::optional<bytes> memory_cap{};  // per GPU, weights included; nullopt: the GPU's memory
  duration p2p_latency{};             // per pipeline message
  std::optional<bandwidth> link{};    // nullopt: NVLink when tp * pp fits one node, else the network
  double bytes_per_parameter = 16.0;  // weights + grads + Adam (BF16, FP32 master and moments)

  bytes cap() const { return memory_cap.value_or(gpu.memory); }
  communication_model comm() const {
    return link ? communication_model{p2p_latency, *link} : pipeline_link(gpu, tp, pp, p2p_latency);
  }
  weight_memory_rule weight_rule() const { return {tp, bytes_per_parameter, cap()}; }
};

// The cluster a preset names: its PP, TP and GPU.
inline cluster_spec cluster_of(const model_preset& preset) {
  cluster_spec cluster;
  cluster.pp = preset.parallel.pp;
  cluster.tp = preset.parallel.tp;
  cluster.gpu = find_gpu(preset.gpu);
  return cluster;
}

// What is fixed for a run besides the model and the cluster. The defaults are dip-plan's.
struct planner_options {
  std::string partition = "balanced";  // placement of the classic schedules: balanced, megatron or dip
  // What "balanced" balances time for: "uniform", the uniform microbatch of DESIGN.md's presets
  // (8192 LLM tokens, 10 images; dip-plan's default); "batch", the mean microbatch of the tuning
  // batches, else of the first batch planned: the best static split for data whose microbatches
  // are far from the uniform one (small models measured on CPUs, short packed sequences).
  std::string balance = "uniform";
  std::size_t interleaved_chunks = 2;   // chunks per rank of "interleaved"
  std::size_t segments_per_rank = 0;    // K of every modality-aware chain; 0: the partitioner's (tuned)
  std::size_t sub_microbatch_size = 0;  // B of the image and clip chains; 0: the partitioner's
  bool tune_segments = true;            // tune K per chain by planning sample batches
  std::vector<std::vector<packed_microbatch>> tuning_batches{};  // empty: the first batch planned
  double search_ms = 200;           // dip's search budget per batch (0 with 0 rollouts: none)
  std::size_t search_rollouts = 0;  // dip's rollout budget (reproducible for a given thread count)
  unsigned threads = 1;             // dip's search threads, and phase 3's (one rank per thread)
  std::uint64_t seed = 0;           // dip's search seed for batch i is seed + i
  bool memory_strategies = true;    // dip may recompute or offload to fit more in flight
  bool fit_memory = true;           // other schedules: fitted to the cap with recompute/offload
  bool record_timeline = false;     // fill simulation_result::timeline
  async_planner_options async{};    // workers and look-ahead of submit/get
};

struct planning_times {
  double split_ms = 0;     // sub-microbatch split
  double plan_ms = 0;      // stage graph, planning, memory fit and validation
  double simulate_ms = 0;  // the simulation of the validated plan
};

// One batch planned: the validated plan and everything needed to use or report it.
struct planned_batch {
  std::string schedule;
  std::string placement;  // what it ran on: balanced, megatron, dip or optimus
  dip::plan plan;         // validated per-rank action lists (plan.graph: the stage graph)
  simulation_result simulation;
  std::vector<bytes> weight_memory;     // per rank
  std::vector<split_microbatch> split;  // which items each sub-microbatch holds
  batch_work work;                      // the stage graph's input (what plan exports need)
  std::uint64_t index = 0;              // the batch index it was planned as
  planning_times times;
};

namespace detail {

// What `planner` builds once and shares between threads (and copies of the planner).
struct planner_cache {
  std::mutex mutex;
  std::optional<modality_partition> modality;
  std::vector<std::size_t> rule_segments;  // the partitioner's K per chain, when tuning chose another
  std::optional<modality_partition> one_chunk;
  std::map<std::pair<std::size_t, chunk_order>, placement> classic;  // by chunks per rank and chunk order
};

inline double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace detail

template <cost_model_like Costs = analytic_cost_model>
class planner {
 public:
  // Throws dip::error for a cluster or options that cannot plan (naming the field).
  planner(multimodal_model model, Costs costs, cluster_spec cluster, planner_options options = {},
          schedule_registry schedules = schedule_registry::builtin())
      : model_(std::move(model)),
        costs_(std::move(costs)),
        cluster_(std::move(cluster)),
        options_(std::move(options)),
        schedules_(std::move(schedules)),
        unsplit_(unsplit_policy(model_)),
        cache_(std::make_shared<detail::planner_cache>()) {
    require(cluster_.pp >= 1, errc::invalid_argument, "cluster.pp", "must be >= 1");
    require(cluster_.tp >= 1, errc::invalid_argument, "cluster.tp", "must be >= 1");
    require(cluster_.cap().base() > 0, errc::invalid_argument, "cluster.memory_cap", "must be > 0");
    require(to_seconds(cluster_.p2p_latency) >= 0, errc::invalid_argument, "cluster.p2p_latency", "must be >= 0");
    require(options_.partition == "balanced" || options_.partition == "megatron" || options_.partition == "dip",
            errc::not_found, "partition",
            "unknown partition '" + options_.partition + "' (known: balanced, megatron, dip)");
    require(options_.balance == "uniform" || options_.balance == "batch", errc::not_found, "balance",
            "unknown balance '" + options_.balance + "' (known: uniform, batch)");
    require(options_.interleaved_chunks >= 1, errc::invalid_argument, "interleaved_chunks", "must be >= 1");
    require(options_.search_ms >= 0, errc::invalid_argument, "search_ms", "must be >= 0");
    require(options_.threads >= 1, errc::invalid_argument, "threads", "must be >= 1");
  }

  const multimodal_model& model() const noexcept { return model_; }
  const Costs& costs() const noexcept { return costs_; }
  const cluster_spec& cluster() const noexcept { return cluster_; }
  const planner_options& options() const noexcept { return options_; }
  const schedule_registry& schedules() const noexcept { return schedules_; }
  // Register schedules before planning: the registry is not guarded against concurrent plans.
  schedule_registry& schedules() noexcept { return schedules_; }

  // Plans batch `index` (its packed microbatches) with `schedule`. Throws dip::error: an unknown
  // schedule (errc::not_found), an empty batch, or a schedule that cannot fit the cap
  // (errc::infeasible or errc::invalid_plan, where() = the schedule, detail = why).
  planned_batch plan(const std::vector<packed_microbatch>& batch, std::string_view schedule = "dip",
                     std::uint64_t index = 0) const {
    const prepared p = prepare(batch, schedule, index);
    const auto start = std::chrono::steady_clock::now();
    return refused_as(p.schedule, [&] { return finish(p, p.entry.make({p.graph, p.planner_options}), start); });
  }

  // The same for samples not yet packed: packs them with the model's rules (dip/batch/packing.hpp),
  // the last microbatch partial.
  planned_batch plan_samples(const std::vector<training_sample>& samples, std::string_view schedule = "dip",
                             std::uint64_t index = 0) const {
    return plan(pack_samples(samples, model_), schedule, index);
  }

  // Plans batch `index` ahead on the asynchronous planner's workers. The split and the stage
  // graph are built here (the first call may also partition the model and tune K); the search
  // runs on a worker. Throws what plan() throws for a batch it cannot prepare, and what
  // async_planner::submit throws (an index not after the last one, too many batches ahead).
  void submit(std::uint64_t index, const std::vector<packed_microbatch>& batch, std::string_view schedule = "dip") {
    const auto p = std::make_shared<const prepared>(prepare(batch, schedule, index));
    async_planner<planned_batch>& workers = async();
    const auto deliver = [this_ = snapshot(), p](dip::plan made) {
      return this_.finish(*p, std::move(made), std::chrono::steady_clock::now());
    };
    if (p->entry.searched && (options_.search_ms > 0 || options_.search_rollouts > 0)) {
      submit_dip_batch(workers, std::size_t(index), p->graph, p->planner_options, deliver);
      return;
    }
    const auto make = [p, deliver] {
      return refused_as(p->schedule, [&] { return deliver(p->entry.make({p->graph, p->planner_options})); });
    };
    workers.submit(
        std::size_t(index),
        [make](std::size_t, planning_context<planned_batch>& ctx) {
          planned_batch out = make();
          const double ms = to_milliseconds(out.simulation.makespan);
          ctx.offer(std::move(out), ms);
        },
        [make](std::size_t) { return make(); });
  }

  // Batch `index`'s plan by `deadline` (dip/planner/async_planner.hpp: the search's best by then,
  // or the fallback). Throws dip::error for an index never submitted.
  delivered_plan<planned_batch> get(std::uint64_t index, std::chrono::steady_clock::time_point deadline) {
    return async().get(std::size_t(index), deadline);
  }
  template <class Rep, class Period>
  delivered_plan<planned_batch> get(std::uint64_t index, std::chrono::duration<Rep, Period> timeout) {
    return async().get(std::size_t(index), timeout);
  }
  async_planner_stats async_stats() const { return async_ ? async_->stats() : async_planner_stats{}; }

  // The placement `schedule` runs on (built if it was not yet; a modality-aware one is tuned on
  // planner_options::tuning_batches, or needs a batch planned first when there are none).
  const placement& placement_of(std::string_view schedule) const {
    return placement_for(schedules_.at(schedule), nullptr).place;
  }
  // How microbatches are split for `schedule`'s placement.
  const sub_microbatch_policy& policy_of(std::string_view schedule) const {
    return *placement_for(schedules_.at(schedule), nullptr).policy;
  }
  // The K-tuned modality-aware partition, if a schedule has needed it yet; nullptr otherwise.
  const modality_partition* modality_partition_if_built() const {
    std::lock_guard lock(cache_->mutex);
    return cache_->modality ? &*cache_->modality : nullptr;
  }
  // The partitioner's own K per chain where tuning chose another (empty when it kept them all).
  std::vector<std::size_t> rule_segments() const {
    std::lock_guard lock(cache_->mutex);
    return cache_->rule_segments;
  }

 private:
  struct placed {
    const placement& place;
    const sub_microbatch_policy* policy;  // never null (unsplit_ for the classic placements)
    const char* name;
  };
  struct prepared {
    std::string schedule;
    schedule_entry entry;  // a copy: the registry may change after a batch is submitted
    std::string placement_name;
    std::shared_ptr<const stage_graph> graph;
    dip_planner_options planner_options;
    std::vector<split_microbatch> split;
    batch_work work;
    std::uint64_t index = 0;
    double split_ms = 0, graph_ms = 0;
  };

  // What the asynchronous workers need to finish a plan: copies, so that the planner may move.
  struct finisher {
    communication_model comm;
    bytes cap;
    bool fit_memory = true;
    bool record_timeline = false;

    planned_batch finish(const prepared& p, dip::plan made, std::chrono::steady_clock::time_point start) const {
      const std::vector<bytes>& weights = p.planner_options.weight_memory;
      if (!p.entry.plans_within_cap && fit_memory) {
        // As a trainer would turn on activation recompute: the fastest recompute/offload choice
        // that fits the GPU (phase 3's chooser), only where the plan does not fit as it is.
        try {
          fit_memory_to(made, cap, weights);
        } catch (const error& e) {
          throw error(errc::infeasible, p.schedule,
                      "does not fit the GPU even with activation recompute or offload: " + e.detail());
        }
      }
      const bool capped = p.entry.plans_within_cap || fit_memory;
      validate(made, {.memory_cap = capped ? std::optional(cap) : std::nullopt, .weight_memory = weights});
      planned_batch out;
      out.times.split_ms = p.split_ms;
      out.times.plan_ms = p.graph_ms + detail::milliseconds_since(start);
      const auto simulated = std::chrono::steady_clock::now();
      out.simulation = simulate(made, {.comm = comm, .weight_memory = weights, .record_timeline = record_timeline});
      out.times.simulate_ms = detail::milliseconds_since(simulated);
      add_tight_bounds(out.simulation.bounds, *made.graph, capped ? std::optional(cap) : std::nullopt, weights);
      out.schedule = p.schedule;
      out.placement = p.placement_name;
      out.plan = std::move(made);
      out.weight_memory = weights;
      out.split = p.split;
      out.work = p.work;
      out.index = p.index;
      return out;
    }

    // The rank window, and under a cap the memory-aware bound, of the plan's own stage graph
    // (dip/sim/lower_bounds.hpp), beside the simulator's classic bounds.
    static void add_tight_bounds(lower_bounds& bounds, const stage_graph& graph, std::optional<bytes> cap,
                                 const std::vector<bytes>& weights) {
      lower_bounds tight;
      if (cap) {
        std::vector<bytes> budget(static_cast<std::size_t>(graph.ranks()), *cap);
        for (std::size_t r = 0; r < budget.size() && r < weights.size(); ++r) budget[r] -= weights[r];
        tight = capped_lower_bounds(graph, budget);
      } else {
        tight = memory_free_lower_bounds(graph);
      }
      bounds.rank_window = tight.rank_window;
      bounds.memory = tight.memory;
    }

    static void fit_memory_to(dip::plan& p, bytes cap, const std::vector<bytes>& weights) {
      ::dip::fit_memory(p, cap, weights);
    }
  };

  // Runs `step`; a dip::error from inside a schedule (the validator's "rank 0 action 9", the
  // planner's "plan_dip") is refused under the schedule's name, the inner place kept in the detail.
  template <class Step>
  static planned_batch refused_as(const std::string& schedule, Step&& step) {
    try {
      return step();
    } catch (const error& e) {
      if (e.where() == schedule) throw;
      throw error(e.code(), schedule, e.what());
    }
  }

  finisher snapshot() const { return {cluster_.comm(), cluster_.cap(), options_.fit_memory, options_.record_timeline}; }

  planned_batch finish(const prepared& p, dip::plan made, std::chrono::steady_clock::time_point start) const {
    return snapshot().finish(p, std::move(made), start);
  }

  prepared prepare(const std::vector<packed_microbatch>& batch, std::string_view schedule, std::uint64_t index) const {
    require(!batch.empty(), errc::invalid_argument, "batch", "has no microbatches");
    prepared p;
    p.schedule = std::string(schedule);
    p.entry = schedules_.at(schedule);
    p.index = index;
    const placed where = placement_for(p.entry, &batch);
    p.placement_name = where.name;

    auto start = std::chrono::steady_clock::now();
    p.split = split_batch(batch, model_, *where.policy, costs_);
    p.work = to_batch_work(p.split);
    p.split_ms = detail::milliseconds_since(start);

    start = std::chrono::steady_clock::now();
    p.planner_options = dip_options(
        weight_bytes_per_rank(model_, where.place, cluster_.tp, cluster_.bytes_per_parameter), p.entry, index);
    p.graph = std::make_shared<const stage_graph>(
        build_stage_graph(model_, where.place, p.work, costs_, {.split_backward = p.entry.split_backward}));
    p.graph_ms = detail::milliseconds_since(start);
    return p;
  }

  // The DIP planner's options for one batch: the cap for a schedule that plans within it (or for
  // any schedule when nothing is fitted afterwards), the search budget and seed for batch `index`.
  dip_planner_options dip_options(std::vector<bytes> weights, const schedule_entry& entry, std::uint64_t index) const {
    dip_planner_options o;
    o.memory_cap = entry.plans_within_cap || !options_.fit_memory ? std::optional(cluster_.cap()) : std::nullopt;
    o.weight_memory = std::move(weights);
    o.comm = cluster_.comm();
    o.search_ms = options_.search_ms;
    o.search_rollouts = options_.search_rollouts;
    o.threads = options_.threads;
    o.seed = options_.seed + index;
    o.memory_strategies = options_.memory_strategies;
    return o;
  }

  // partition_modalities' options for this run; one_chunk: every chain one chunk per rank.
  partition_options modality_options(bool one_chunk) const {
    partition_options o;
    o.ranks = cluster_.pp;
    o.memory = cluster_.weight_rule();
    if (options_.sub_microbatch_size > 0) {
      // B counts images (or clips) per sub-microbatch: fixed for the chains that split those;
      // text chains keep the partitioner's choice.
      for (const module_spec& m : model_.modules()) {
        const item_kind kind = module_item_kind(model_, m.id);
        if (kind == item_kind::image || kind == item_kind::clip)
          o.sub_microbatch_size[m.name] = options_.sub_microbatch_size;
      }
    }
    const std::size_t k = one_chunk ? 1 : options_.segments_per_rank;
    if (k > 0) {
      for (const module_spec& m : model_.modules()) o.segments_per_rank[m.name] = k;
    }
    return o;
  }

  // The K-tuned modality-aware partition (cache_->mutex held).
  const modality_partition& modality_locked(const std::vector<packed_microbatch>* first_batch) const {
    if (cache_->modality) return *cache_->modality;
    if (options_.segments_per_rank > 0 || !options_.tune_segments) {
      cache_->modality = partition_modalities(model_, costs_, modality_options(false));
      return *cache_->modality;
    }
    std::vector<std::vector<packed_microbatch>> samples = options_.tuning_batches;
    if (samples.empty()) {
      require(first_batch != nullptr, errc::invalid_argument, "planner",
              "tuning K per chain needs sample batches: give planner_options::tuning_batches, or plan a batch first");
      samples.push_back(*first_batch);
    }
    segment_tuning tuned = tune_segments_per_rank(model_, costs_, modality_options(false), samples,
                                                  {.memory_cap = cluster_.cap(),
                                                   .weight_memory = {},
                                                   .comm = cluster_.comm(),
                                                   .memory_strategies = options_.memory_strategies});
    std::vector<std::size_t> chosen;
    for (const chain_group& g : tuned.partition.groups) chosen.push_back(g.segments_per_rank);
    if (chosen != tuned.trials.front().segments_per_rank)
      cache_->rule_segments = tuned.trials.front().segments_per_rank;
    cache_->modality = std::move(tuned.partition);
    return *cache_->modality;
  }

  // Per module, the work of the microbatch the balanced partition is balanced for: with balance
  // "batch", the mean microbatch of the tuning batches, else of the first batch planned; else (or
  // planning without a batch) the uniform microbatch. Balancing for the data the run trains on
  // makes it the best static partition there: a uniform 8192-token microbatch weighs the backbone
  // far off from a trace whose packed sequences hold 1200 tokens.
  std::vector<work_unit> typical_microbatch_work(const std::vector<packed_microbatch>* first_batch) const {
    std::vector<work_unit> mean(model_.modules().size());
    std::vector<std::vector<packed_microbatch>> batches;
    if (options_.balance == "batch") batches = options_.tuning_batches;
    if (options_.balance == "batch" && batches.empty() && first_batch != nullptr) batches.push_back(*first_batch);
    std::size_t count = 0;
    for (const std::vector<packed_microbatch>& batch : batches) {
      const batch_work work = to_batch_work(split_batch(batch, model_, unsplit_, costs_));
      for (const microbatch_work& mb : work.microbatches) {
        for (std::size_t m = 0; m < mb.modules.size() && m < mean.size(); ++m) {
          for (const work_unit& w : mb.modules[m]) mean[m] += w;
        }
        ++count;
      }
    }
    for (std::size_t m = 0; m < mean.size(); ++m) {
      if (count == 0 || mean[m].empty()) {
        mean[m] = uniform_module_work(model_, model_.modules()[m]);
      } else {
        const double n = double(count);
        mean[m] = {mean[m].sequences / n, mean[m].tokens / n, mean[m].token_pairs / n, mean[m].context_tokens / n,
                   mean[m].context_pairs / n};
      }
    }
    return mean;
  }

  placed placement_for(const schedule_entry& entry, const std::vector<packed_microbatch>* first_batch) const {
    std::lock_guard lock(cache_->mutex);
    if (entry.placement == schedule_placement::modality_one_chunk) {
      // Optimus keeps the backbone a plain pipeline: one chunk per rank for every chain.
      if (!cache_->one_chunk) cache_->one_chunk = partition_modalities(model_, costs_, modality_options(true));
      return {cache_->one_chunk->placement, &cache_->one_chunk->policy, "optimus"};
    }
    if (entry.placement == schedule_placement::modality || options_.partition == "dip") {
      const modality_partition& m = modality_locked(first_batch);
      return {m.placement, &m.policy, "dip"};
    }
    const std::size_t v = entry.chunks_per_rank == 0 ? options_.interleaved_chunks : entry.chunks_per_rank;
    const std::pair key{v, entry.order};
    auto found = cache_->classic.find(key);
    if (found == cache_->classic.end()) {
      const std::vector<work_unit> typical = typical_microbatch_work(first_batch);
      const auto work_of = [&](const module_spec& m) { return typical[m.id.index()]; };
      found =
          cache_->classic
              .emplace(key, options_.partition == "megatron"
                                ? megatron_partition(model_, cluster_.pp, int(v), cluster_.weight_rule(), entry.order)
                                : balanced_partition(model_, costs_, work_of, cluster_.pp, int(v),
                                                     cluster_.weight_rule(), entry.order))
              .first;
    }
    return {found->second, &unsplit_, options_.partition == "megatron" ? "megatron" : "balanced"};
  }

  async_planner<planned_batch>& async() {
    if (!async_) async_ = std::make_unique<async_planner<planned_batch>>(options_.async, nullptr, nullptr);
    return *async_;
  }

  multimodal_model model_;
  Costs costs_;
  cluster_spec cluster_;
  planner_options options_;
  schedule_registry schedules_;
  sub_microbatch_policy unsplit_;  // what the classic placements split: nothing
  std::shared_ptr<detail::planner_cache> cache_;
  // Last: destroyed first, joining its workers while everything they use still exists.
  std::unique_ptr<async_planner<planned_batch>> async_;
};

// A planner for a preset: its model, the analytic cost model of its GPU and TP, its cluster
// (PP, TP, GPU), `options` for the rest.
inline planner<analytic_cost_model> make_planner(const model_preset& preset, planner_options options = {}) {
  const cluster_spec cluster = cluster_of(preset);
  return planner<analytic_cost_model>(preset.model, analytic_cost_model(cluster.gpu, cluster.tp), cluster,
                                      std::move(options));
}

}  // namespace dip
