// The reference executor's core on the exact CPU backend: every layer's hand-written backward
// (I and W apart) against finite differences; every parameter gradient of 1F1B, GPipe,
// interleaved, ZB1P and DIP plans (with recompute and offload) bit-identical to the sequential
// run on tiny-vlm and tiny-t2v with uneven sub-microbatches; deadlocks and failing ranks end
// in errors, never hangs; and recompute/offload lower the peak activation memory.
#include <doctest/doctest.h>

#include <random>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <dip/cost/analytic.hpp>
#include <dip/exec/cpu_transport.hpp>
#include <dip/exec/executor.hpp>
#include <dip/exec/layers.hpp>
#include <dip/exec/reference.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/contiguous_placement.hpp>
#include <dip/planner/dip_planner.hpp>
#include <dip/planner/planner.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/build_stage_graph.hpp>

namespace {

using dip::exec::tensor;

// Finite differences of L = sum(Y .* R) against the layer's backward: input, context, weights.
void check_layer(const dip::module_spec& module, std::size_t index, std::int64_t context_width) {
  INFO("module '" << module.name << "' layer " << index);
  const auto l = dip::exec::make_layer(module, index, context_width);
  const dip::exec::sequence_lengths lengths{3, 2};
  const tensor x = dip::exec::random_tensor(5, l->input_width(), 1.0, 11);
  const tensor c = context_width > 0 ? dip::exec::random_tensor(1, context_width, 1.0, 12) : tensor();
  const tensor r = dip::exec::random_tensor(5, l->output_width(), 1.0, 13);
  const auto loss = [&](const tensor& xx, const tensor& cc) {
    dip::exec::layer_tape tape;
    return l->forward(xx, cc, lengths, tape).cwiseProduct(r).sum();
  };
  dip::exec::layer_tape tape;
  l->forward(x, c, lengths, tape);
  tensor dc = tensor::Zero(c.rows(), c.cols());
  std::vector<dip::exec::weight_job> jobs;
  const tensor dx = l->backward_input(tape, c, r, dc, jobs);
  const std::vector<tensor> dw = dip::exec::backward_weight(*l, jobs);
  const double h = 1e-6;
  const auto numeric = [&](tensor& value, auto&& f) {
    tensor g(value.rows(), value.cols());
    for (std::int64_t i = 0; i < value.size(); ++i) {
      const double keep = value.data()[i];
      value.data()[i] = keep + h;
      const double up = f();
      value.data()[i] = keep - h;
      const double down = f();
      value.data()[i] = keep;
      g.data()[i] = (up - down) / (2 * h);
    }
    return g;
  };
  tensor xv = x, cv = c;
  const auto f = [&] { return loss(xv, cv); };
  CHECK(dip::exec::max_abs_difference(dx, numeric(xv, f)) < 1e-6 * (1 + dx.cwiseAbs().maxCoeff()));
  if (context_width > 0)
    CHECK(dip::exec::max_abs_difference(dc, numeric(cv, f)) < 1e-6 * (1 + dc.cwiseAbs().maxCoeff()));
  for (std::size_t p = 0; p < l->parameters().size(); ++p) {
    INFO("parameter " << l->parameters()[p].name);
    const tensor expected = numeric(l->parameters()[p].value, f);
    CHECK(dip::exec::max_abs_difference(dw[p], expected) < 1e-6 * (1 + expected.cwiseAbs().maxCoeff()));
    CHECK(dw[p].cwiseAbs().maxCoeff() > 0);  // every parameter is used
  }
}

dip::module_spec module_of(std::vector<dip::layer_spec> layers) {
  dip::module_spec m;
  m.name = "m";
  m.layers = std::move(layers);
  m.id = dip::module_id::from_index(0);
  return m;
}

// Microbatches with uneven sub-microbatches for a three-module model: the encoder (module 0)
// and its projector (module 1) split alike, the consumer (module 2) split its own way.
dip::batch_work uneven_batch(std::size_t microbatches) {
  dip::batch_work batch;
  for (std::size_t j = 0; j < microbatches; ++j) {
    dip::microbatch_work mb;
    mb.modules.resize(3);
    const std::size_t encoder_subs = 1 + j % 3;
    for (std::size_t s = 0; s < encoder_subs; ++s) {
      const double tokens = double(6 + 5 * ((j + 2 * s) % 4));
      mb.modules[0].push_back(dip::work_unit::sequences_of(double(1 + s % 2), tokens / double(1 + s % 2)));
      mb.modules[1].push_back(dip::work_unit::sequences_of(1, double(1 + (j + s) % 3)));
    }
    const std::size_t consumer_subs = 1 + encoder_subs % 2;  // never the encoder's count
    for (std::size_t s = 0; s < consumer_subs; ++s) {
      mb.modules[2].push_back(dip::work_unit::sequences_of(double(1 + s), double(8 + 4 * ((j + s) % 3))));
    }
    batch.microbatches.push_back(std::move(mb));
  }
  return batch;
}

// uneven_batch's shape with random sizes: 1-3 encoder sub-microbatches (projector alike), the
// consumer split its own way, random tokens.
dip::batch_work random_uneven_batch(std::mt19937_64& rng) {
  const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  dip::batch_work batch;
  const int microbatches = pick(1, 6);
  for (int j = 0; j < microbatches; ++j) {
    dip::microbatch_work mb;
    mb.modules.resize(3);
    const int encoder_subs = pick(1, 3);
    for (int s = 0; s < encoder_subs; ++s) {
      const double sequences = pick(1, 2);
      mb.modules[0].push_back(dip::work_unit::sequences_of(sequences, double(pick(2, 12))));
      mb.modules[1].push_back(dip::work_unit::sequences_of(1, double(pick(1, 4))));
    }
    const int consumer_subs = pick(1, 2);
    for (int s = 0; s < consumer_subs; ++s) {
      mb.modules[2].push_back(dip::work_unit::sequences_of(double(pick(1, 2)), double(pick(4, 16))));
    }
    batch.microbatches.push_back(std::move(mb));
  }
  return batch;
}

struct tiny_setup {
  dip::model_preset preset;
  dip::analytic_cost_model costs{dip::find_gpu("H800"), 1};
  dip::batch_work batch = uneven_batch(8);
  explicit tiny_setup(const std::string& name) : preset(dip::find_preset(name)) {}

