// Fixed cost tables and the overlay that puts measurements in front of the analytic model.
#include <doctest/doctest.h>

#include <cmath>

#include <dip/cost/analytic.hpp>
#include <dip/cost/fixed_table.hpp>
#include <dip/model/presets.hpp>

using namespace dip::literals;

namespace {
dip::module_spec named(const char* name, std::size_t layers) {
  dip::module_spec m;
  m.name = name;
  for (std::size_t i = 0; i < layers; ++i) m.layers.push_back(dip::opaque_layer{"l", 0, 0});
  return m;
}
}  // namespace

TEST_CASE("constant and token-scaled entries") {
  dip::fixed_cost_table table;
  table.set_uniform("lm", 8, {{1_ms, 1_ms, 1_ms, dip::bytes(100), dip::bytes(10)}, 0});
  table.set("vit", {{{2_ms, 3_ms, 1_ms, dip::bytes(1000), dip::bytes(50)}, 1000}});
  const dip::module_spec lm = named("lm", 8), vit = named("vit", 1);
  CHECK(table.cost(lm, 7, dip::work_unit::sequence(1)).forward == 1_ms);
  CHECK(table.cost(lm, 7, dip::work_unit::sequence(5000)).forward == 1_ms);  // constant
  const dip::layer_cost half = table.cost(vit, 0, dip::work_unit::sequence(500));
  CHECK(dip::to_milliseconds(half.forward) == doctest::Approx(1.0));
  CHECK(dip::to_milliseconds(half.backward_input) == doctest::Approx(1.5));
  CHECK(half.activation.base() == doctest::Approx(500));
  CHECK(table.covers(lm, 7));
  CHECK_FALSE(table.covers(lm, 8));
  CHECK_THROWS_WITH_AS(table.cost(lm, 8, dip::work_unit::sequence(1)), doctest::Contains("module 'lm' layer 8"),
                       dip::error);
  CHECK_THROWS_WITH_AS(table.cost(named("dit", 1), 0, dip::work_unit::sequence(1)), doctest::Contains("no entry"),
                       dip::error);
  // dip::chunk_cost over the table: 3 layers of 1 + 1 + 1 ms.
  const dip::layer_cost chunk = dip::chunk_cost(table, lm, 2, 5, dip::work_unit::sequence(1));
  CHECK(chunk.forward == 3_ms);
  CHECK(chunk.backward() == 6_ms);
  CHECK(chunk.activation == dip::bytes(300));
}

TEST_CASE("NaN and negative costs are rejected with the module and layer") {
  dip::fixed_cost_table table;
  const double nan = std::nan("");
  CHECK_THROWS_WITH_AS(table.set("lm", {{{dip::milliseconds(nan), 1_ms, 1_ms, {}, {}}, 0}}),
                       doctest::Contains("module 'lm' layer 0: forward"), dip::error);
  CHECK_THROWS_WITH_AS(table.set("lm", {{{1_ms, 1_ms, -1_ms, {}, {}}, 0}}), doctest::Contains("backward_weight"),
                       dip::error);
  CHECK_THROWS_AS(table.set("lm", {}), dip::error);
}

TEST_CASE("overlay: measured layers win, the rest are analytic") {
  dip::module_spec llm = dip::presets::llama3_8b();
  dip::fixed_cost_table measured;
  measured.set("llm", {{{5_ms, 5_ms, 5_ms, {}, {}}, 0}});  // only layer 0 (the embedding) measured
  const dip::analytic_cost_model analytic(dip::h800(), 1);
  const dip::overlay_cost_model costs(measured, analytic);
  static_assert(dip::cost_model_like<decltype(costs)>);
  const auto work = dip::work_unit::sequence(2048);
  CHECK(costs.cost(llm, 0, work).forward == 5_ms);
  CHECK(costs.cost(llm, 1, work) == analytic.cost(llm, 1, work));
}
