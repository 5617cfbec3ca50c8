// The modality-aware partitioner and the baseline partitions: the min-max DP against brute force,
// DESIGN.md's 64 + 64 layer example, B and K against closed forms, placements on hand-made
// models (two encoders, text-to-video) and on the presets, and the memory check.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <set>

#include <dip/batch/uniform.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/cost/fixed_table.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/baseline_partitions.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/schedule/build_stage_graph.hpp>
#include <dip/schedule/stage_graph.hpp>

using namespace dip::literals;

namespace {

struct brute_force_result {
  double largest = std::numeric_limits<double>::infinity();
  double smallest = -std::numeric_limits<double>::infinity();  // best lightest run among optimal cuts
};

// Every cut of `w` into `parts` non-empty runs (bitmask over the n-1 gaps; n <= 12).
brute_force_result brute_force(const std::vector<double>& w, std::size_t parts) {
  const std::size_t n = w.size();
  std::vector<std::pair<double, double>> cuts;  // (heaviest, lightest)
  for (std::uint32_t mask = 0; mask < (1u << (n - 1)); ++mask) {
    if (std::size_t(__builtin_popcount(mask)) != parts - 1) continue;
    double current = 0, heaviest = 0, lightest = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < n; ++i) {
      current += w[i];
      if (i + 1 == n || (mask >> i) & 1u) {
        heaviest = std::max(heaviest, current);
        lightest = std::min(lightest, current);
        current = 0;
      }
    }
    cuts.emplace_back(heaviest, lightest);
  }
  brute_force_result best;
  for (const auto& [h, l] : cuts) best.largest = std::min(best.largest, h);
  for (const auto& [h, l] : cuts) {
    if (h <= best.largest * (1 + 1e-12)) best.smallest = std::max(best.smallest, l);
  }
  return best;
}

dip::module_spec module_of_role(const std::string& name, std::size_t layers,
                                dip::module_role role = dip::module_role::other) {
  dip::module_spec m;
  m.name = name;
  m.role = role;
  for (std::size_t i = 0; i < layers; ++i) m.layers.push_back(dip::opaque_layer{"l", 1000, 0});
  return m;
}

dip::module_spec image_encoder(const std::string& name, std::size_t layers) {
  dip::module_spec m = module_of_role(name, layers, dip::module_role::encoder);
  m.modality = dip::modality::image();
  m.image = dip::image_encoding{14, 4, 169};
  return m;
}

dip::module_spec video_module(const std::string& name, std::size_t layers, dip::module_role role) {
  dip::module_spec m = module_of_role(name, layers, role);
  m.modality = dip::modality::video();
  m.video = dip::video_encoding{16.0, 64, 16.0};
  return m;
}

// Layer costs that scale with tokens (so throughput is flat and B = 1), `ms` per layer at the
// module's typical item.
dip::fixed_layer_cost per_item(double ms, double reference_tokens) {
  return {
      {dip::milliseconds(ms / 3), dip::milliseconds(ms / 3), dip::milliseconds(ms / 3), dip::bytes(1), dip::bytes(1)},
      reference_tokens};
}

// A cost model whose layer time for b sequences is overhead + b * per_sequence: throughput
// b / T(b) rises towards 1 / per_sequence, so B has a closed form.
struct overhead_cost_model {
  double overhead = 0;
  double per_sequence = 0;
  dip::layer_cost cost(const dip::module_spec&, std::size_t, const dip::work_unit& work) const {
    const double t = overhead + per_sequence * work.sequences;
    return {dip::seconds(t / 3), dip::seconds(t / 3), dip::seconds(t / 3), dip::bytes(1), dip::bytes(1)};
  }
};

std::set<std::size_t> ranks_of_chain(const dip::placement& p, std::size_t chain) {
  std::set<std::size_t> ranks;
  for (dip::chunk_id c : p.chains[chain]) ranks.insert(p.chunk(c).rank.index());
  return ranks;
}

