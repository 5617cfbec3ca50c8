// The torch.distributed.pipelining compute_only CSV export (dip/io/torch_schedule_csv.hpp):
// known schedules give exactly the published rows; every rule of PyTorch's _validate_schedule
// (and its send/recv lowering) has a failing case; plans the format cannot express are refused
// saying why.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <dip/cost/fixed_table.hpp>
#include <dip/io/torch_schedule_csv.hpp>
#include <dip/model/model.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/plan.hpp>
#include <dip/schedule/stage_graph.hpp>

#include "plan_test_support.hpp"

using namespace dip::literals;

namespace {

using rows_t = std::vector<std::vector<std::optional<dip::torch_action>>>;

const dip::layer_cost unit_cost{1_ms, 1_ms, 1_ms, dip::mib(1), dip::mib(1)};

// A baseline's schedule on the uniform p = 4 chain (one layer per chunk), m = 8.
dip::torch_schedule baseline(const std::string& name, std::vector<int> rank_of_chunk = {0, 1, 2, 3}) {
  const auto graph = dip_test::chain_graph(rank_of_chunk, 4, 8, unit_cost, name == "zb1p");
  return dip::to_torch_schedule(dip::plan_baseline(name, graph));
}

rows_t parse(const std::string& csv) { return dip::parse_torch_csv(csv, "schedule.csv"); }

// The first violation of `csv` on a p = 2 pipeline of `stages` stages and `microbatches` microbatches.
std::string violation(const std::string& csv, std::size_t stages = 2, std::size_t microbatches = 2) {
  const rows_t rows = parse(csv);
  std::optional<std::string> v = dip::torch_schedule_violation(rows, 2, stages, microbatches);
  if (!v) v = dip::torch_lowering_violation(rows, stages);
  REQUIRE(v.has_value());
  return *v;
}

bool valid(const std::string& csv, std::size_t stages = 2, std::size_t microbatches = 2) {
  const rows_t rows = parse(csv);
  return !dip::torch_schedule_violation(rows, 2, stages, microbatches) && !dip::torch_lowering_violation(rows, stages);
}

std::string refusal(const dip::plan& p) {
  try {
    dip::to_torch_schedule(p);
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::invalid_argument);
    CHECK(e.where() == "torch schedule");
    return e.detail();
  }
  FAIL("the plan was exported");
  return {};
}

}  // namespace

TEST_CASE("1F1B on 4 uniform stages, 8 microbatches: the published rows") {
  const dip::torch_schedule s = baseline("1f1b");
  CHECK(s.stages == 4);
  CHECK(s.microbatches == 8);
  CHECK(dip::to_torch_csv(s) == "0F0,0F1,0F2,0F3,0B0,0F4,0B1,0F5,0B2,0F6,0B3,0F7,0B4,0B5,0B6,0B7\n"
                                "1F0,1F1,1F2,1B0,1F3,1B1,1F4,1B2,1F5,1B3,1F6,1B4,1F7,1B5,1B6,1B7\n"
                                "2F0,2F1,2B0,2F2,2B1,2F3,2B2,2F4,2B3,2F5,2B4,2F6,2B5,2F7,2B6,2B7\n"
                                "3F0,3B0,3F1,3B1,3F2,3B2,3F3,3B3,3F4,3B4,3F5,3B5,3F6,3B6,3F7,3B7\n");
}