  std::shared_ptr<const dip::stage_graph> classic_graph(const dip::batch_work& b, int chunks_per_rank,
                                                        bool split) const {
    const dip::placement p = dip::sequential_placement(
        preset.model, costs, [](const dip::module_spec&) { return dip::work_unit::sequence(16); }, 4, chunks_per_rank);
    return std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(preset.model, p, b, costs, {.split_backward = split}));
  }

  // DIP's placement over `ranks` as dip::planner makes it (the partitioner's K).
  dip::placement dip_placement(int ranks) const {
    dip::cluster_spec cluster;  // TP 1 on H800s, as `costs` prices
    cluster.pp = ranks;
    dip::planner_options o;
    o.tune_segments = false;
    const dip::planner planner(preset.model, costs, cluster, o);
    return planner.placement_of("dip");
  }

  std::shared_ptr<const dip::stage_graph> dip_graph() const {
    return std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(preset.model, dip_placement(4), batch, costs));
  }
};

void check_bitwise_equal(const dip::exec::step_result& got, const dip::exec::step_result& want) {
  CHECK(got.loss == want.loss);
  REQUIRE(got.gradients.size() == want.gradients.size());
  std::size_t compared = 0;
  for (const auto& [key, grads] : want.gradients) {
    const auto it = got.gradients.find(key);
    REQUIRE(it != got.gradients.end());
    REQUIRE(it->second.size() == grads.size());
    for (std::size_t p = 0; p < grads.size(); ++p) {
      INFO("module " << key.first << " layer " << key.second << " parameter " << p);
      CHECK(dip::exec::bitwise_equal(it->second[p], grads[p]));
      ++compared;
    }
  }
  CHECK(compared > 50);
}

// Sets every F's strategy in turn to keep, recompute, offload.
dip::plan with_mixed_strategies(dip::plan p) {
  int next = 0;
  for (auto& list : p.ranks) {
    for (dip::action& a : list) {
      if (a.kind == dip::action_kind::compute && p.graph->at(a.stage).kind == dip::stage_kind::forward) {
        a.strategy = dip::memory_strategy(next++ % 3);
      }
    }
  }
  return p;
}

}  // namespace