// Every layer of every module appears in exactly one chunk, chunks of a chain in layer order.
void check_covers_every_layer(const dip::multimodal_model& model, const dip::placement& p) {
  std::vector<std::vector<int>> seen(model.module_count());
  for (std::size_t m = 0; m < model.module_count(); ++m) seen[m].assign(model.modules()[m].layers.size(), 0);
  for (const auto& chain : p.chains) {
    dip::module_id last_module;
    std::size_t last_layer = 0;
    for (dip::chunk_id c : chain) {
      for (const dip::layer_span& s : p.chunk(c).spans) {
        if (s.module == last_module) CHECK(s.first == last_layer);
        for (std::size_t i = s.first; i < s.last; ++i) ++seen[s.module.index()][i];
        last_module = s.module;
        last_layer = s.last;
      }
    }
  }
  for (const auto& module : seen) {
    for (int count : module) CHECK(count == 1);
  }
}

}  // namespace

TEST_CASE("min-max DP equals brute force on 3000 random layer-cost sequences, with the best lightest run") {
  std::mt19937_64 rng(4);
  int ties_broken = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    CAPTURE(trial);
    const std::size_t n = 1 + rng() % 12;
    const std::size_t parts = 1 + rng() % n;
    std::vector<double> w(n);
    for (double& x : w) x = trial % 2 ? double(rng() % 5) : double(rng() % 1000) / 7.0;  // many ties, or few
    const dip::contiguous_partition cut = dip::min_max_partition(w, parts);
    const brute_force_result truth = brute_force(w, parts);
    REQUIRE(cut.parts() == parts);
    CHECK(cut.starts[0] == 0);
    double heaviest = 0, lightest = std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < parts; ++k) {
      REQUIRE(cut.end_of(k, n) > cut.starts[k]);  // non-empty, increasing
      double sum = 0;
      for (std::size_t i = cut.starts[k]; i < cut.end_of(k, n); ++i) sum += w[i];
      heaviest = std::max(heaviest, sum);
      lightest = std::min(lightest, sum);
    }
    CHECK(heaviest == doctest::Approx(truth.largest).epsilon(1e-9));
    CHECK(cut.largest == doctest::Approx(truth.largest).epsilon(1e-9));
    CHECK(lightest == doctest::Approx(truth.smallest).epsilon(1e-9));
    CHECK(cut.smallest == doctest::Approx(lightest).epsilon(1e-9));
    if (truth.smallest > 0 && lightest > 0) ++ties_broken;
  }
  CHECK(ties_broken > 1000);
}

TEST_CASE("min-max DP rejects impossible requests and bad weights") {
  const std::vector<double> w{1, 2, 3};
  CHECK_THROWS_WITH_AS(dip::min_max_partition(w, 4), doctest::Contains("cannot cut 3 layers into 4"), dip::error);
  CHECK_THROWS_WITH_AS(dip::min_max_partition(w, 0), doctest::Contains("at least one part"), dip::error);
  const std::vector<double> bad{1, std::nan(""), 3};
  CHECK_THROWS_WITH_AS(dip::min_max_partition(bad, 2), doctest::Contains("weight 1 must be finite"), dip::error);
}

TEST_CASE("DESIGN.md example: the best mixed 16-stage split of 64 ViT (6.75 ms) + 64 LLM (10.5 ms) layers spans 63 to "
          "73.5 ms") {
  dip::fixed_cost_table table;
  table.set_uniform("vit", 64, {{2.25_ms, 2.25_ms, 2.25_ms, {}, {}}, 0});  // 6.75 ms forward + backward
  table.set_uniform("llm", 64, {{3.5_ms, 3.5_ms, 3.5_ms, {}, {}}, 0});     // 10.5 ms
  const dip::multimodal_model model = dip::model_builder("vlm")
                                          .add(image_encoder("vit", 64))
                                          .add(module_of_role("llm", 64, dip::module_role::backbone))
                                          .connect("vit", "llm")
                                          .build();
  const auto one = [](const dip::module_spec&) { return dip::work_unit::sequence(1); };
  const dip::placement p = dip::balanced_partition(model, table, one, 16, 1);
  const std::vector<dip::duration> times = dip::chunk_times(model, p, table, one);
  REQUIRE(times.size() == 16);
  const auto [lo, hi] = std::minmax_element(times.begin(), times.end());
  CHECK(dip::to_milliseconds(*lo) == doctest::Approx(63.0));
  CHECK(dip::to_milliseconds(*hi) == doctest::Approx(73.5));
  // Megatron balances parameters, which are equal here: 8 layers a stage, 54 to 84 ms.
  const dip::placement mega = dip::megatron_partition(model, 16, 1);
  const std::vector<dip::duration> mega_times = dip::chunk_times(model, mega, table, one);
  const auto [mlo, mhi] = std::minmax_element(mega_times.begin(), mega_times.end());
  CHECK(dip::to_milliseconds(*mlo) == doctest::Approx(54.0));
  CHECK(dip::to_milliseconds(*mhi) == doctest::Approx(84.0));
}

