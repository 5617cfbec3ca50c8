// The action-list export (dip/io/plan_export.hpp): random plans round-trip through the JSON
// field by field and read back valid; message tensors and wait points are the documented ones;
// malformed documents are refused with the JSON path of the fault. Plans with a batch (items):
// tests/test_executable_plan.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <dip/cost/fixed_table.hpp>
#include <dip/io/plan_export.hpp>
#include <dip/model/model.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/stage_graph.hpp>
#include <dip/schedule/validate.hpp>
#include <dip/sim/simulator.hpp>

#include "plan_file_support.hpp"
#include "plan_test_support.hpp"

using namespace dip::literals;

namespace {

// A module of `layers` opaque layers handing on `width` features per token.
dip::module_spec module_of_width(const std::string& name, std::size_t layers, std::int64_t width) {
  dip::module_spec m = dip_test::opaque_module(name, layers);
  for (dip::layer_spec& l : m.layers) std::get<dip::opaque_layer>(l).output_features = width;
  return m;
}

// A random model, placement (one chain, or one per module), batch with sub-microbatches, a
// random valid order, and random memory strategies on some forwards.
struct random_case {
  dip::multimodal_model model;
  dip::batch_work batch;
  dip::plan plan;
};

class case_maker {
 public:
  explicit case_maker(std::uint64_t seed) : rng_(seed) {}

  random_case make() {
    const dip_test::random_module_graph shape = dip_test::random_module_graph_of(rng_);
    dip::model_builder builder("random");
    dip::fixed_cost_table costs;
    for (const std::string& n : shape.names) {
      const std::size_t layers = std::size_t(integer(1, 6));
      builder.add(module_of_width(n, layers, integer(0, 3) * 64));
      std::vector<dip::fixed_layer_cost> per_layer;
      for (std::size_t i = 0; i < layers; ++i) {
        per_layer.push_back({{dip::milliseconds(uniform(0.1, 3)), dip::milliseconds(uniform(0.1, 3)),
                              dip::milliseconds(uniform(0.1, 3)), dip::mib(uniform(1, 500)), dip::mib(uniform(0, 50))},
                             integer(0, 1) * 100.0});
      }
      costs.set(n, per_layer);
    }
    for (const auto& [from, to] : shape.edges) builder.connect(from, to);
    random_case out{builder.build(), {}, {}};
    const dip::placement placement = dip_test::random_placement(out.model, 5, rng_);
    out.batch = dip_test::random_batch(out.model, rng_,
                                       [](std::mt19937_64& r) { return double(dip_test::random_int(r, 10, 500)); });
    auto graph = std::make_shared<const dip::stage_graph>(
        dip::build_stage_graph(out.model, placement, out.batch, costs, {.split_backward = integer(0, 1) == 1}));
    out.plan = dip::make_plan(graph, dip_test::random_order(*graph, rng_));
    for (auto& list : out.plan.ranks) {
      for (dip::action& a : list) {
        if (a.kind == dip::action_kind::compute && graph->at(a.stage).kind == dip::stage_kind::forward) {
          a.strategy = static_cast<dip::memory_strategy>(integer(0, 2));
        }
      }
    }
    return out;
  }

 private:
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }

  std::mt19937_64 rng_;
};