TEST_CASE("ZB1P (ZB-H1) on 4 uniform stages, 8 microbatches: the published rows") {
  const dip::torch_schedule s = baseline("zb1p");
  CHECK(s.microbatches == 8);
  CHECK(dip::to_torch_csv(s) ==
        "0F0,0F1,0F2,0F3,0I0,0W0,0F4,0I1,0W1,0F5,0I2,0W2,0F6,0I3,0W3,0F7,0I4,0W4,0I5,0W5,0I6,0W6,0I7,0W7\n"
        "1F0,1F1,1F2,1I0,1F3,1I1,1W0,1F4,1I2,1W1,1F5,1I3,1W2,1F6,1I4,1W3,1F7,1I5,1W4,1I6,1W5,1I7,1W6,1W7\n"
        "2F0,2F1,2I0,2F2,2I1,2F3,2I2,2W0,2F4,2I3,2W1,2F5,2I4,2W2,2F6,2I5,2W3,2F7,2I6,2W4,2I7,2W5,2W6,2W7\n"
        "3F0,3I0,3F1,3I1,3F2,3I2,3F3,3I3,3W0,3F4,3I4,3W1,3F5,3I5,3W2,3F6,3I6,3W3,3F7,3I7,3W4,3W5,3W6,3W7\n");
}

TEST_CASE("interleaved 1F1B: global stage index = the chunk's position, stage s on rank s mod p") {
  const dip::torch_schedule s = baseline("interleaved", {0, 1, 2, 3, 0, 1, 2, 3});
  CHECK(s.stages == 8);
  REQUIRE(s.rows.size() == 4);
  for (std::size_t r = 0; r < 4; ++r) {
    for (const auto& a : s.rows[r]) CHECK(a->stage % 4 == r);
  }
  CHECK(s.rows[0].front() == dip::torch_action{0, 'F', 0});
}

TEST_CASE("the CSV parses back to the same rows; idle cells are empty") {
  for (const char* name : {"gpipe", "1f1b", "zb1p"}) {
    CAPTURE(name);
    const dip::torch_schedule s = baseline(name);
    CHECK(parse(dip::to_torch_csv(s)) == s.rows);
  }
  const rows_t rows = parse("0F0,,0B0\r\n 1F0 , 1B0\n\n");
  REQUIRE(rows.size() == 3);
  CHECK(rows[0] == std::vector<std::optional<dip::torch_action>>{dip::torch_action{0, 'F', 0}, std::nullopt,
                                                                 dip::torch_action{0, 'B', 0}});
  CHECK(rows[1].size() == 2);
  CHECK(rows[2].empty());  // a rank with nothing to do
  CHECK(dip::to_string(dip::torch_action{12, 'W', 34}) == "12W34");
}

TEST_CASE("cells that are not compute actions are parse errors naming line and cell") {
  for (const char* cell : {"0SEND_F1", "1RECV_B0", "0UNSHARD", "F1", "0X1", "0F", "0F1x", "-1F0"}) {
    CAPTURE(cell);
    CHECK_THROWS_WITH_AS(parse(std::string("0F0,") + cell), doctest::Contains("schedule.csv: line 1, cell 2"),
                         dip::error);
  }
}