TEST_CASE("segment groups: projectors ride with their encoder, or with the module they feed") {
  SUBCASE("vision-language preset") {
    const dip::multimodal_model model = dip::find_preset("vlm-s").model;
    const dip::chain_group_layout layout = dip::chain_groups(model, 4);
    REQUIRE(layout.groups.size() == 2);
    CHECK(layout.groups[0] == std::vector{model.at("vit"), model.at("projector")});
    CHECK(layout.groups[1] == std::vector{model.at("llm")});
    CHECK(layout.inputs[1] == std::vector<std::size_t>{0});
    CHECK(layout.inputs[0].empty());
  }
  SUBCASE("text-to-video preset") {
    const dip::multimodal_model model = dip::find_preset("t2v-s").model;
    const dip::chain_group_layout layout = dip::chain_groups(model, 4);
    REQUIRE(layout.groups.size() == 2);
    CHECK(layout.groups[0] == std::vector{model.at("llm"), model.at("projector")});
    CHECK(layout.groups[1] == std::vector{model.at("dit")});
  }
  SUBCASE("two encoders feeding one LLM, and a fusion adapter with two producers") {
    const dip::multimodal_model model = dip::model_builder("two")
                                            .add(image_encoder("vit", 8))
                                            .add(module_of_role("proj_image", 1, dip::module_role::projector))
                                            .add(video_module("video_encoder", 12, dip::module_role::encoder))
                                            .add(module_of_role("fuse", 2, dip::module_role::projector))
                                            .add(module_of_role("llm", 16, dip::module_role::backbone))
                                            .connect("vit", "proj_image")
                                            .connect("proj_image", "fuse")
                                            .connect("video_encoder", "fuse")
                                            .connect("fuse", "llm")
                                            .build();
    const dip::chain_group_layout layout = dip::chain_groups(model, 4);
    REQUIRE(layout.groups.size() == 3);
    CHECK(layout.groups[layout.group_of[model.at("vit").index()]] ==
          std::vector{model.at("vit"), model.at("proj_image")});
    CHECK(layout.groups[layout.group_of[model.at("video_encoder").index()]] == std::vector{model.at("video_encoder")});
    // 'fuse' has two producers, so it goes in front of the LLM it alone feeds.
    const std::size_t llm = layout.group_of[model.at("llm").index()];
    CHECK(layout.groups[llm] == std::vector{model.at("fuse"), model.at("llm")});
    CHECK(layout.inputs[llm].size() == 2);
  }
}

