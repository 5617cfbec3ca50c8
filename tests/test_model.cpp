// Model description: the module DAG is validated when built, presets have the right sizes.
#include <doctest/doctest.h>

#include <string>

#include <dip/model/hardware.hpp>
#include <dip/model/model.hpp>
#include <dip/model/presets.hpp>

#include "test_files.hpp"

namespace {

dip::module_spec toy(std::string name, int layers = 2) {
  dip::module_spec m;
  m.name = std::move(name);
  m.layers.assign(static_cast<std::size_t>(layers), dip::transformer_block{64, 256, 4, 4, false});
  return m;
}

std::string message_of(const dip::model_builder& builder) {
  try {
    (void)builder.build();
  } catch (const dip::error& e) {
    return e.what();
  }
  return "";
}

using dip_test::contains;

}  // namespace

TEST_CASE("a valid DAG: several encoders into one LLM") {
  const dip::multimodal_model model = dip::model_builder("two-encoders")
                                          .add(toy("llm"))
                                          .add(toy("vit"))
                                          .add(toy("audio"))
                                          .connect("vit", "llm")
                                          .connect("audio", "llm")
                                          .build();
  CHECK(model.module_count() == 3);
  const dip::module_id llm = model.at("llm");
  CHECK(model.inputs_of(llm) == std::vector{model.at("vit"), model.at("audio")});
  CHECK(model.outputs_of(model.at("vit")) == std::vector{llm});
  CHECK(boost::num_edges(model.graph()) == 2);
  // Topological order: llm after both encoders.
  const auto order = model.topological_order();
  REQUIRE(order.size() == 3);
  CHECK(order.back() == llm);
  for (std::size_t i = 0; i < 3; ++i) CHECK(model.modules()[i].id.index() == i);
}

TEST_CASE("a cycle is an error that spells the cycle out by module name") {
  dip::model_builder builder("cyclic");
  builder.add(toy("a")).add(toy("b")).add(toy("c")).add(toy("d"));
  builder.connect("d", "a").connect("a", "b").connect("b", "c").connect("c", "a");
  const std::string message = message_of(builder);
  CHECK(contains(message, "cycle"));
  // The cycle a -> b -> c -> a, starting anywhere on it; d is not part of it.
  CHECK(contains(message, "'a'"));
  CHECK(contains(message, "'b'"));
  CHECK(contains(message, "'c'"));
  CHECK_FALSE(contains(message, "'d'"));
  try {
    (void)builder.build();
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::graph_error);
  }
}

TEST_CASE("unconnected modules, dangling edges, self loops and duplicates are named") {
  {
    dip::model_builder b("islands");
    b.add(toy("vit")).add(toy("llm")).add(toy("stray")).connect("vit", "llm");
    const std::string message = message_of(b);
    CHECK(contains(message, "not connected"));
    CHECK(contains(message, "'stray'"));
    CHECK_FALSE(contains(message, "'llm'"));
  }
  {
    dip::model_builder b("dangling");
    b.add(toy("vit")).add(toy("llm")).connect("vit", "lm");
    const std::string message = message_of(b);
    CHECK(contains(message, "unknown module 'lm'"));
  }
  {
    dip::model_builder b("self");
    b.add(toy("llm")).connect("llm", "llm");
    CHECK(contains(message_of(b), "feeds itself"));
  }
  {
    dip::model_builder b("twice");
    b.add(toy("vit")).add(toy("llm")).connect("vit", "llm").connect("vit", "llm");
    CHECK(contains(message_of(b), "given twice"));
  }
  {
    dip::model_builder b("dup");
    b.add(toy("llm")).add(toy("llm"));
    CHECK(contains(message_of(b), "two modules are named 'llm'"));
  }
  {
    dip::model_builder b("empty");
    CHECK(contains(message_of(b), "has no modules"));
  }
  {
    dip::model_builder b("no-layers");
    b.add(toy("llm", 0));
    CHECK(contains(message_of(b), "module 'llm': has no layers"));
  }
  {
    dip::module_spec bad = toy("llm");
    bad.layers[1] = dip::transformer_block{100, 256, 3, 3, false};  // 100 heads-of-3 do not divide
    dip::model_builder b("bad-heads");
    b.add(bad);
    const std::string message = message_of(b);
    CHECK(contains(message, "module 'llm' layer 1"));
    CHECK(contains(message, "multiple of heads"));
  }
}

