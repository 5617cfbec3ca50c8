// The dynamic workload (batch/dynamic.hpp, `--data dynamic`) follows the paper's image-count
// pattern, and the model FLOPs of a batch (cost/model_flops.hpp) add up layer by layer.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include <dip/batch/dynamic.hpp>
#include <dip/batch/model_flops.hpp>
#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/core/error.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/presets.hpp>

TEST_CASE("dynamic image bounds rise over iterations 1-5, fall to zero by 20 and stay there") {
  using b = dip::image_count_bounds;
  // Rise: the lower bound climbs 0 -> 16 under an upper bound of 32.
  CHECK(dip::dynamic_image_bounds(1) == b{0, 32});
  CHECK(dip::dynamic_image_bounds(2) == b{4, 32});
  CHECK(dip::dynamic_image_bounds(3) == b{8, 32});
  CHECK(dip::dynamic_image_bounds(4) == b{12, 32});
  CHECK(dip::dynamic_image_bounds(5) == b{16, 32});
  // Fall: both shrink linearly (16 and 32 over 15 iterations, rounded).
  CHECK(dip::dynamic_image_bounds(6) == b{15, 30});
  CHECK(dip::dynamic_image_bounds(10) == b{11, 21});
  CHECK(dip::dynamic_image_bounds(15) == b{5, 11});
  CHECK(dip::dynamic_image_bounds(19) == b{1, 2});
  CHECK(dip::dynamic_image_bounds(20) == b{0, 0});
  for (std::uint64_t i = 20; i <= 40; ++i) CHECK(dip::dynamic_image_bounds(i) == b{0, 0});
  // Never rising again after the peak, never crossing.
  for (std::uint64_t i = 1; i <= 40; ++i) {
    const b now = dip::dynamic_image_bounds(i);
    CHECK(now.low <= now.high);
    if (i > 5) {
      const b before = dip::dynamic_image_bounds(i - 1);
      CHECK(now.low <= before.low);
      CHECK(now.high <= before.high);
    }
  }
}

TEST_CASE("dynamic image counts stay within each iteration's bounds and are reproducible") {
  dip::dynamic_image_counts a(7), same(7);
  std::size_t first_min = 32, first_max = 0;  // over iteration 1's draws (bounds 0..32)
  for (std::uint64_t i = 1; i <= 40; ++i) {
    CHECK(a.next_iteration() == i);
    const std::vector<std::size_t> counts = a.next_batch(64);
    CHECK(counts == same.next_batch(64));
    const dip::image_count_bounds bounds = dip::dynamic_image_bounds(i);
    for (std::size_t c : counts) {
      CHECK(c >= bounds.low);
      CHECK(c <= bounds.high);
      if (i == 1) first_min = std::min(first_min, c);
      if (i == 1) first_max = std::max(first_max, c);
    }
  }
  // 64 uniform draws of 0..32 spread over the whole range (seeded, so this is not flaky).
  CHECK(first_min <= 2);
  CHECK(first_max >= 30);
}

TEST_CASE("the dynamic batch source packs each count into DESIGN.md's 8192-token sequence") {
  const dip::model_preset vlm = dip::find_preset("vlm-s");
  dip::batch_source source = dip::make_batch_source("dynamic", vlm.model, 3);
  for (std::uint64_t i = 1; i <= 25; ++i) {
    const dip::image_count_bounds bounds = dip::dynamic_image_bounds(i);
    for (const dip::packed_microbatch& mb : source.next_batch(8)) {
      CHECK(mb.images.size() >= bounds.low);
      CHECK(mb.images.size() <= bounds.high);
      CHECK(mb.llm_tokens() == 8192);
      CHECK(mb.image_tokens == std::int64_t(mb.images.size()) * dip::presets::image_tokens);
    }
  }
  // Text-to-video has no images to vary.
  CHECK_THROWS_AS(dip::make_batch_source("dynamic", dip::find_preset("t2v-s").model, 1), dip::error);
}

TEST_CASE("model FLOPs of a batch are the sum of its layers' forward and backward FLOPs") {
  const dip::model_preset vlm = dip::find_preset("vlm-s");
  const dip::analytic_cost_model costs(dip::h800(), 4);
  dip::batch_source source = dip::make_batch_source("uniform", vlm.model);
  const auto packed = source.next_batch(2);
  const dip::batch_work batch =
      dip::to_batch_work(dip::split_batch(packed, vlm.model, dip::unsplit_policy(vlm.model), costs));
  double expected = 0;
  for (const dip::microbatch_work& mb : batch.microbatches) {
    for (const dip::module_spec& m : vlm.model.modules()) {
      for (const dip::work_unit& w : mb.modules[m.id.index()]) {
        for (const dip::layer_spec& layer : m.layers) expected += dip::flops_of(layer, w).total();
      }
    }
  }
  const dip::model_flops_count count = dip::batch_model_flops(vlm.model, batch);
  CHECK(count.opaque_layers == 0);
  CHECK(count.flops == doctest::Approx(expected));
  // About 6 x parameters x tokens: the LLM (~8B) on 2 x 8192 tokens, the ViT (~5B) on 2 x 10
  // images of 2704 patches, plus attention.
  const double six_n_d = 6 * (8e9 * 2 * 8192 + 5e9 * 2 * 27040);
  CHECK(count.flops > 0.9 * six_n_d);
  CHECK(count.flops < 1.3 * six_n_d);
  // Splitting into sub-microbatches changes nothing: the items are independent sequences.
  dip::sub_microbatch_policy split = dip::unsplit_policy(vlm.model);
  split.items_per_sub = {3, 3, 0};
  split.bin_group = {0, 0, 2};
  const dip::batch_work finer = dip::to_batch_work(dip::split_batch(packed, vlm.model, split, costs));
  CHECK(dip::batch_model_flops(vlm.model, finer).flops == doctest::Approx(count.flops));
}
