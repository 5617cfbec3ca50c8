// The sub-microbatch splitter: every item in exactly one sub-microbatch of each module, bin groups
// split alike, M = ceil(N / B), costs balanced, caps hold, and the uniform source reproduces
// uniform_batch.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/hardware.hpp>
#include <dip/model/presets.hpp>
#include <dip/schedule/stage_graph.hpp>

using namespace dip::literals;

namespace {

// Time and memory proportional to tokens: easy to reason about.
struct linear_costs {
  dip::layer_cost cost(const dip::module_spec&, std::size_t, const dip::work_unit& work) const {
    return {.forward = dip::milliseconds(work.tokens * 1e-3), .activation = dip::bytes(work.tokens * 1000)};
  }
};

// B per module and the encoder chain (vit + projector, or caption llm + projector) in one group.
dip::sub_microbatch_policy chain_policy(const dip::multimodal_model& model, std::size_t encoder_b,
                                        std::size_t decoder_b) {
  dip::sub_microbatch_policy policy;
  for (const dip::module_spec& m : model.modules()) {
    const dip::item_kind kind = dip::module_item_kind(model, m.id);
    const bool encoder_side = kind == dip::item_kind::image || kind == dip::item_kind::caption;
    policy.items_per_sub.push_back(encoder_side ? encoder_b : kind == dip::item_kind::clip ? decoder_b : 0);
    policy.bin_group.push_back(encoder_side ? 0 : m.id.index() + 1);
  }
  return policy;
}

// Every item of each module's kind in exactly one sub-microbatch; modules of a group alike;
// M = ceil(N / B); each sub's work the sum of its items'.
void check_split(const dip::packed_microbatch& mb, const dip::split_microbatch& split, std::size_t position,
                 const dip::multimodal_model& model, const dip::sub_microbatch_policy& policy) {
  REQUIRE(split.modules.size() == model.module_count());
  CHECK(split.microbatch == position);
  for (std::size_t m = 0; m < model.module_count(); ++m) {
    const dip::module_split& ms = split.modules[m];
    const dip::module_spec& spec = model.module(ms.module);
    CAPTURE(spec.name);
    CHECK(ms.kind == dip::module_item_kind(model, ms.module));
    const std::size_t n = dip::item_count(mb, ms.kind), b = policy.items_per_sub[m];
    const std::size_t expected_subs = n == 0 || b == 0 ? 1 : (n + b - 1) / b;
    REQUIRE(ms.subs.size() == expected_subs);
    std::vector<int> seen(n, 0);
    for (std::size_t s = 0; s < ms.subs.size(); ++s) {
      const dip::sub_microbatch& sub = ms.subs[s];
      CHECK(sub.microbatch == position);
      CHECK(sub.index == s);
      dip::work_unit sum;
      for (std::size_t i : sub.items) {
        REQUIRE(i < n);
        ++seen[i];
        sum += dip::item_work(mb, spec, ms.kind, i);
      }
      CHECK(sub.work == sum);
      if (n >= expected_subs) CHECK_FALSE(sub.items.empty());
    }
    for (int count : seen) CHECK(count == 1);
    // Same group, same assignment.
    for (std::size_t other = 0; other < model.module_count(); ++other) {
      if (policy.bin_group[other] != policy.bin_group[m]) continue;
      REQUIRE(split.modules[other].subs.size() == ms.subs.size());
      for (std::size_t s = 0; s < ms.subs.size(); ++s) CHECK(split.modules[other].subs[s].items == ms.subs[s].items);
    }
  }
}

}  // namespace

TEST_CASE("the uniform source, unsplit, is exactly uniform_batch for every preset") {
  for (const std::string& name : dip::preset_names()) {
    CAPTURE(name);
    const dip::model_preset preset = dip::find_preset(name);
    const dip::multimodal_model& model = preset.model;
    const dip::analytic_cost_model costs(dip::find_gpu("H800"), preset.parallel.tp);
    dip::batch_source source = dip::make_batch_source("uniform", model, 1);
    const auto packed = source.next_batch(4);
    const auto split = dip::split_batch(packed, model, dip::unsplit_policy(model), costs);
    const dip::batch_work ours = dip::to_batch_work(split);
    const dip::batch_work expected =
        dip::uniform_batch(model, 4, [&](const dip::module_spec& m) { return dip::uniform_module_work(model, m); });
    REQUIRE(ours.microbatches.size() == expected.microbatches.size());
    for (std::size_t j = 0; j < 4; ++j) CHECK(ours.microbatches[j].modules == expected.microbatches[j].modules);
  }
}