TEST_CASE("PyTorch's rules: valid schedules pass, each rule has a failing case") {
  // Two stages on two ranks, two microbatches; full backward, and split into I and W.
  CHECK(valid("0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1"));
  CHECK(valid("0F0,0F1,0I0,0W0,0I1,0W1\n1F0,1I0,1F1,1I1,1W0,1W1"));
  CHECK(valid("0F0,0F1,0I0,0I1,0W1,0W0\n1F0,1B0,1F1,1B1"));  // B on one stage, I + W on another
  CHECK(valid("0F0,,0F1,0B0,0B1\n,1F0,1B0,1F1,1B1"));        // idle steps

  CHECK(violation("0F0,0F1,0B0,0B1") == "the schedule has 1 rows (ranks), the pipeline 2");
  CHECK(violation("0F0,0F1,0B0,0B1\n2F0,1B0,1F1,1B1") == "rank 1 step 0 (2F0): stage 2 does not exist (2 stages)");
  CHECK(violation("0F0,0F2,0B0,0B1\n1F0,1B0,1F1,1B1") ==
        "rank 0 step 1 (0F2): microbatch 2 does not exist (2 microbatches)");
  CHECK(violation("0F0,0B1,0F1,0B0\n1F0,1B0,1F1,1B1") ==
        "rank 0 step 1 (0B1): full backward of stage 0, microbatch 1 runs without first running its forward");
  CHECK(violation("0F0,0F1,0I0,0W0,0I1,0W1\n1I0,1F0,1F1,1I1,1W0,1W1") ==
        "rank 1 step 0 (1I0): backward input of stage 1, microbatch 0 runs without first running its forward");
  CHECK(violation("0F0,0F1,0I0,0W1,0I1,0W0\n1F0,1I0,1F1,1I1,1W0,1W1") ==
        "rank 0 step 3 (0W1): backward weight of stage 0, microbatch 1 runs without first running its backward input");
  CHECK(violation("0F0,0F1,0B0,1F0\n1F1,1B0,1B1,0B1") == "rank 1 step 0 (1F1): stage 1 is on both rank 1 and rank 0");
  CHECK(violation("0F0,0B0\n1F0,1B0,1F1,1B1") == "stage 0: runs F for 1 microbatches, expected 2");
  // PyTorch counts distinct microbatches, so a repeated F passes there, and here.
  CHECK(valid("0F0,0F1,0F0,0B0,0B1\n1F0,1B0,1F1,1B1"));
  CHECK(violation("0F0,0F1,0I0,0W0,0I1\n1F0,1B0,1F1,1B1") ==
        "stage 0: I and W must come in equal numbers, got I = 2, W = 1");
  CHECK(violation("0F0,0F1,0B0\n1F0,1B0,1F1,1B1") == "stage 0: expected 2 backwards in all, got B = 1, I = 0, W = 0");
  CHECK(violation("0F0,0F1,0B0,0B1,0I0,0W0\n1F0,1B0,1F1,1B1") ==
        "stage 0: expected 2 backwards in all, got B = 2, I = 1, W = 1");
  // Each row is fine alone, but rank 0 waits for 1B0 before it sends 0F1 that rank 1 needs first.
  CHECK(violation("0F0,0B0,0F1,0B1\n1F1,1B1,1F0,1B0") ==
        "the sends and receives cannot be placed: every rank waits on another (rank 0 at 0B0, rank 1 at 1F1)");
  CHECK_THROWS_WITH_AS(dip::validate(dip::torch_schedule{parse("0F0,0B0\n1F0,1B0"), 2, 2}, 3),
                       "torch schedule: the schedule has 2 rows (ranks), the pipeline 3", dip::error);
}

TEST_CASE("uniform sub-microbatches become torch microbatches of their own") {
  // One chain of 2 chunks on 2 ranks; every microbatch split into 2 equal sub-microbatches.
  const dip::multimodal_model model = dip::model_builder("lm").add(dip_test::opaque_module("lm", 2)).build();
  dip::fixed_cost_table costs;
  costs.set_uniform("lm", 2, {unit_cost, 0});
  dip::placement p;
  p.ranks = 2;
  p.chunks = {{{{model.at("lm"), 0, 1}}, dip::rank_id(0), 0, 0}, {{{model.at("lm"), 1, 2}}, dip::rank_id(1), 0, 1}};
  p.chains = {{dip::chunk_id(0), dip::chunk_id(1)}};
  p.chain_inputs = {{}};
  dip::batch_work batch;
  for (int j = 0; j < 3; ++j)
    batch.microbatches.push_back({{{dip::work_unit::sequence(8), dip::work_unit::sequence(8)}}});
  const auto graph = std::make_shared<const dip::stage_graph>(dip::build_stage_graph(model, p, batch, costs));
  REQUIRE(graph->sub_count(0, 0) == 2);
  std::mt19937_64 rng(11);
  for (int k = 0; k < 20; ++k) {
    const dip::torch_schedule s = dip::to_torch_schedule(dip::make_plan(graph, dip_test::random_order(*graph, rng)));
    CHECK(s.microbatches == 6);
    CHECK(s.stages == 2);
    // Microbatch j's sub-microbatch u is torch microbatch 2 j + u; forwards on stage 0 keep dip's order.
    std::vector<std::uint32_t> forwards;
    for (const auto& a : s.rows[0]) {
      if (a->kind == 'F') forwards.push_back(a->microbatch);
    }
    CHECK(forwards.size() == 6);
  }
}

