// Sequence packing and batch sources: the trainers' limits hold, packing is greedy, every sample
// (or clip piece) lands in exactly one microbatch, and sources are reproducible.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <dip/batch/packing.hpp>
#include <dip/batch/source.hpp>
#include <dip/batch/synthetic.hpp>
#include <dip/model/presets.hpp>

#include "test_files.hpp"

namespace {

using dip_test::data_file;
using dip_test::shared_file;

const dip::multimodal_model& vlm() {
  static const dip::multimodal_model model = dip::find_preset("vlm-s").model;
  return model;
}
const dip::multimodal_model& t2v() {
  static const dip::multimodal_model model = dip::find_preset("t2v-s").model;
  return model;
}

std::vector<dip::training_sample> synthetic(const std::string& name, std::uint64_t seed, std::size_t n) {
  dip::synthetic_samples source(name, seed);
  std::vector<dip::training_sample> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(source.next());
  return out;
}

// Limits, bookkeeping and greediness of a vision-language (or text) packing of `samples`.
void check_sequence_packing(const std::vector<dip::training_sample>& samples,
                            const std::vector<dip::packed_microbatch>& packed, const dip::packing_stats& stats,
                            bool with_images) {
  std::map<std::uint64_t, int> seen;
  for (std::size_t j = 0; j < packed.size(); ++j) {
    const dip::packed_microbatch& mb = packed[j];
    CAPTURE(j);
    REQUIRE_FALSE(mb.empty());
    CHECK(mb.llm_tokens() <= 8192);
    CHECK(mb.images.size() <= 48);
    CHECK(mb.clips.empty());
    CHECK(mb.sequence_lengths.size() == mb.samples.size());
    std::int64_t lengths = 0, image_tokens = 0, encoder_tokens = 0;
    for (std::int64_t l : mb.sequence_lengths) lengths += l;
    for (const dip::packed_image& i : mb.images) {
      image_tokens += i.tokens;
      encoder_tokens += i.encoder_tokens;
      CHECK(std::find(mb.samples.begin(), mb.samples.end(), i.sample) != mb.samples.end());
    }
    CHECK(lengths == mb.llm_tokens());
    CHECK(image_tokens == mb.image_tokens);
    CHECK(encoder_tokens == mb.encoder_tokens);
    if (!with_images) CHECK(mb.images.empty());
    for (std::uint64_t s : mb.samples) ++seen[s];
    // Greedy: the next microbatch's first sample did not fit into this one.
    if (j + 1 < packed.size()) {
      const dip::packed_microbatch& next = packed[j + 1];
      const std::int64_t first_length = next.sequence_lengths.front();
      std::size_t first_images = 0;
      for (const dip::packed_image& i : next.images) first_images += i.sample == next.samples.front() ? 1 : 0;
      CHECK((mb.llm_tokens() + first_length > 8192 || mb.images.size() + first_images > 48));
    }
  }
  // Every sample in exactly one microbatch, unless it was dropped.
  std::size_t dropped = 0;
  for (std::uint64_t i = 0; i < samples.size(); ++i) {
    const auto found = seen.find(i);
    if (found == seen.end()) ++dropped;
    else CHECK(found->second == 1);
  }
  CHECK(dropped == stats.dropped_samples);
  CHECK(seen.size() + dropped == samples.size());
}

std::vector<dip::packed_microbatch> pack_all(const std::vector<dip::training_sample>& samples,
                                             const dip::multimodal_model& model, dip::packing_stats& stats) {
  dip::sequence_packer packer(model);
  for (std::size_t i = 0; i < samples.size(); ++i) packer.add(samples[i], i);
  packer.flush();
  stats = packer.stats();
  std::vector<dip::packed_microbatch> out;
  while (packer.ready() > 0) out.push_back(packer.take());
  CHECK(stats.microbatches == out.size());
  return out;
}

// Limits and bookkeeping of a text-to-video packing: <= 8 clips, <= 16 s, pieces <= the model's
// longest clip, each piece in exactly one microbatch, pieces adding up to the sample's clips.
void check_clip_packing(const std::vector<dip::training_sample>& samples,
                        const std::vector<dip::packed_microbatch>& packed, const dip::packing_stats& stats) {
  const dip::video_encoding video = *dip::find_video_encoding(t2v());
  std::map<std::pair<std::uint64_t, std::size_t>, int> pieces;
  std::map<std::uint64_t, double> seconds;
  std::uint64_t cut = 0;
  for (std::size_t j = 0; j < packed.size(); ++j) {
    const dip::packed_microbatch& mb = packed[j];
    CAPTURE(j);
    CHECK(mb.clips.size() >= 1);
    CHECK(mb.clips.size() <= 8);
    CHECK(mb.seconds() <= 16 + 1e-9);
    CHECK(mb.images.empty());
    CHECK(mb.sequence_lengths.empty());
    std::int64_t text = 0;
    for (const dip::packed_clip& c : mb.clips) {
      CHECK(c.seconds > 0);
      CHECK(c.seconds <= video.max_clip_seconds + 1e-9);
      CHECK(c.frames == dip::resolve_clip(c.seconds, video).frames);
      CHECK(c.latent_tokens == c.frames * video.tokens_per_frame);
      CHECK(c.caption_tokens == samples[c.sample].text_tokens);
      ++pieces[{c.sample, c.piece}];
      seconds[c.sample] += c.seconds;
      text += c.caption_tokens;
    }
    CHECK(text == mb.text_tokens);
    // Greedy: the next microbatch's first clip did not fit into this one.
    if (j + 1 < packed.size()) {
      CHECK((mb.clips.size() == 8 || mb.seconds() + packed[j + 1].clips.front().seconds > 16 + 1e-9));
    }
  }
  std::map<std::uint64_t, std::size_t> pieces_of;
  for (const auto& [key, count] : pieces) {
    CHECK(count == 1);
    ++pieces_of[key.first];
  }
  for (std::uint64_t i = 0; i < samples.size(); ++i) {
    double total = 0;
    std::size_t expected_pieces = 0;
    for (const dip::trace_clip& c : samples[i].clips) {
      total += c.seconds;
      expected_pieces +=
          c.seconds > video.max_clip_seconds ? std::size_t(std::ceil(c.seconds / video.max_clip_seconds - 1e-9)) : 1;
      cut += c.seconds > video.max_clip_seconds ? 1 : 0;
    }
    CAPTURE(i);
    CHECK(seconds[i] == doctest::Approx(total));  // consecutive pieces add up to the clip
    CHECK(pieces_of[i] == expected_pieces);
  }
  CHECK(stats.cut_clips == cut);
}

}  // namespace