TEST_CASE("every item lands in exactly one sub-microbatch, M = ceil(N / B), groups split alike") {
  const dip::model_preset vlm = dip::find_preset("vlm-s");
  const dip::analytic_cost_model costs(dip::find_gpu("H800"), vlm.parallel.tp);
  for (const char* data : {"laion", "obelics", "scienceqa", "mixed"}) {
    for (std::size_t b : {1u, 3u, 12u}) {
      CAPTURE(data);
      CAPTURE(b);
      const dip::sub_microbatch_policy policy = chain_policy(vlm.model, b, 0);
      dip::batch_source source = dip::make_batch_source(data, vlm.model, 3);
      for (int it = 0; it < 2; ++it) {
        const auto packed = source.next_batch(4);
        const auto split = dip::split_batch(packed, vlm.model, policy, costs);
        for (std::size_t j = 0; j < packed.size(); ++j) check_split(packed[j], split[j], j, vlm.model, policy);
      }
    }
  }
  const dip::model_preset t2v = dip::find_preset("t2v-s");
  const dip::analytic_cost_model t2v_costs(dip::find_gpu("H800"), t2v.parallel.tp);
  for (std::size_t b : {1u, 2u}) {
    const dip::sub_microbatch_policy policy = chain_policy(t2v.model, b, b);
    dip::batch_source source = dip::make_batch_source("video", t2v.model, 3);
    const auto packed = source.next_batch(8);
    const auto split = dip::split_batch(packed, t2v.model, policy, t2v_costs);
    for (std::size_t j = 0; j < packed.size(); ++j) check_split(packed[j], split[j], j, t2v.model, policy);
  }
}

TEST_CASE("items carry each module's own work") {
  const dip::multimodal_model vlm = dip::find_preset("vlm-s").model;
  const dip::packed_microbatch mb = dip::pack_samples(
      {{532, {dip::trace_image::with_tokens(169), dip::trace_image::with_pixels(640, 480)}, {}}, {100, {}, {}}},
      vlm)[0];
  const auto split = dip::split_microbatch_items(mb, 5, vlm, dip::unsplit_policy(vlm), linear_costs{});
  const auto& vit = split.modules[vlm.at("vit").index()].subs.at(0);
  CHECK(vit.microbatch == 5);
  CHECK(vit.work == dip::work_unit::sequence(2704) + dip::work_unit::sequence(1728));
  CHECK(split.modules[vlm.at("projector").index()].subs.at(0).work ==
        dip::work_unit::sequence(169) + dip::work_unit::sequence(108));
  // The LLM: one packed row of 909 tokens, attention within each sample (809 and 100 tokens).
  CHECK(split.modules[vlm.at("llm").index()].subs.at(0).work ==
        dip::work_unit{1, 909, 809.0 * 809 + 100.0 * 100, 0, 0});

  const dip::multimodal_model t2v = dip::find_preset("t2v-s").model;
  const dip::packed_microbatch clips = dip::pack_samples({{80, {}, {{12.3}}}, {20, {}, {{2.0}}}}, t2v)[0];
  const auto t2v_split = dip::split_microbatch_items(clips, 0, t2v, dip::unsplit_policy(t2v), linear_costs{});
  CHECK(t2v_split.modules[t2v.at("dit").index()].subs.at(0).work ==
        dip::work_unit::conditioned_sequence(197 * 64, 80) + dip::work_unit::conditioned_sequence(32 * 64, 20));
  CHECK(t2v_split.modules[t2v.at("llm").index()].subs.at(0).work ==
        dip::work_unit::sequence(80) + dip::work_unit::sequence(20));
}