TEST_CASE("sub-microbatch size: the smallest b within 95% of peak throughput (closed form)") {
  // Per layer T(b) = o + b t; throughput b / (o + b t) is increasing, peak at the max b = 48.
  // b / (o + b t) >= x * peak  <=>  b >= x * peak * o / (1 - x * peak * t).
  const dip::multimodal_model model = dip::model_builder("enc").add(image_encoder("vit", 4)).build();
  for (const auto& [o, t] :
       {std::pair{1e-3, 1e-4}, std::pair{5e-3, 1e-4}, std::pair{1e-4, 1e-3}, std::pair{2e-3, 3e-5}}) {
    CAPTURE(o);
    CAPTURE(t);
    const overhead_cost_model costs{o, t};
    const std::vector<dip::module_item_profile> profiles{dip::default_item_profile(model, model.at("vit"))};
    const std::vector<dip::module_id> modules{model.at("vit")};
    for (double x : {0.5, 0.8, 0.95, 1.0}) {
      const double peak = 48.0 / (o + 48.0 * t);
      const std::size_t expected = std::size_t(std::ceil(x * peak * o / (1 - x * peak * t) - 1e-9));
      const dip::sub_microbatch_size_choice choice =
          dip::choose_sub_microbatch_size(costs, model, modules, profiles, 48, x);
      CHECK(choice.size == std::clamp<std::size_t>(expected, 1, 48));
      CHECK(choice.efficiency >= x - 1e-12);
    }
  }
  CHECK_THROWS_WITH_AS(
      dip::choose_sub_microbatch_size(overhead_cost_model{1e-3, 1e-4}, model, std::vector{model.at("vit")},
                                      std::vector{dip::default_item_profile(model, model.at("vit"))}, 48, 1.5),
      doctest::Contains("threshold must be in (0, 1]"), dip::error);
}

TEST_CASE("segment counts: the paper's floor(T_i / T_1) and the refined rule on a model with known answers") {
  // Encoder: 8 layers of 1 ms; LLM: 28 layers of 1 ms; P = 4. T_llm / T_enc = 3.5, so the paper
  // gives K = 3 (12 chunks, the longest 3 layers = 3 ms) while the encoder's chunks are 2 ms;
  // K = 4 (16 chunks, longest 2 ms) matches them exactly, and the refined rule finds it.
  dip::fixed_cost_table table;
  table.set("vit", std::vector<dip::fixed_layer_cost>(8, per_item(1, 2704)));
  table.set("llm", std::vector<dip::fixed_layer_cost>(28, per_item(1, 8192)));
  const dip::multimodal_model model = dip::model_builder("vlm")
                                          .add(image_encoder("vit", 8))
                                          .add(module_of_role("llm", 28, dip::module_role::backbone))
                                          .connect("vit", "llm")
                                          .build();
  dip::partition_options options;
  options.ranks = 4;
  options.sub_microbatch_size["vit"] = 1;
  SUBCASE("paper rule") {
    options.rule = dip::segment_rule::paper;
    const dip::modality_partition part = dip::partition_modalities(model, table, options);
    REQUIRE(part.groups.size() == 2);
    CHECK(part.groups[0].segments_per_rank == 1);
    CHECK(part.groups[1].paper_segments == 3);
    CHECK(part.groups[1].segments_per_rank == 3);
    CHECK(part.placement.chains[1].size() == 12);
  }
  SUBCASE("refined rule") {
    const dip::modality_partition part = dip::partition_modalities(model, table, options);
    CHECK(part.groups[1].paper_segments == 3);
    CHECK(part.groups[1].segments_per_rank == 4);
    CHECK(part.placement.chains[1].size() == 16);
    for (dip::duration t : part.chunk_time) CHECK(dip::to_milliseconds(t) <= 2.0 + 1e-9);
  }
  SUBCASE("fixed by the user, and capped by the layer count") {
    options.segments_per_rank["llm"] = 7;
    CHECK(dip::partition_modalities(model, table, options).groups[1].segments_per_rank == 7);
    options.segments_per_rank["llm"] = 8;
    CHECK_THROWS_WITH_AS(dip::partition_modalities(model, table, options),
                         doctest::Contains("more chunks than its 28 layers"), dip::error);
  }
}