// Field-by-field equality of two exported plans, graph included.
void check_same(const dip::exported_plan& a, const dip::exported_plan& b) {
  CHECK(a.schedule_name == b.schedule_name);
  CHECK(a.iteration == b.iteration);
  CHECK(a.module_names == b.module_names);
  CHECK(a.model == b.model);
  CHECK(a.batch == b.batch);
  CHECK(a.tensors == b.tensors);
  CHECK(a.schedule.ranks == b.schedule.ranks);
  const dip::stage_graph& g = *a.schedule.graph;
  const dip::stage_graph& h = *b.schedule.graph;
  CHECK(g.ranks() == h.ranks());
  CHECK(g.split_backward() == h.split_backward());
  CHECK(g.microbatch_count() == h.microbatch_count());
  const dip::placement &p = g.placement(), &q = h.placement();
  REQUIRE(p.chunks.size() == q.chunks.size());
  for (std::size_t c = 0; c < p.chunks.size(); ++c) {
    CHECK(p.chunks[c].spans == q.chunks[c].spans);
    CHECK(p.chunks[c].rank == q.chunks[c].rank);
    CHECK(p.chunks[c].chain == q.chunks[c].chain);
    CHECK(p.chunks[c].position == q.chunks[c].position);
  }
  CHECK(p.chains == q.chains);
  CHECK(p.chain_inputs == q.chain_inputs);
  REQUIRE(g.size() == h.size());
  for (std::size_t s = 0; s < g.size(); ++s) {
    const dip::stage &x = g.stages()[s], &y = h.stages()[s];
    CHECK(x.kind == y.kind);
    CHECK(x.chunk == y.chunk);
    CHECK(x.microbatch == y.microbatch);
    CHECK(x.sub == y.sub);
    CHECK(x.rank == y.rank);
    CHECK(x.time == y.time);
    CHECK(x.memory_delta == y.memory_delta);
    CHECK(x.output == y.output);
  }
  REQUIRE(g.edges().size() == h.edges().size());
  for (std::size_t e = 0; e < g.edges().size(); ++e) {
    CHECK(g.edges()[e].from == h.edges()[e].from);
    CHECK(g.edges()[e].to == h.edges()[e].to);
    CHECK(g.edges()[e].size == h.edges()[e].size);
  }
  for (std::size_t j = 0; j < g.microbatch_count(); ++j) {
    for (std::size_t k = 0; k < p.chains.size(); ++k) CHECK(g.sub_count(j, k) == h.sub_count(j, k));
  }
}

// A small fixed plan and its document, for the malformed-input cases: vit (2 layers of width
// 32) -> lm (2 layers of width 64) on 2 ranks, one chain per module, 2 microbatches.
struct fixture {
  dip::multimodal_model model;
  dip::batch_work batch;
  dip::exported_plan file;
  nlohmann::json doc;
};

fixture make_fixture() {
  fixture f{dip::model_builder("vlm")
                .add(module_of_width("vit", 2, 32))
                .add(module_of_width("lm", 2, 64))
                .connect("vit", "lm")
                .build(),
            {},
            {},
            {}};
  dip::fixed_cost_table costs;
  costs.set_uniform("vit", 2, {{1_ms, 1_ms, 1_ms, dip::mib(10), dip::mib(1)}, 100});
  costs.set_uniform("lm", 2, {{2_ms, 2_ms, 2_ms, dip::mib(20), dip::mib(2)}, 100});
  dip::placement p;
  p.ranks = 2;
  const auto vit = f.model.at("vit"), lm = f.model.at("lm");
  const auto r = [](int k) { return dip::rank_id::from_index(std::size_t(k)); };
  p.chunks = {
      {{{vit, 0, 1}}, r(0), 0, 0}, {{{vit, 1, 2}}, r(1), 0, 1}, {{{lm, 0, 1}}, r(0), 1, 0}, {{{lm, 1, 2}}, r(1), 1, 1}};
  p.chains = {{dip::chunk_id(0), dip::chunk_id(1)}, {dip::chunk_id(2), dip::chunk_id(3)}};
  p.chain_inputs = {{}, {0}};
  const auto seq = [](double n) { return dip::work_unit::sequence(n); };
  // Microbatch 0: the vit runs 2 sub-microbatches (100 and 60 tokens), the lm 1 (300 tokens).
  f.batch.microbatches.push_back({{{seq(100), seq(60)}, {seq(300)}}});
  f.batch.microbatches.push_back({{{seq(80)}, {seq(200)}}});
  auto graph = std::make_shared<const dip::stage_graph>(dip::build_stage_graph(f.model, p, f.batch, costs));
  std::mt19937_64 rng(3);
  f.file = dip::export_plan(dip::make_plan(graph, dip_test::random_order(*graph, rng)), f.model, f.batch, "test", 2);
  f.doc = dip::plan_to_json(f.file);
  return f;
}