TEST_CASE("the model decides the packing") {
  CHECK(dip::packing_kind_of(vlm()) == dip::packing_kind::vision_language);
  CHECK(dip::packing_kind_of(t2v()) == dip::packing_kind::text_to_video);
  CHECK(dip::packing_kind_of(dip::find_preset("llama3-8b").model) == dip::packing_kind::text);
}

TEST_CASE("DESIGN.md's two microbatches: 10 images + 6502 tokens, then 1 image + 8023 tokens") {
  const std::vector<dip::training_sample> samples{
      {6502, std::vector<dip::trace_image>(10), {}},
      {8023, std::vector<dip::trace_image>(1), {}},
  };
  const auto packed = dip::pack_samples(samples, vlm());
  REQUIRE(packed.size() == 2);
  CHECK(packed[0].llm_tokens() == 8192);
  CHECK(packed[0].images.size() == 10);
  CHECK(packed[0].encoder_tokens == 27040);
  CHECK(packed[1].llm_tokens() == 8192);
  CHECK(packed[1].images.size() == 1);
}

TEST_CASE("vision-language packing of every synthetic source respects 8192 tokens and 48 images") {
  for (const char* name : {"laion", "obelics", "scienceqa", "mixed"}) {
    CAPTURE(name);
    const auto samples = synthetic(name, 11, 5000);
    dip::packing_stats stats;
    const auto packed = pack_all(samples, vlm(), stats);
    check_sequence_packing(samples, packed, stats, true);
    if (std::string(name) == "laion") {
      // Short captions: the 48-image limit binds (48 x (169 + ~16) > 8192, so tokens bind first).
      std::size_t most = 0;
      for (const auto& mb : packed) most = std::max(most, mb.images.size());
      CHECK(most >= 40);
    }
  }
}

TEST_CASE("text-only packing counts text alone") {
  const auto samples = synthetic("obelics", 3, 2000);
  dip::packing_stats stats;
  const auto packed = pack_all(samples, dip::find_preset("llama3-8b").model, stats);
  check_sequence_packing(samples, packed, stats, false);
  CHECK(stats.truncated_samples > 0);  // some OBELICS documents exceed 8192 tokens
}