TEST_CASE("chunk placement: round robin and V-shape, every rank holds every module, offsets balance the ranks") {
  dip::fixed_cost_table table;
  table.set("vit", std::vector<dip::fixed_layer_cost>(12, per_item(1, 2704)));
  table.set("llm", std::vector<dip::fixed_layer_cost>(24, per_item(2, 8192)));
  const dip::multimodal_model model = dip::model_builder("vlm")
                                          .add(image_encoder("vit", 12))
                                          .add(module_of_role("llm", 24, dip::module_role::backbone))
                                          .connect("vit", "llm")
                                          .build();
  for (dip::chunk_order order : {dip::chunk_order::round_robin, dip::chunk_order::v_shape}) {
    dip::partition_options options;
    options.ranks = 3;
    options.order = order;
    options.sub_microbatch_size["vit"] = 1;
    const dip::modality_partition part = dip::partition_modalities(model, table, options);
    check_covers_every_layer(model, part.placement);
    for (std::size_t g = 0; g < part.groups.size(); ++g) {
      CHECK(ranks_of_chain(part.placement, g).size() == 3);
      const auto& chain = part.placement.chains[g];
      for (std::size_t c = 0; c < chain.size(); ++c) {
        const std::size_t expected = (dip::chunk_rank_in_order(c, 3, order) + part.groups[g].rank_offset) % 3;
        CHECK(part.placement.chunk(chain[c]).rank.index() == expected);
      }
    }
    // T_llm / T_vit = 48 / 12 = 4, so the LLM has 4 chunks per rank; each rank's work is equal.
    CHECK(part.groups[1].segments_per_rank == 4);
    CHECK(part.balance() == doctest::Approx(1.0));
  }
  CHECK(dip::chunk_rank_in_order(3, 3, dip::chunk_order::v_shape) == 2);
  CHECK(dip::chunk_rank_in_order(5, 3, dip::chunk_order::v_shape) == 0);
  CHECK(dip::chunk_rank_in_order(6, 3, dip::chunk_order::v_shape) == 0);
}

TEST_CASE("offsets: the chosen rotation is the best of all rotations (brute force over random chunk loads)") {
  std::mt19937_64 rng(9);
  for (int trial = 0; trial < 300; ++trial) {
    const std::size_t ranks = 2 + rng() % 4, groups = 1 + rng() % 3;
    std::vector<std::vector<double>> loads(groups);
    for (auto& g : loads) {
      g.resize(ranks * (1 + rng() % 3));
      for (double& x : g) x = double(1 + rng() % 50);
    }
    const auto max_load = [&](const std::vector<std::size_t>& offsets) {
      std::vector<double> per(ranks, 0);
      for (std::size_t g = 0; g < groups; ++g) {
        for (std::size_t c = 0; c < loads[g].size(); ++c) {
          per[(dip::chunk_rank_in_order(c, ranks, dip::chunk_order::round_robin) + offsets[g]) % ranks] += loads[g][c];
        }
      }
      return *std::max_element(per.begin(), per.end());
    };
    const std::vector<std::size_t> chosen = dip::detail::balance_offsets(loads, ranks, dip::chunk_order::round_robin);
    double best = std::numeric_limits<double>::infinity();
    std::vector<std::size_t> offsets(groups, 0);
    for (std::size_t code = 0; code < std::size_t(std::pow(double(ranks), double(groups))); ++code) {
      std::size_t rest = code;
      for (std::size_t g = 0; g < groups; ++g) {
        offsets[g] = rest % ranks;
        rest /= ranks;
      }
      best = std::min(best, max_load(offsets));
    }
    CHECK(max_load(chosen) == doctest::Approx(best));
  }
}