// Index of the first action of rank r with op `op`.
std::size_t first_op(const nlohmann::json& doc, std::size_t r, const std::string& op) {
  const nlohmann::json& actions = doc["ranks"][r]["actions"];
  for (std::size_t i = 0; i < actions.size(); ++i) {
    if (actions[i]["op"] == op) return i;
  }
  FAIL("no " << op << " on rank " << r);
  return 0;
}

}  // namespace

TEST_CASE("random plans round-trip through the action-list JSON, field by field, and read back valid") {
  case_maker maker(20260109);
  std::size_t actions = 0, messages = 0;
  for (int index = 0; index < 300; ++index) {
    CAPTURE(index);
    const random_case c = maker.make();
    const dip::exported_plan file = dip::export_plan(c.plan, c.model, c.batch, "random", index);
    const nlohmann::ordered_json doc = dip::plan_to_json(file);
    // Through text, as a file would go.
    const dip::exported_plan back = dip::plan_from_json(nlohmann::json::parse(dip::plan_json_text(doc)), "plan.json");
    check_same(file, back);
    CHECK(dip::plan_to_json(back) == doc);
    CHECK_FALSE(dip::first_violation(back.schedule).has_value());
    CHECK(dip::simulate(back.schedule).makespan == dip::simulate(c.plan).makespan);
    actions += c.plan.action_count();
    for (const auto& list : c.plan.ranks) {
      messages += std::size_t(std::count_if(list.begin(), list.end(),
                                            [](const dip::action& a) { return a.kind != dip::action_kind::compute; }));
    }
  }
  CHECK(messages > 0);
  MESSAGE("round-tripped " << actions << " actions (" << messages << " messages) over 300 random plans");
}

TEST_CASE("a plan file is written and read back") {
  const fixture f = make_fixture();
  const std::filesystem::path path = std::filesystem::temp_directory_path() / "dip_test_plan_export.json";
  dip::write_plan_file(path, f.file);
  const dip::exported_plan back = dip::read_plan_file(path);
  check_same(f.file, back);
  std::filesystem::remove(path);
  CHECK_THROWS_AS(dip::read_plan_file(path), dip::error);
}