TEST_CASE("plans the compute_only format cannot express are refused, saying why") {
  const dip::multimodal_model model = dip::model_builder("vlm")
                                          .add(dip_test::opaque_module("vit", 2))
                                          .add(dip_test::opaque_module("lm", 2))
                                          .connect("vit", "lm")
                                          .build();
  dip::fixed_cost_table costs;
  costs.set_uniform("vit", 2, {unit_cost, 100});
  costs.set_uniform("lm", 2, {unit_cost, 100});
  const auto vit = model.at("vit"), lm = model.at("lm");
  const auto seq = [](double n) { return dip::work_unit::sequence(n); };
  std::mt19937_64 rng(5);
  const auto random_plan = [&](const dip::placement& p, const dip::batch_work& batch) {
    const auto graph = std::make_shared<const dip::stage_graph>(dip::build_stage_graph(model, p, batch, costs));
    return dip::make_plan(graph, dip_test::random_order(*graph, rng));
  };
  // One chain vit -> lm, chunk k on rank k.
  dip::placement one_chain;
  one_chain.ranks = 2;
  one_chain.chunks = {{{{vit, 0, 2}}, dip::rank_id(0), 0, 0}, {{{lm, 0, 2}}, dip::rank_id(1), 0, 1}};
  one_chain.chains = {{dip::chunk_id(0), dip::chunk_id(1)}};
  one_chain.chain_inputs = {{}};
  const dip::batch_work uniform{{{{{seq(100)}, {seq(300)}}}, {{{seq(100)}, {seq(300)}}}}};
  CHECK_NOTHROW(dip::to_torch_schedule(random_plan(one_chain, uniform)));

  SUBCASE("a modality-aware placement: one chain per module") {
    dip::placement two_chains;
    two_chains.ranks = 2;
    two_chains.chunks = {{{{vit, 0, 2}}, dip::rank_id(0), 0, 0}, {{{lm, 0, 2}}, dip::rank_id(1), 1, 0}};
    two_chains.chains = {{dip::chunk_id(0)}, {dip::chunk_id(1)}};
    two_chains.chain_inputs = {{}, {0}};
    CHECK(refusal(random_plan(two_chains, uniform)).starts_with("the plan's placement has 2 chains"));
  }
  SUBCASE("microbatches of different shapes") {
    const dip::batch_work mixed{{{{{seq(100)}, {seq(300)}}}, {{{seq(100)}, {seq(500)}}}}};
    CHECK_MESSAGE(refusal(random_plan(one_chain, mixed)).find("the microbatches have different shapes: F1@c1 costs") !=
                      std::string::npos,
                  refusal(random_plan(one_chain, mixed)));
  }
  SUBCASE("microbatches split into different numbers of sub-microbatches") {
    const dip::batch_work split{{{{{seq(50), seq(50)}, {seq(300), seq(300)}}}, {{{seq(100)}, {seq(300)}}}}};
    CHECK(
        refusal(random_plan(one_chain, split)).starts_with("microbatch 1 has 1 sub-microbatches, microbatch 0 has 2"));
  }
  SUBCASE("a memory strategy") {
    dip::plan p = random_plan(one_chain, uniform);
    for (dip::action& a : p.ranks[0]) {
      if (a.kind == dip::action_kind::compute) {
        a.strategy = dip::memory_strategy::recompute;
        break;
      }
    }
    CHECK(refusal(p).find("with memory strategy recompute; the compute_only format has no memory strategies") !=
          std::string::npos);
  }
}