TEST_CASE("two encoders and a text-to-video model: B, K and a placement whose stage graph splits sub-microbatches") {
  SUBCASE("two encoders") {
    dip::fixed_cost_table table;
    table.set("vit", std::vector<dip::fixed_layer_cost>(8, per_item(1, 2704)));
    table.set("proj", std::vector<dip::fixed_layer_cost>(1, per_item(0.1, 169)));
    table.set("video_encoder", std::vector<dip::fixed_layer_cost>(16, per_item(1, 16384)));
    table.set("llm", std::vector<dip::fixed_layer_cost>(32, per_item(1, 8192)));
    const dip::multimodal_model model = dip::model_builder("two")
                                            .add(image_encoder("vit", 8))
                                            .add(module_of_role("proj", 1, dip::module_role::projector))
                                            .add(video_module("video_encoder", 16, dip::module_role::encoder))
                                            .add(module_of_role("llm", 32, dip::module_role::backbone))
                                            .connect("vit", "proj")
                                            .connect("proj", "llm")
                                            .connect("video_encoder", "llm")
                                            .build();
    dip::partition_options options;
    options.ranks = 4;
    const dip::modality_partition part = dip::partition_modalities(model, table, options);
    REQUIRE(part.groups.size() == 3);
    const auto chain_of = [&](const char* module) {
      for (std::size_t g = 0; g < part.groups.size(); ++g) {
        if (part.groups[g].leader == model.at(module)) return g;
      }
      FAIL("no chain led by ", module);
      return std::size_t(0);
    };
    const std::size_t image = chain_of("vit"), video = chain_of("video_encoder"), llm = chain_of("llm");
    // Costs linear in items: throughput is flat, so B = 1 everywhere; T = 8.1, 16, 32 ms.
    for (const dip::chain_group& g : part.groups) CHECK(g.sub_microbatch_size == 1);
    CHECK(part.groups[image].segments_per_rank == 1);
    CHECK(part.groups[video].paper_segments == 1);  // floor(16 / 8.1)
    CHECK(part.groups[llm].paper_segments == 3);    // floor(32 / 8.1)
    CHECK(part.policy.bin_group[model.at("vit").index()] == part.policy.bin_group[model.at("proj").index()]);
    CHECK(part.policy.items_per_sub[model.at("llm").index()] == 0);
    CHECK(part.placement.chain_inputs[llm].size() == 2);
    check_covers_every_layer(model, part.placement);

    // 5 images in 5 sub-microbatches and 2 clips in 2: the image chain (vit + proj) splits alike.
    dip::microbatch_work mb;
    mb.modules.resize(4);
    mb.modules[model.at("vit").index()].assign(5, dip::work_unit::sequence(2704));
    mb.modules[model.at("proj").index()].assign(5, dip::work_unit::sequence(169));
    mb.modules[model.at("video_encoder").index()].assign(2, dip::work_unit::sequence(16384));
    mb.modules[model.at("llm").index()].assign(1, dip::work_unit::sequence(8192));
    const dip::stage_graph graph = dip::build_stage_graph(model, part.placement, dip::batch_work{{mb, mb}}, table);
    CHECK(graph.sub_count(0, image) == 5);
    CHECK(graph.sub_count(1, video) == 2);
    CHECK(graph.sub_count(1, llm) == 1);
    const auto& chains = part.placement.chains;
    CHECK(chains[image].size() == 4);  // K = 1 for the fastest, the image chain (8.1 ms)
    CHECK(chains[video].size() == 8);  // refined: 2 ms chunks match the image chain's 2.1 ms
    CHECK(chains[llm].size() == 16);   // likewise 32 layers in 16 chunks of 2 ms
    CHECK(graph.size() == 2 * 2 * (5 * chains[image].size() + 2 * chains[video].size() + chains[llm].size()));
  }
  SUBCASE("text-to-video preset") {
    const dip::model_preset preset = dip::find_preset("t2v-s");
    const dip::gpu_spec gpu = dip::find_gpu("H800");
    dip::partition_options options;
    options.ranks = 4;
    options.memory = {4, 16.0, gpu.memory};
    const dip::modality_partition part =
        dip::partition_modalities(preset.model, dip::analytic_cost_model(gpu, 4), options);
    REQUIRE(part.groups.size() == 2);
    CHECK(part.groups[0].kind == dip::item_kind::caption);
    CHECK(part.groups[1].kind == dip::item_kind::clip);
    CHECK(part.groups[0].sub_microbatch_size > 1);  // 64-token captions are too small alone
    CHECK(part.groups[0].efficiency >= 0.95);
    CHECK(part.groups[1].segments_per_rank > part.groups[0].segments_per_rank);
    CHECK(part.groups[1].segments_per_rank <= 28 / 4);  // capped by the DiT's layers
    check_covers_every_layer(preset.model, part.placement);
  }
}