TEST_CASE("messages carry the live tensors' rows x features, and a receive waits before its consumer") {
  const fixture f = make_fixture();
  const dip::stage_graph& g = *f.file.schedule.graph;
  const auto edge_between = [&](dip::stage_id from, dip::stage_id to) {
    for (std::size_t e = 0; e < g.edges().size(); ++e) {
      if (g.edges()[e].from == from && g.edges()[e].to == to) return e;
    }
    FAIL("no edge");
    return std::size_t(0);
  };
  using dip::chunk_id;
  using dip::stage_kind;
  const auto tensor = [](std::size_t module, dip::tensor_kind kind, std::int64_t rows, std::int64_t features) {
    return std::vector<dip::message_tensor>{{dip::module_id::from_index(module), kind, rows, features, {}}};
  };
  using dip::tensor_kind;
  // No batch: rows from the work, no items. vit sub 1 of microbatch 0 (60 tokens) along its
  // chain: its state, 60 x 32, and the same back.
  CHECK(f.file.tensors[edge_between(g.find(stage_kind::forward, chunk_id(0), 0, 1),
                                    g.find(stage_kind::forward, chunk_id(1), 0, 1))] ==
        tensor(0, tensor_kind::state, 60, 32));
  CHECK(f.file.tensors[edge_between(g.find(stage_kind::backward, chunk_id(1), 0, 1),
                                    g.find(stage_kind::backward, chunk_id(0), 0, 1))] ==
        tensor(0, tensor_kind::state, 60, 32));
  // Into the lm (one sub-microbatch): the whole output of each vit sub-microbatch.
  CHECK(f.file.tensors[edge_between(g.find(stage_kind::forward, chunk_id(1), 0, 0),
                                    g.find(stage_kind::forward, chunk_id(2), 0))] ==
        tensor(0, tensor_kind::output, 100, 32));
  CHECK(f.file.tensors[edge_between(g.find(stage_kind::backward, chunk_id(2), 0),
                                    g.find(stage_kind::backward, chunk_id(1), 0, 1))] ==
        tensor(0, tensor_kind::output, 60, 32));
  // Along the lm: 300 x 64 in microbatch 0, 200 x 64 in microbatch 1; the loss edge carries nothing.
  CHECK(f.file.tensors[edge_between(g.find(stage_kind::forward, chunk_id(2), 0),
                                    g.find(stage_kind::forward, chunk_id(3), 0))] ==
        tensor(1, tensor_kind::state, 300, 64));
  CHECK(f.file.tensors[edge_between(g.find(stage_kind::forward, chunk_id(2), 1),
                                    g.find(stage_kind::forward, chunk_id(3), 1))] ==
        tensor(1, tensor_kind::state, 200, 64));
  CHECK(f.file
            .tensors[edge_between(g.find(stage_kind::forward, chunk_id(3), 1),
                                  g.find(stage_kind::backward, chunk_id(3), 1))]
            .empty());
  CHECK(f.doc["batch"].is_null());

  // Every message names its edge as tag, the other end's rank as peer; every receive waits before
  // the compute of its consumer.
  for (std::size_t r = 0; r < f.doc["ranks"].size(); ++r) {
    const nlohmann::json& actions = f.doc["ranks"][r]["actions"];
    for (std::size_t i = 0; i < actions.size(); ++i) {
      const nlohmann::json& a = actions[i];
      if (a["op"] == "compute") continue;
      CHECK(a["tag"] == a["edge"]);
      CHECK(a["tensors"] == f.doc["edges"][a["edge"].get<std::size_t>()]["tensors"]);
      const dip::stage_edge& e = g.edges()[a["edge"].get<std::size_t>()];
      CHECK(a["peer"] == g.at(a["op"] == "send" ? e.to : e.from).rank.value());
      if (a["op"] == "recv") {
        const nlohmann::json& consumer = actions[a["wait_before"].get<std::size_t>()];
        CHECK(a["wait_before"].get<std::size_t>() > i);
        CHECK(consumer["op"] == "compute");
        CHECK(consumer["stage"] == e.to.value());
      }
    }
  }
  CHECK(f.doc["format"] == "dip.plan");
  CHECK(f.doc["version"] == dip::plan_export_version);
  CHECK(f.doc["placement"]["chunks"][2]["spans"][0] ==
        nlohmann::json{{"module", "lm"}, {"first_layer", 0}, {"last_layer", 0}});
}