TEST_CASE("a sample too large for an empty microbatch is truncated and counted") {
  const std::vector<dip::training_sample> samples{
      {100, std::vector<dip::trace_image>(2), {}},        {10000, {}, {}},  // text cut to 8192
      {300, std::vector<dip::trace_image>(60), {}},                         // keeps 48 images (8112 tokens) + 80 text
      {0, {dip::trace_image::with_tokens(9000)}, {}},                       // nothing fits: dropped, counted
      {5, {{}, dip::trace_image::with_tokens(9000)}, {}},                   // a prefix is kept: the default image stays
  };
  dip::sequence_packer packer(vlm());
  for (std::size_t i = 0; i < samples.size(); ++i) packer.add(samples[i], i);
  packer.flush();
  std::vector<dip::packed_microbatch> packed;
  while (packer.ready() > 0) packed.push_back(packer.take());
  REQUIRE(packed.size() == 4);
  CHECK(packed[1].text_tokens == 8192);
  CHECK(packed[1].samples == std::vector<std::uint64_t>{1});
  CHECK(packed[2].images.size() == 48);
  CHECK(packed[2].text_tokens == 80);
  CHECK(packed[2].llm_tokens() == 8192);
  CHECK(packed[3].samples == std::vector<std::uint64_t>{4});
  CHECK(packed[3].images.size() == 1);
  CHECK(packed[3].llm_tokens() == 174);
  const dip::packing_stats& stats = packer.stats();
  CHECK(stats.samples == 5);
  CHECK(stats.truncated_samples == 4);
  CHECK(stats.truncated_text_tokens == 1808 + 220);
  CHECK(stats.truncated_images == 12 + 1 + 1);
  CHECK(stats.dropped_samples == 1);
}

TEST_CASE("text-to-video packing: at most 8 clips, at most 16 s, long clips cut into consecutive pieces") {
  const auto fixture = dip::read_trace(data_file("video_trace.jsonl"));
  dip::packing_stats stats;
  const auto packed = pack_all(fixture, t2v(), stats);
  check_clip_packing(fixture, packed, stats);
  CHECK(stats.cut_clips == 2);  // 22.56 s and 30 s
  CHECK(stats.clip_pieces == 4);
  // 30 s at 16 s: 16 s then 14 s.
  std::vector<double> thirty;
  for (const auto& mb : packed) {
    for (const auto& c : mb.clips) {
      if (c.sample == 3) thirty.push_back(c.seconds);
    }
  }
  CHECK(thirty == std::vector<double>{16.0, 14.0});

  const auto samples = synthetic("video", 5, 3000);
  const auto synthetic_packed = pack_all(samples, t2v(), stats);
  check_clip_packing(samples, synthetic_packed, stats);
  // Many short clips share a microbatch, up to the 8-clip limit.
  const std::vector<dip::training_sample> short_clips(20, dip::training_sample{10, {}, {dip::trace_clip{1.0}}});
  const auto eight = dip::pack_samples(short_clips, t2v());
  REQUIRE(eight.size() == 3);
  CHECK(eight[0].clips.size() == 8);
  CHECK(eight[0].captions == std::vector<std::int64_t>(8, 10));
  // Exactly 16 s fits (the bound is inclusive; see packing.hpp).
  const auto full = dip::pack_samples({{5, {}, {{8.0}}}, {5, {}, {{8.0}}}, {5, {}, {{0.5}}}}, t2v());
  REQUIRE(full.size() == 2);
  CHECK(full[0].seconds() == 16.0);
  CHECK(full[0].frames() == 256);
}

TEST_CASE("content the model cannot train on is an error naming the sample") {
  CHECK_THROWS_WITH_AS(dip::pack_samples({{5, {}, {{3.0}}}}, vlm()), doctest::Contains("sample 0: has video clips"),
                       dip::error);
  CHECK_THROWS_WITH_AS(dip::pack_samples({{5, {}, {}}, {5, {{}}, {}}}, t2v()),
                       doctest::Contains("sample 1: has images"), dip::error);
  // A caption without a clip gives the decoder nothing: dropped and counted.
  dip::sequence_packer packer(t2v());
  packer.add({5, {}, {}}, 0);
  CHECK(packer.stats().dropped_samples == 1);
  CHECK_THROWS_AS(packer.take(), dip::error);
  CHECK_THROWS_AS(dip::sequence_packer(vlm(), dip::packing_limits{.max_tokens = 0}), dip::error);
}

