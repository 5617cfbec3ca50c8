// Model files: the documented format loads, and every malformed input names its field.
#include <doctest/doctest.h>

#include <string>

#include <dip/io/model_json.hpp>

#include "test_files.hpp"

using namespace dip::literals;

namespace {

using dip_test::data_file;

// The message a bad document produces ("" when it loads).
std::string model_error_of(const std::string& text) {
  try {
    (void)dip::parse_model_json(std::string_view(text), "bad.json");
  } catch (const dip::error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the issue's toy model loads with fixed per-layer costs") {
  const dip::model_file file = dip::read_model_file(data_file("toy.json"));
  REQUIRE(file.model.module_count() == 1);
  const dip::module_spec& lm = file.model.module(file.model.at("lm"));
  CHECK(lm.layers.size() == 8);
  CHECK(lm.modality == dip::modality::text());
  const dip::layer_cost c = file.measured.cost(lm, 7, dip::work_unit::sequence(100));
  CHECK(c.forward == 1_ms);
  CHECK(c.backward_input == 1_ms);  // backward_ms alone is split evenly
  CHECK(c.backward_weight == 1_ms);
  CHECK(c.activation == dip::bytes(0));
  CHECK_FALSE(file.pp.has_value());
}

TEST_CASE("architecture, preset and measured modules mix in one file") {
  const dip::model_file file = dip::read_model_file(data_file("vlm_small.json"));
  CHECK(file.tp == 2);
  CHECK(file.pp == 4);
  CHECK(file.gpu == "H100");
  const dip::multimodal_model& model = file.model;
  CHECK(model.module(model.at("vit")).layers.size() == 64);  // preset: patch embedding + 63 blocks
  const dip::module_spec& llm = model.module(model.at("llm"));
  REQUIRE(llm.layers.size() == 26);
  CHECK(std::get<dip::transformer_block>(llm.layers[1]) == dip::transformer_block{2048, 8192, 16, 4, true});
  CHECK(std::get<dip::embedding>(llm.layers.front()).vocab == 32000);
  CHECK(model.inputs_of(model.at("llm")) == std::vector{model.at("projector")});
  const auto costs = dip::cost_model_for(file, dip::h100(), 2);
  const dip::module_spec& proj = model.module(model.at("projector"));
  CHECK(dip::to_milliseconds(costs.cost(proj, 0, dip::work_unit::sequences_of(20, 169)).forward) ==
        doctest::Approx(0.4));
  CHECK(costs.cost(llm, 3, dip::work_unit::sequence(4096)).forward > 0_ms);
}

TEST_CASE("malformed documents name the field or the position") {
  const std::string ok_module =
      R"({"name":"lm","modality":"text","layers":2,"layer_cost":{"forward_ms":1,"backward_ms":2}})";
  CHECK(model_error_of(R"({"name":"m","modules":[)" + ok_module + "]}") == "");

  // Syntax errors: line and column.
  CHECK(model_error_of("{\"name\": \"m\",\n \"modules\": [,]}").find("bad.json: line 2, column 14: malformed JSON") ==
        0);
  CHECK(model_error_of("").find("bad.json: line 1, column 1: malformed JSON") == 0);

  struct bad_case {
    std::string document;
    std::string expected;
  };
  const bad_case cases[] = {
      {R"([1,2])", "bad.json: expected an object, got array"},
      {R"({"modules":[]})", "bad.json: name: required field is missing"},
      {R"({"name":"m","modules":[]})", "bad.json: modules: expected a non-empty array"},
      {R"({"name":"m","modules":[)" + ok_module + R"(],"tpp":2})", "bad.json: tpp: unknown field"},
      {R"({"name":"m","pp":0,"modules":[)" + ok_module + "]}", "bad.json: pp: expected an integer in [1, 4096], got 0"},
      {R"({"name":"m","gpu":"A100","modules":[)" + ok_module + "]}", "bad.json: gpu: unknown GPU 'A100'"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":"8","layer_cost":{"forward_ms":1,"backward_ms":2}}]})",
       "bad.json: modules[0].layers: expected an integer, got string"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2.5,"layer_cost":{"forward_ms":1,"backward_ms":2}}]})",
       "bad.json: modules[0].layers: expected an integer in [1, 1048576], got 2.5"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer_cost":{"forward_ms":-1,"backward_ms":2}}]})",
       "bad.json: modules[0].layer_cost.forward_ms: expected a finite number >= 0, got -1"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer_cost":{"forward_ms":1e999,"backward_ms":2}}]})",
       "bad.json: malformed JSON: number overflow parsing '1e999'"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer_cost":{"forward_ms":1}}]})",
       "bad.json: modules[0].layer_cost.backward_ms: required: backward_ms, or backward_input_ms + backward_weight_ms"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer_cost":{"forward_ms":1,"backward_ms":2,"backward_input_ms":1}}]})",
       "give either backward_ms or backward_input_ms + backward_weight_ms"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer_cost":[{"forward_ms":1,"backward_ms":2}]}]})",
       "bad.json: modules[0].layer_cost: has 1 entries but \"layers\" is 2"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer_cost":[{"forward_ms":1,"backward_ms":2},{"forward_ms":"x","backward_ms":2}]}]})",
       "bad.json: modules[0].layer_cost[1].forward_ms: expected a number, got string"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"Text!","layers":2,"layer_cost":{"forward_ms":1,"backward_ms":2}}]})",
       "bad.json: modules[0].modality: name must be a non-empty lowercase identifier"},
      {R"({"name":"m","modules":[{"name":"lm","layers":2,"layer_cost":{"forward_ms":1,"backward_ms":2}}]})",
       "bad.json: modules[0].modality: required field is missing"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2}]})",
       "needs exactly one of \"layer_cost\", \"layer\" or \"preset\""},
      {R"({"name":"m","modules":[{"name":"lm","preset":"gpt-5"}]})",
       "bad.json: modules[0].preset: unknown module preset 'gpt-5'"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer":{"hidden":100,"ffn":10,"heads":3}}]})",
       "multiple of heads"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer":{"kind":"mamba","hidden":64,"ffn":10,"heads":4}}]})",
       "bad.json: modules[0].layer.kind: unknown block kind 'mamba'"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","layers":2,"layer":{"hidden":64,"ffn":10,"heads":4,"dropout":0.1}}]})",
       "bad.json: modules[0].layer.dropout: unknown field"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","inputs":"vit","layers":2,"layer_cost":{"forward_ms":1,"backward_ms":2}}]})",
       "bad.json: modules[0].inputs: expected an array of module names"},
      {R"({"name":"m","modules":[{"name":"lm","modality":"text","inputs":["vit"],"layers":2,"layer_cost":{"forward_ms":1,"backward_ms":2}}]})",
       "unknown module 'vit'"},
      {R"({"name":"m","modules":[{"name":"a","modality":"text","inputs":["b"],"layers":1,"layer_cost":{"forward_ms":1,"backward_ms":2}},)"
       R"({"name":"b","modality":"text","inputs":["a"],"layers":1,"layer_cost":{"forward_ms":1,"backward_ms":2}}]})",
       "module graph has a cycle"},
      {R"({"name":"m","modules":[)" + ok_module +
           R"(,{"name":"x","modality":"image","layers":1,"layer_cost":{"forward_ms":1,"backward_ms":2}}]})",
       "modules not connected to the rest of the model: 'x'"},
  };
  for (const bad_case& c : cases) {
    CAPTURE(c.document);
    const std::string message = model_error_of(c.document);
    CHECK_MESSAGE(message.find(c.expected) != std::string::npos, "got: " << message);
  }
}

TEST_CASE("a missing file is a not_found error naming the path") {
  try {
    (void)dip::read_model_file("/nonexistent/model.json");
    FAIL("expected an error");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::not_found);
    CHECK(e.where() == "/nonexistent/model.json");
  }
}