TEST_CASE("malformed plan documents are refused, naming the JSON path") {
  const fixture f = make_fixture();
  const auto check_error = [&](nlohmann::json doc, dip::errc code, const std::string& where, const std::string& what) {
    const dip::error e = dip_test::read_error(doc);
    CHECK(e.code() == code);
    CHECK(e.where() == where);
    CHECK_MESSAGE(e.detail().find(what) != std::string::npos, e.what());
  };
  CHECK_NOTHROW(dip::plan_from_json(f.doc, "plan.json"));
  const std::size_t send = first_op(f.doc, 0, "send"), recv = first_op(f.doc, 1, "recv");
  const std::string at_send = "plan.json: ranks[0].actions[" + std::to_string(send) + "]";
  const std::string at_recv = "plan.json: ranks[1].actions[" + std::to_string(recv) + "]";

  SUBCASE("wrong version or format") {
    nlohmann::json doc = f.doc;
    doc["version"] = 1;
    check_error(doc, dip::errc::parse_error, "plan.json: version", "unsupported version 1");
    doc["version"] = 3;
    check_error(doc, dip::errc::parse_error, "plan.json: version", "unsupported version 3");
    doc = f.doc;
    doc["format"] = "torch";
    check_error(doc, dip::errc::parse_error, "plan.json: format", "expected 'dip.plan'");
  }
  SUBCASE("missing field") {
    nlohmann::json doc = f.doc;
    doc["ranks"][0]["actions"][send].erase("peer");
    check_error(doc, dip::errc::parse_error, at_send + ".peer", "required field is missing");
    doc = f.doc;
    doc["stages"][3].erase("time_s");
    check_error(doc, dip::errc::parse_error, "plan.json: stages[3].time_s", "required field is missing");
    doc = f.doc;
    doc.erase("split_backward");
    check_error(doc, dip::errc::parse_error, "plan.json: split_backward", "required field is missing");
    doc = f.doc;
    doc.erase("batch");
    check_error(doc, dip::errc::parse_error, "plan.json: batch", "required field is missing");
    doc = f.doc;
    doc["edges"][0].erase("tensors");
    check_error(doc, dip::errc::parse_error, "plan.json: edges[0].tensors", "required field is missing");
    doc = f.doc;
    doc["model"]["modules"][1]["layers"][0].erase("output_features");
    check_error(doc, dip::errc::parse_error, "plan.json: model.modules[1].layers[0].output_features",
                "required field is missing");
  }
  SUBCASE("wrong type") {
    nlohmann::json doc = f.doc;
    doc["stages"][0]["chunk"] = "zero";
    check_error(doc, dip::errc::parse_error, "plan.json: stages[0].chunk", "expected an integer");
    doc = f.doc;
    doc["ranks"][1]["actions"] = nlohmann::json::object();
    check_error(doc, dip::errc::parse_error, "plan.json: ranks[1].actions", "expected an array");
    doc = f.doc;
    doc["placement"]["chunks"][1]["spans"][0]["module"] = 1;
    check_error(doc, dip::errc::parse_error, "plan.json: placement.chunks[1].spans[0].module", "expected a string");
    doc = f.doc;
    doc["edges"][0]["tensors"] = 1;
    check_error(doc, dip::errc::parse_error, "plan.json: edges[0].tensors", "expected an array");
    doc = f.doc;
    doc["model"]["modules"][0]["item"] = "pixel";
    check_error(doc, dip::errc::parse_error, "plan.json: model.modules[0].item", "expected image, clip");
  }
  SUBCASE("unknown field") {
    nlohmann::json doc = f.doc;
    doc["ranks"][0]["actions"][0]["strategy_name"] = "keep";
    check_error(doc, dip::errc::parse_error, "plan.json: ranks[0].actions[0].strategy_name", "unknown field");
    doc = f.doc;
    doc["edges"][0]["tokens"] = 100;  // version 1's message fields are gone
    check_error(doc, dip::errc::parse_error, "plan.json: edges[0].tokens", "unknown field");
    doc = f.doc;
    doc["model"]["modules"][0]["modality"] = "image";
    check_error(doc, dip::errc::parse_error, "plan.json: model.modules[0].modality", "unknown field");
  }
  SUBCASE("dangling references") {
    nlohmann::json doc = f.doc;
    doc["ranks"][0]["actions"][send]["peer"] = 7;
    check_error(doc, dip::errc::parse_error, at_send + ".peer", "dangling peer: no rank 7");
    doc = f.doc;
    doc["ranks"][0]["actions"][send]["edge"] = 100000;
    check_error(doc, dip::errc::parse_error, at_send + ".edge", "expected an integer in [0, ");
    doc = f.doc;
    doc["ranks"][0]["actions"][0]["stage"] = 100000;
    check_error(doc, dip::errc::parse_error, "plan.json: ranks[0].actions[0].stage", "expected an integer in [0, ");
    doc = f.doc;
    doc["edges"][0]["to"] = 100000;
    check_error(doc, dip::errc::parse_error, "plan.json: edges[0].to", "expected an integer in [0, ");
    doc = f.doc;
    doc["placement"]["chunks"][0]["spans"][0]["module"] = "audio";
    check_error(doc, dip::errc::parse_error, "plan.json: placement.chunks[0].spans[0].module",
                "no module named 'audio'");
    doc = f.doc;
    doc["placement"]["chains"][1]["inputs"] = {5};
    check_error(doc, dip::errc::parse_error, "plan.json: placement.chains[1].inputs[0]", "expected a chain index");
  }
  SUBCASE("a field that disagrees with the table it repeats") {
    nlohmann::json doc = f.doc;
    doc["ranks"][0]["actions"][send]["tag"] = 12345;
    check_error(doc, dip::errc::parse_error, at_send + ".tag", "disagrees");
    doc = f.doc;
    doc["ranks"][1]["actions"][recv]["tensors"][0]["features"] = 1;
    check_error(doc, dip::errc::parse_error, at_recv + ".tensors", "disagrees with edges[");
    doc = f.doc;
    doc["model"]["modules"][1]["name"] = "llm";
    check_error(doc, dip::errc::parse_error, "plan.json: model.modules[1].name", "disagrees with modules[1]");
    doc = f.doc;
    doc["placement"]["chunks"][3]["spans"][0]["last_layer"] = 2;
    check_error(doc, dip::errc::parse_error, "plan.json: placement.chunks[3].spans[0].last_layer",
                "module 'lm' has 2 layers");
    doc = f.doc;
    doc["edges"][0]["tensors"][0]["items"] = {0};
    check_error(doc, dip::errc::parse_error, "plan.json: edges[0].tensors[0].items", "the plan has no batch");
    doc = f.doc;
    doc["ranks"][0]["actions"][0]["kind"] = "W";
    check_error(doc, dip::errc::parse_error, "plan.json: ranks[0].actions[0].kind", "disagrees with stages[");
    doc = f.doc;
    doc["ranks"][1]["actions"][recv]["wait_before"] = 0;
    check_error(doc, dip::errc::parse_error, at_recv + ".wait_before", "the message's consumer");
    doc = f.doc;
    doc["microbatches"] = 3;
    check_error(doc, dip::errc::parse_error, "plan.json: microbatches", "the stages have 2");
  }
  SUBCASE("stages out of build_stage_graph's layout") {
    nlohmann::json doc = f.doc;
    std::swap(doc["stages"][0], doc["stages"][1]);
    check_error(doc, dip::errc::parse_error, "plan.json: stages[0]", "out of place: expected F of chunk 0");
    doc = f.doc;
    doc["stages"][1]["rank"] = 1;
    check_error(doc, dip::errc::parse_error, "plan.json: stages[1]", "its chunk on rank 0");
  }
  SUBCASE("a plan the validator rejects") {
    nlohmann::json doc = f.doc;
    nlohmann::json& actions = doc["ranks"][0]["actions"];
    const auto backward = std::find_if(actions.begin(), actions.end(), [](const nlohmann::json& a) {
      return a["op"] == "compute" && a["kind"] == "B";
    });
    REQUIRE(backward != actions.end());
    (*backward)["strategy"] = "recompute";  // only forwards take a memory strategy
    const dip::error e = dip_test::read_error(doc);
    CHECK(e.code() == dip::errc::invalid_plan);
    CHECK(e.where() == "plan.json: rank 0 action " + std::to_string(backward - actions.begin()));
    CHECK_MESSAGE(e.detail().find("only forward stages take one") != std::string::npos, e.what());
  }
  SUBCASE("not JSON") {
    CHECK_THROWS_WITH_AS(dip::read_plan_file("/no/such/plan.json"), doctest::Contains("cannot open"), dip::error);
  }
}

TEST_CASE("export_plan refuses an invalid plan and a batch that is not the graph's") {
  fixture f = make_fixture();
  dip::plan broken = f.file.schedule;
  std::reverse(broken.ranks[0].begin(), broken.ranks[0].end());
  CHECK_THROWS_AS(dip::export_plan(broken, f.model, f.batch), dip::error);
  dip::batch_work short_batch = f.batch;
  short_batch.microbatches.pop_back();
  CHECK_THROWS_WITH(dip::export_plan(f.file.schedule, f.model, short_batch),
                    doctest::Contains("the batch has 1 microbatches, the plan's graph 2"));
}