TEST_CASE("a text-only microbatch gives the vision encoder one empty sub-microbatch") {
  const dip::multimodal_model vlm = dip::find_preset("vlm-s").model;
  const dip::packed_microbatch text = dip::pack_samples({{4000, {}, {}}}, vlm)[0];
  const auto split = dip::split_microbatch_items(text, 0, vlm, chain_policy(vlm, 4, 0), linear_costs{});
  for (const char* name : {"vit", "projector"}) {
    const auto& subs = split.modules[vlm.at(name).index()].subs;
    REQUIRE(subs.size() == 1);
    CHECK(subs[0].items.empty());
    CHECK(subs[0].work.empty());
  }
  CHECK(split.modules[vlm.at("llm").index()].subs.at(0).work == dip::work_unit::sequence(4000));
  // The stage graph sees one entry per module.
  const dip::microbatch_work work = split.work();
  REQUIRE(work.modules.size() == 3);
  for (const auto& m : work.modules) CHECK(m.size() == 1);
}

TEST_CASE("sub-microbatches are balanced by cost, not by count") {
  // Images of 100, 90, 50, 40, 30 and 10 tokens (encoder: x16) into 2 sub-microbatches: the best
  // split is 160 / 160 (100 + 50 + 10, 90 + 40 + 30); cutting the list in order would give 240 / 80.
  const dip::multimodal_model vlm = dip::find_preset("vlm-s").model;
  std::vector<dip::trace_image> images;
  for (std::int64_t t : {100, 90, 50, 40, 30, 10}) images.push_back(dip::trace_image::with_tokens(t));
  const dip::packed_microbatch mb = dip::pack_samples({{10, images, {}}}, vlm)[0];
  const auto split = dip::split_microbatch_items(mb, 0, vlm, chain_policy(vlm, 3, 0), linear_costs{});
  const auto& subs = split.modules[vlm.at("vit").index()].subs;
  REQUIRE(subs.size() == 2);
  CHECK(subs[0].work.tokens == 160 * 16);
  CHECK(subs[1].work.tokens == 160 * 16);
  // The group's time per sub: vit (160 x 16 tokens) + projector (160 tokens), 1 us per token per layer.
  const double layers_vit = double(vlm.module(vlm.at("vit")).layers.size());
  CHECK(dip::to_milliseconds(subs[0].group_time) == doctest::Approx((160 * 16 * layers_vit + 160) * 1e-3));

  // Under the analytic model on real batches, the heaviest sub stays within 2x the lower bound.
  const dip::model_preset preset = dip::find_preset("vlm-s");
  const dip::analytic_cost_model costs(dip::find_gpu("H800"), preset.parallel.tp);
  dip::batch_source source = dip::make_batch_source("obelics", vlm, 9);
  for (const auto& packed : source.next_batch(8)) {
    const auto s = dip::split_microbatch_items(packed, 0, vlm, chain_policy(vlm, 4, 0), costs);
    const auto& vit_subs = s.modules[vlm.at("vit").index()].subs;
    if (vit_subs.size() < 2) continue;
    dip::duration total{}, largest{};
    for (const auto& sub : vit_subs) {
      total += sub.group_time;
      largest = std::max(largest, sub.group_time);
    }
    CHECK(largest <= 2.0 * (total / double(vit_subs.size())) + 1_ms);
  }
}

TEST_CASE("the memory cap holds, and an impossible cap names the microbatch and modules") {
  const dip::multimodal_model vlm = dip::find_preset("vlm-s").model;
  std::vector<dip::trace_image> images(12);
  const dip::packed_microbatch mb = dip::pack_samples({{10, images, {}}}, vlm)[0];
  // Per image: (2704 x 64 vit layers + 169 projector) tokens x 1000 bytes.
  const double per_image = (2704.0 * double(vlm.module(vlm.at("vit")).layers.size()) + 169.0) * 1000;
  const auto split = dip::split_microbatch_items(mb, 2, vlm, chain_policy(vlm, 4, 0), linear_costs{},
                                                 {.memory_cap = dip::bytes(per_image * 4)});
  for (const auto& sub : split.modules[0].subs) CHECK(sub.group_memory.base() <= per_image * 4 * (1 + 1e-9));
  try {
    (void)dip::split_microbatch_items(mb, 2, vlm, chain_policy(vlm, 4, 0), linear_costs{},
                                      {.memory_cap = dip::bytes(per_image * 3.5)});
    FAIL("a cap below 4 images per sub-microbatch was met");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::infeasible);
    CHECK(e.where() == "microbatch 2, modules 'vit', 'projector' (images)");
    CHECK(e.detail().find("available") != std::string::npos);
  }
}