TEST_CASE("presets on H800: every rank holds every module and DIP balances ranks better than both baselines") {
  const dip::gpu_spec gpu = dip::find_gpu("H800");
  for (const char* name : {"vlm-s", "vlm-m", "vlm-l", "t2v-s", "t2v-l"}) {
    CAPTURE(name);
    const dip::model_preset preset = dip::find_preset(name);
    const dip::analytic_cost_model costs(gpu, preset.parallel.tp);
    dip::partition_options options;
    options.ranks = preset.parallel.pp;
    options.memory = {preset.parallel.tp, 16.0, gpu.memory};
    const dip::modality_partition part = dip::partition_modalities(preset.model, costs, options);
    check_covers_every_layer(preset.model, part.placement);
    for (std::size_t g = 0; g < part.groups.size(); ++g) {
      CHECK(ranks_of_chain(part.placement, g).size() == std::size_t(options.ranks));
      CHECK(part.groups[g].sub_microbatch_size >= 1);
      CHECK(part.groups[g].efficiency >= 0.95);
    }
    for (dip::bytes b : part.weight_memory) CHECK(b <= gpu.memory);
    const auto work_of = [&](const dip::module_spec& m) { return dip::uniform_module_work(preset.model, m); };
    const auto once = [](const dip::chunk_spec&) { return 1.0; };
    const dip::placement mega = dip::megatron_partition(preset.model, options.ranks);
    const dip::placement best = dip::balanced_partition(preset.model, costs, work_of, options.ranks);
    const double mega_balance =
        dip::max_over_mean(dip::rank_totals(mega, dip::chunk_times(preset.model, mega, costs, work_of), once));
    const double best_balance =
        dip::max_over_mean(dip::rank_totals(best, dip::chunk_times(preset.model, best, costs, work_of), once));
    CHECK(part.balance() < 1.05);
    CHECK(part.balance() <= best_balance);
    CHECK(best_balance < mega_balance);
  }
}

TEST_CASE("a placement whose weights do not fit the GPU is an error giving needed and available bytes") {
  const dip::model_preset preset = dip::find_preset("vlm-l");
  const dip::gpu_spec gpu = dip::find_gpu("H800");
  dip::partition_options options;
  options.ranks = 2;
  options.memory = {1, 16.0, gpu.memory};
  CHECK_THROWS_WITH_AS(dip::partition_modalities(preset.model, dip::analytic_cost_model(gpu, 1), options),
                       doctest::Contains("rank 0 needs"), dip::error);
  CHECK_THROWS_WITH_AS(dip::partition_modalities(preset.model, dip::analytic_cost_model(gpu, 1), options),
                       doctest::Contains("available per GPU"), dip::error);
  CHECK_THROWS_WITH_AS(dip::megatron_partition(preset.model, 2, 1, {1, 16.0, gpu.memory}),
                       doctest::Contains("do not fit"), dip::error);
}

TEST_CASE("partition errors: too few layers for the ranks, unknown module names") {
  dip::fixed_cost_table table;
  table.set("vit", std::vector<dip::fixed_layer_cost>(3, per_item(1, 2704)));
  table.set("llm", std::vector<dip::fixed_layer_cost>(8, per_item(1, 8192)));
  const dip::multimodal_model model = dip::model_builder("vlm")
                                          .add(image_encoder("vit", 3))
                                          .add(module_of_role("llm", 8, dip::module_role::backbone))
                                          .connect("vit", "llm")
                                          .build();
  dip::partition_options options;
  options.ranks = 4;
  // A 3-layer encoder cannot span 4 ranks; the LLM has only it as producer, so it rides in front
  // of the LLM's chain, and the chain (images and a packed sequence) runs microbatches whole.
  const dip::modality_partition part = dip::partition_modalities(model, table, options);
  CHECK(part.groups.size() == 1);
  CHECK(part.policy.items_per_sub == std::vector<std::size_t>{0, 0});
  options.sub_microbatch_size["nonexistent"] = 2;
  CHECK_THROWS_WITH_AS(dip::partition_modalities(model, table, options), doctest::Contains("nonexistent"), dip::error);
}