TEST_CASE("a single module needs no edges") {
  const auto model = dip::model_builder("solo").add(toy("llm")).build();
  CHECK(model.module_count() == 1);
  CHECK(model.topological_order().size() == 1);
}

TEST_CASE("Llama3-8B has exactly the published 8,030,261,248 parameters") {
  // 32 blocks of (4096 x 6144 QKV + 4096^2 output + 3 x 4096 x 14336 SwiGLU + 2 norms),
  // untied 128256 x 4096 embedding and head, final norm.
  const dip::module_spec llm = dip::presets::llama3_8b();
  CHECK(dip::parameter_count(llm) == 8'030'261'248);
  CHECK(llm.layers.size() == 34);
  CHECK(std::holds_alternative<dip::embedding>(llm.layers.front()));
  CHECK(std::holds_alternative<dip::lm_head>(llm.layers.back()));
}

TEST_CASE("module presets land on their nominal sizes") {
  const auto billions = [](const dip::module_spec& m) { return double(dip::parameter_count(m)) / 1e9; };
  CHECK(billions(dip::presets::vit_5b()) == doctest::Approx(4.3).epsilon(0.02));
  CHECK(billions(dip::presets::vit_22b()) == doctest::Approx(21.75).epsilon(0.02));
  CHECK(billions(dip::presets::qwen2_32b()) == doctest::Approx(32.76).epsilon(0.01));
  CHECK(billions(dip::presets::qwen2_72b()) == doctest::Approx(72.7).epsilon(0.01));
  CHECK(billions(dip::presets::dit_5b()) == doctest::Approx(4.93).epsilon(0.02));
  CHECK(billions(dip::presets::dit_30b()) == doctest::Approx(29.0).epsilon(0.02));
  // ViT-22B block: 4 h^2 attention + 2 h f MLP + 2 norms, h = 6144, f = 24576.
  const dip::module_spec vit = dip::presets::vit_22b();
  CHECK(dip::parameter_count(vit.layers[1]) == 4 * 6144LL * 6144 + 2 * 6144LL * 24576 + 2 * 6144);
  REQUIRE(vit.image.has_value());
  const std::int64_t side = dip::presets::image_pixels / vit.image->patch_size / vit.image->merge;
  CHECK(side * side == vit.image->default_tokens);
}

TEST_CASE("model presets: DESIGN.md's five models with their TP and PP, plus plain LLMs") {
  struct expected {
    const char* name;
    int tp, pp;
    const char* first;
    const char* last;
  };
  for (const expected& e : {expected{"vlm-s", 4, 4, "vit", "llm"}, expected{"vlm-m", 8, 4, "vit", "llm"},
                            expected{"vlm-l", 8, 8, "vit", "llm"}, expected{"t2v-s", 4, 4, "llm", "dit"},
                            expected{"t2v-l", 8, 8, "llm", "dit"}}) {
    CAPTURE(e.name);
    const dip::model_preset p = dip::find_preset(e.name);
    CHECK(p.parallel == dip::parallel_config{e.tp, e.pp});
    const auto order = p.model.topological_order();
    REQUIRE(order.size() == 3);
    CHECK(p.model.module(order.front()).name == e.first);
    CHECK(p.model.module(order[1]).name == "projector");
    CHECK(p.model.module(order.back()).name == e.last);
  }
  CHECK(dip::find_preset("vlm-m").model.parameter_count() / 1'000'000'000 == 37);  // "37B VLM"
  CHECK(dip::find_preset("llama3-8b").model.module_count() == 1);
  for (const std::string& name : dip::preset_names()) CHECK_NOTHROW(dip::find_preset(name));
  CHECK_THROWS_WITH_AS(dip::find_preset("vlm-xl"), doctest::Contains("unknown preset 'vlm-xl'"), dip::error);
}

TEST_CASE("GPU presets") {
  CHECK(dip::find_gpu("h800").name == "H800");
  CHECK(dip::find_gpu("H200").memory == dip::gigabytes(141));
  CHECK(dip::find_gpu("H20").peak_bf16 < dip::find_gpu("H100").peak_bf16);
  for (const dip::gpu_spec& g : dip::gpu_presets()) {
    CHECK(g.peak_bf16.base() > 0);
    CHECK(g.nvlink > g.network);
  }
  CHECK_THROWS_WITH_AS(dip::find_gpu("A100"), doctest::Contains("known: H800, H100, H200, H20"), dip::error);
}