TEST_CASE("a policy that does not fit the model is refused") {
  const dip::multimodal_model vlm = dip::find_preset("vlm-s").model;
  const dip::packed_microbatch mb = dip::pack_samples({{10, {{}}, {}}}, vlm)[0];
  dip::sub_microbatch_policy short_policy;
  short_policy.items_per_sub = {1};
  short_policy.bin_group = {0};
  CHECK_THROWS_AS(dip::split_microbatch_items(mb, 0, vlm, short_policy, linear_costs{}), dip::error);
  dip::sub_microbatch_policy mixed = dip::unsplit_policy(vlm);
  mixed.bin_group = {0, 0, 0};  // the LLM counts sequences, not images
  CHECK_THROWS_AS(dip::split_microbatch_items(mb, 0, vlm, mixed, linear_costs{}), dip::error);
}

TEST_CASE("the summary dip-plan prints") {
  // DESIGN.md's microbatch: 10 images and 6502 text tokens, here as 5 samples, vit split by 5.
  const dip::multimodal_model vlm = dip::find_preset("vlm-s").model;
  std::vector<dip::training_sample> samples(5, dip::training_sample{1300, std::vector<dip::trace_image>(2), {}});
  samples[0].text_tokens = 1302;
  const auto packed = dip::pack_samples(samples, vlm);
  REQUIRE(packed.size() == 1);
  const auto split = dip::split_microbatch_items(packed[0], 0, vlm, chain_policy(vlm, 5, 0), linear_costs{});
  const dip::microbatch_summary summary = dip::summarize(packed[0], split, vlm);
  CHECK(dip::to_json(summary) == nlohmann::json::parse(R"({"samples": 5, "text_tokens": 6502, "image_tokens": 1690,
      "images": 10, "clips": 0, "frames": 0, "sub_microbatches": {"vit": 2, "projector": 2, "llm": 1}})"));

  const dip::multimodal_model t2v = dip::find_preset("t2v-s").model;
  const auto clips = dip::pack_samples({{80, {}, {{12.3}}}, {20, {}, {{2.0}}}}, t2v);
  const auto t2v_split = dip::split_microbatch_items(clips[0], 0, t2v, chain_policy(t2v, 1, 1), linear_costs{});
  const dip::microbatch_summary video = dip::summarize(clips[0], t2v_split, t2v);
  CHECK(video.clips == 2);
  CHECK(video.frames == 197 + 32);
  CHECK(video.text_tokens == 100);
  CHECK(video.sub_microbatches ==
        std::vector<std::pair<std::string, std::size_t>>{{"llm", 2}, {"projector", 2}, {"dit", 2}});
}

TEST_CASE("split batches feed the stage graph") {
  const dip::model_preset preset = dip::find_preset("vlm-s");
  const dip::analytic_cost_model costs(dip::find_gpu("H800"), preset.parallel.tp);
  dip::batch_source source = dip::make_batch_source("mixed", preset.model, 4);
  const auto packed = source.next_batch(4);
  const dip::sub_microbatch_policy policy = chain_policy(preset.model, 6, 0);
  const dip::batch_work batch = dip::to_batch_work(dip::split_batch(packed, preset.model, policy, costs));
  REQUIRE(batch.microbatches.size() == 4);
  for (std::size_t j = 0; j < 4; ++j) {
    const std::size_t images = packed[j].images.size();
    CHECK(batch.microbatches[j].modules[0].size() == std::max<std::size_t>(1, (images + 5) / 6));
    CHECK(batch.microbatches[j].modules[2].size() == 1);
  }
}