TEST_CASE("the shared real-data traces pack within the limits") {
  struct trace_case {
    const char* name;
    bool video;
  };
  for (const trace_case t : {trace_case{"vlm-coco-captions.jsonl", false}, trace_case{"vlm-scienceqa.jsonl", false},
                             trace_case{"video-msrvtt.jsonl", true}}) {
    const std::string path = shared_file(t.name);
    if (!std::filesystem::exists(path)) {
      MESSAGE("skipped: " << path << " is not present");
      continue;
    }
    CAPTURE(path);
    auto samples = dip::read_trace(path);
    if (samples.size() > 5000) samples.resize(5000);
    dip::packing_stats stats;
    const auto packed = pack_all(samples, t.video ? t2v() : vlm(), stats);
    if (t.video) {
      check_clip_packing(samples, packed, stats);
      CHECK(stats.cut_clips > 0);  // MSR-VTT clips last 10 to 30 s
    } else {
      check_sequence_packing(samples, packed, stats, true);
    }
  }
}

TEST_CASE("batch sources: same seed, same batches; traces in file order, wrapping around") {
  for (const char* name : {"laion", "obelics", "scienceqa", "mixed"}) {
    CAPTURE(name);
    dip::batch_source a = dip::make_batch_source(name, vlm(), 1), b = dip::make_batch_source(name, vlm(), 1),
                      c = dip::make_batch_source(name, vlm(), 2);
    for (int it = 0; it < 5; ++it) {
      const auto batch = a.next_batch(8);
      CHECK(batch.size() == 8);
      CHECK(batch == b.next_batch(8));
      CHECK(batch != c.next_batch(8));
    }
    CHECK(a.batches() == 5);
  }
  dip::batch_source video = dip::make_batch_source("video", t2v(), 1),
                    video2 = dip::make_batch_source("video", t2v(), 1);
  CHECK(video.next_batch(4) == video2.next_batch(4));

  // The fixture has 6 samples; ten 2-microbatch batches wrap around it several times.
  dip::batch_source trace = dip::make_batch_source(data_file("vlm_trace.jsonl"), vlm(), 1);
  const auto fixture = dip::read_trace(data_file("vlm_trace.jsonl"));
  std::vector<dip::training_sample> unrolled;
  for (int round = 0; round < 20; ++round) unrolled.insert(unrolled.end(), fixture.begin(), fixture.end());
  const auto expected = dip::pack_samples(unrolled, vlm());
  std::size_t next = 0;
  for (int it = 0; it < 10; ++it) {
    for (const auto& mb : trace.next_batch(2)) CHECK(mb == expected.at(next++));
  }
  CHECK(trace.stats().samples > fixture.size() * 2);
}

TEST_CASE("the uniform source repeats the uniform microbatch") {
  dip::batch_source uniform = dip::make_batch_source("uniform", vlm(), 1);
  const auto batch = uniform.next_batch(3);
  REQUIRE(batch.size() == 3);
  CHECK(batch[0] == batch[2]);
  CHECK(batch[0].images.size() == 10);
  CHECK(batch[0].llm_tokens() == 8192);
  CHECK(batch[0].text_tokens == 6502);
  CHECK(batch[0].encoder_tokens == 27040);
  const auto clip = dip::make_batch_source("uniform", t2v(), 1).next_batch(1).front();
  CHECK(clip.clips.size() == 1);
  CHECK(clip.frames() == 256);
  CHECK(clip.captions == std::vector<std::int64_t>(8, 64));
}

TEST_CASE("unknown data lists the known names; errors in a trace name it") {
  try {
    (void)dip::make_batch_source("laoin", vlm(), 1);
    FAIL("unknown data accepted");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::not_found);
    CHECK(std::string(e.what()) == "--data: unknown data 'laoin' (known: uniform, laion, obelics, scienceqa, video, "
                                   "mixed, dynamic, or a path to a .jsonl trace)");
  }
  CHECK_THROWS_WITH_AS(dip::make_batch_source("missing.jsonl", vlm(), 1), doctest::Contains("cannot open"), dip::error);
  dip::batch_source wrong = dip::make_batch_source(data_file("video_trace.jsonl"), vlm(), 1);
  CHECK_THROWS_WITH_AS(wrong.next_batch(1), doctest::Contains("video_trace.jsonl sample 1: has video clips"),
                       dip::error);
  CHECK_THROWS_AS(wrong.next_batch(0), dip::error);
  // A trace with nothing a text-to-video model trains on (captions without clips) cannot loop.
  dip::batch_source captions = dip::make_batch_source(data_file("captions_only.jsonl"), t2v(), 1);
  CHECK_THROWS_WITH_AS(captions.next_batch(1), doctest::Contains("every sample is dropped"), dip::error);
}