TEST_CASE("every executable layer's backward (input and weights apart) matches finite differences") {
  check_layer(module_of({dip::transformer_block{8, 12, 2, 2, true}}), 0, 0);
  check_layer(module_of({dip::transformer_block{8, 12, 2, 2, false}}), 0, 6);  // a first layer with context
  check_layer(module_of({dip::linear_layer{4, 8}, dip::dit_block{8, 12, 2, 2, false}}), 1, 6);
  check_layer(module_of({dip::linear_layer{7, 5}}), 0, 3);
  check_layer(module_of({dip::embedding{9, 6}}), 0, 0);
  check_layer(module_of({dip::projector{10, 7, 6}}), 0, 4);
  check_layer(module_of({dip::linear_layer{4, 6}, dip::lm_head{11, 6}}), 1, 0);
}

TEST_CASE("an opaque layer is not executable: the error names the module and layer") {
  dip::module_spec m = module_of({dip::linear_layer{4, 4}, dip::opaque_layer{"mystery", 10, 4}});
  m.name = "enc";
  CHECK_THROWS_WITH_AS(dip::exec::make_layer(m, 1, 0), doctest::Contains("module 'enc' layer 1"), dip::error);
}

TEST_CASE("the cpu transport matches per peer in order and names both ranks on a wrong tag or shape") {
  dip::exec::cpu_fabric fabric(2, std::chrono::milliseconds(200));
  dip::exec::cpu_transport t0(fabric, 0), t1(fabric, 1);
  t0.send(1, 5, {tensor::Ones(2, 3)});
  t0.send(1, 6, {tensor::Ones(1, 1)});
  const std::vector<dip::exec::tensor_shape> shape{{2, 3}};
  CHECK_THROWS_WITH_AS(t1.recv(0, 6, {}),
                       doctest::Contains("rank 1 receiving from rank 0: expected message 6, the next from rank 0 is 5"),
                       dip::error);
  CHECK_THROWS_WITH_AS(t1.recv(0, 6, shape), doctest::Contains("has shapes [1x1], expected [2x3]"), dip::error);
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(t0.recv(1, 9, {}), doctest::Contains("rank 0 receiving from rank 1: timed out"), dip::error);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("classic plans give gradients bit-identical to the sequential run") {
  for (const std::string name : {"tiny-vlm", "tiny-t2v"}) {
    INFO(name);
    const tiny_setup setup(name);
    const dip::batch_work merged = dip::merge_sub_microbatches(setup.batch);
    const auto want = dip::exec::run_sequential(setup.preset.model, merged);
    CHECK(want.loss > 0);
    for (const auto& [schedule, chunks, split] :
         {std::tuple{"1f1b", 1, false}, {"gpipe", 1, false}, {"interleaved", 2, false}, {"zb1p", 1, true}}) {
      INFO(schedule);
      const auto graph = setup.classic_graph(merged, chunks, split);
      check_bitwise_equal(dip::exec::execute(dip::plan_baseline(schedule, graph), setup.preset.model, merged), want);
    }
    // Unmerged sub-microbatches on one chain: every stage runs all units of its microbatch.
    const auto graph = setup.classic_graph(setup.batch, 1, false);
    check_bitwise_equal(dip::exec::execute(dip::plan_baseline("1f1b", graph), setup.preset.model, setup.batch),
                        dip::exec::run_sequential(setup.preset.model, setup.batch));
  }
}

TEST_CASE("DIP plans with recompute and offload give gradients bit-identical to the sequential run") {
  for (const std::string name : {"tiny-vlm", "tiny-t2v"}) {
    INFO(name);
    const tiny_setup setup(name);
    const auto graph = setup.dip_graph();
    CHECK(graph->placement().chains.size() > 1);
    const auto stages = graph->stages();
    CHECK(std::any_of(stages.begin(), stages.end(), [](const dip::stage& s) { return s.sub > 0; }));
    dip::dip_planner_options options;
    options.search_rollouts = 8;
    const dip::plan planned = with_mixed_strategies(dip::plan_dip(graph, options));
    const auto got = dip::exec::execute(planned, setup.preset.model, setup.batch);
    check_bitwise_equal(got, dip::exec::run_sequential(setup.preset.model, setup.batch));
    CHECK(got.peak_offloaded_bytes.size() == 4);
  }
}

TEST_CASE("recompute and offload lower the peak activation bytes, and offload uses the host store") {
  const tiny_setup setup("tiny-vlm");
  const dip::batch_work merged = dip::merge_sub_microbatches(setup.batch);
  const dip::plan keep = dip::plan_baseline("gpipe", setup.classic_graph(merged, 1, false));
  const auto run_with = [&](dip::memory_strategy strategy) {
    dip::plan p = keep;
    for (auto& list : p.ranks) {
      for (dip::action& a : list) a.strategy = strategy;
    }
    return dip::exec::execute(p, setup.preset.model, merged);
  };
  const auto kept = run_with(dip::memory_strategy::keep);
  const auto recomputed = run_with(dip::memory_strategy::recompute);
  const auto offloaded = run_with(dip::memory_strategy::offload);
  for (std::size_t r = 0; r < 4; ++r) {
    INFO("rank " << r);
    CHECK(recomputed.peak_activation_bytes[r] < kept.peak_activation_bytes[r]);
    CHECK(offloaded.peak_activation_bytes[r] < kept.peak_activation_bytes[r]);
    CHECK(kept.peak_offloaded_bytes[r] == 0);
    CHECK(offloaded.peak_offloaded_bytes[r] > 0);
  }
  check_bitwise_equal(recomputed, kept);
  check_bitwise_equal(offloaded, kept);
}

TEST_CASE("broken plans and failing ranks end in errors naming the ranks, with every thread joined") {
  const tiny_setup setup("tiny-vlm");
  const dip::batch_work merged = dip::merge_sub_microbatches(setup.batch);
  const dip::plan good = dip::plan_baseline("1f1b", setup.classic_graph(merged, 1, false));
  const dip::exec::execute_options quick{.timeout = std::chrono::milliseconds(300), .before_action = {}};

  SUBCASE("a receive without a matching send") {
    dip::plan broken = good;
    auto& list = broken.ranks[0];
    list.erase(
        std::find_if(list.begin(), list.end(), [](const dip::action& a) { return a.kind == dip::action_kind::send; }));
    CHECK_THROWS_WITH_AS(dip::exec::execute(broken, setup.preset.model, merged, quick),
                         doctest::Contains("but rank 0 never sends it to rank 1"), dip::error);
  }
  SUBCASE("a cyclic wait times out") {
    // Rank 0 waits for its first gradient before sending its first activation: rank 1 waits
    // for that activation, so both block until the timeout.
    dip::plan broken = good;
    auto& list = broken.ranks[0];
    const auto recv =
        std::find_if(list.begin(), list.end(), [](const dip::action& a) { return a.kind == dip::action_kind::recv; });
    const dip::action moved = *recv;
    list.erase(recv);
    list.insert(list.begin(), moved);
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH_AS(dip::exec::execute(broken, setup.preset.model, merged, quick),
                         doctest::Contains("timed out after 300 ms"), dip::error);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  }
  SUBCASE("a rank whose compute throws") {
    dip::exec::execute_options failing = quick;
    failing.before_action = [](dip::rank_id rank, const dip::action& a) {
      if (rank.index() == 2 && a.kind == dip::action_kind::compute)
        throw dip::error(dip::errc::invalid_argument, "rank 2", "injected failure");
    };
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH_AS(dip::exec::execute(good, setup.preset.model, merged, failing),
                         doctest::Contains("injected failure"), dip::error);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  }
}

TEST_CASE(
    "property: DIP plans of random batches, ranks and strategies give gradients bit-identical to the sequential run") {
  std::mt19937_64 rng(20261121);
  int executed = 0;
  for (int c = 0; c < 24; ++c) {
    CAPTURE(c);
    const std::string name = c % 2 == 0 ? "tiny-vlm" : "tiny-t2v";
    CAPTURE(name);
    const tiny_setup setup(name);
    const dip::batch_work batch = random_uneven_batch(rng);
    const int ranks = std::uniform_int_distribution<int>(2, 4)(rng);
    CAPTURE(ranks);
    const auto graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(setup.preset.model, setup.dip_placement(ranks), batch, setup.costs));
    dip::dip_planner_options options;
    options.search_rollouts = std::size_t(rng() % 16);
    options.seed = rng();
    dip::plan planned = dip::plan_dip(graph, options);
    for (auto& list : planned.ranks) {
      for (dip::action& a : list) {
        if (a.kind == dip::action_kind::compute && graph->at(a.stage).kind == dip::stage_kind::forward) {
          a.strategy = dip::memory_strategy(rng() % 3);
        }
      }
    }
    check_bitwise_equal(dip::exec::execute(planned, setup.preset.model, batch),
                        dip::exec::run_sequential(setup.preset.model, batch));
    ++executed;
  }
  CHECK(executed == 24);
}
