// Workload traces: the documented shapes load, tokens follow the model's encodings, and every
// malformed line names the file, the line and the field.
#include <doctest/doctest.h>

#include <filesystem>
#include <sstream>
#include <string>

#include <dip/batch/trace.hpp>
#include <dip/model/presets.hpp>

#include "test_files.hpp"

namespace {

using dip_test::data_file;
using dip_test::shared_file;

// The message a one-line trace produces ("" when it loads).
std::string trace_error_of(const std::string& text) {
  std::istringstream in(text);
  try {
    (void)dip::parse_trace(in, "data.jsonl");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::parse_error);
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the issue's vision-language shapes load") {
  const auto samples = dip::read_trace(data_file("vlm_trace.jsonl"));
  REQUIRE(samples.size() == 6);  // the blank line is skipped
  CHECK(samples[0] ==
        dip::training_sample{532, {dip::trace_image::with_tokens(169), dip::trace_image::with_tokens(169)}, {}});
  CHECK(samples[1] ==
        dip::training_sample{48, {dip::trace_image::default_size(), dip::trace_image::default_size()}, {}});
  CHECK(samples[2].images == std::vector{dip::trace_image::with_pixels(640, 480)});
  CHECK(samples[3] == dip::training_sample{900, {}, {}});
  CHECK(samples[4].images.size() == 3);
  CHECK(samples[5].images.empty());
}

TEST_CASE("the issue's video shape loads") {
  const auto samples = dip::read_trace(data_file("video_trace.jsonl"));
  REQUIRE(samples.size() == 5);
  CHECK(samples[0] == dip::training_sample{80, {}, {dip::trace_clip{12.3}}});
  CHECK(samples[2].clips.size() == 2);
  CHECK(samples[4].text_tokens == 0);  // a clip without a caption is still a sample
}

TEST_CASE("images and clips resolve with the model's patch size, merge and frame rate") {
  const dip::image_encoding vit = *dip::find_image_encoding(dip::find_preset("vlm-s").model);
  CHECK(dip::resolve_image(dip::trace_image::default_size(), vit) == dip::image_tokens{169, 2704});
  CHECK(dip::resolve_image(dip::trace_image::with_pixels(728, 728), vit) == dip::image_tokens{169, 2704});
  // ceil(640 / 56) x ceil(480 / 56) = 12 x 9 LLM tokens, each 4 x 4 encoder patches.
  CHECK(dip::resolve_image(dip::trace_image::with_pixels(640, 480), vit) == dip::image_tokens{108, 1728});
  CHECK(dip::resolve_image(dip::trace_image::with_pixels(1, 1), vit) == dip::image_tokens{1, 16});
  CHECK(dip::resolve_image(dip::trace_image::with_tokens(64), vit) == dip::image_tokens{64, 1024});

  const dip::video_encoding dit = *dip::find_video_encoding(dip::find_preset("t2v-s").model);
  CHECK(dip::resolve_clip(12.3, dit) == dip::clip_tokens{12.3, 197, 197 * 64});  // 196.8 frames -> 197
  CHECK(dip::resolve_clip(16, dit) == dip::clip_tokens{16, 256, 256 * 64});
  CHECK(dip::resolve_clip(0.1 * 3, dit).frames == 5);  // 4.8 -> 5
  CHECK(dip::resolve_clip(0.5, dit).frames == 8);      // exactly 8, not 9

  CHECK(dip::find_image_encoding(dip::find_preset("t2v-s").model) == nullptr);
  CHECK(dip::find_video_encoding(dip::find_preset("vlm-s").model) == nullptr);
}

TEST_CASE("a bad line names file, line and field") {
  try {
    (void)dip::read_trace(data_file("bad_trace_width.jsonl"));
    FAIL("a negative width must not load");
  } catch (const dip::error& e) {
    CHECK(e.code() == dip::errc::parse_error);
    CHECK(e.where() == data_file("bad_trace_width.jsonl") + ":4 field 'images[1].width'");
    CHECK(e.detail().find("got -3") != std::string::npos);
  }

  struct bad_case {
    std::string line;
    std::string expected;  // the message starts with this
  };
  const bad_case cases[] = {
      {R"({"text_tokens": 5, "images": [{"width": 640}]})",
       "data.jsonl:1 field 'images[0].height': required field is missing"},
      {R"({"text_tokens": 5, "images": [{"width": 0, "height": 3}]})",
       "data.jsonl:1 field 'images[0].width': expected an integer in [1"},
      {R"({"text_tokens": 5, "images": [{"tokens": 2.5}]})",
       "data.jsonl:1 field 'images[0].tokens': expected an integer"},
      {R"({"text_tokens": 5, "images": [{"tokens": 9, "width": 2, "height": 2}]})",
       "data.jsonl:1 field 'images[0].tokens': give either"},
      {R"({"text_tokens": 5, "images": [{"pixels": 9}]})", "data.jsonl:1 field 'images[0].pixels': unknown field"},
      {R"({"text_tokens": 5, "images": [7]})", "data.jsonl:1 field 'images[0]': expected an object"},
      {R"({"text_tokens": 5, "images": -1})", "data.jsonl:1 field 'images': expected an integer in [0"},
      {R"({"text_tokens": 5, "images": "two"})", "data.jsonl:1 field 'images': expected a count or an array"},
      {R"({"text_tokens": -5})", "data.jsonl:1 field 'text_tokens': expected an integer in [0"},
      {R"({"text_tokens": "5"})", "data.jsonl:1 field 'text_tokens': expected an integer, got string"},
      {R"({"text_tokens": 1e999})", "data.jsonl:1: malformed JSON: number overflow"},
      {R"({"images": 1})", "data.jsonl:1 field 'text_tokens': required field is missing"},
      {R"({"text_tokens": 5, "image": 1})", "data.jsonl:1 field 'image': unknown field"},
      {R"({"text_tokens": 0})", "data.jsonl:1: empty sample"},
      {R"({"text_tokens": 0, "images": 0, "clips": []})", "data.jsonl:1: empty sample"},
      {R"({"text_tokens": 5, "clips": [{"seconds": 0}]})",
       "data.jsonl:1 field 'clips[0].seconds': expected a finite number > 0"},
      {R"({"text_tokens": 5, "clips": [{"seconds": -2}]})",
       "data.jsonl:1 field 'clips[0].seconds': expected a finite number > 0"},
      {R"({"text_tokens": 5, "clips": [{}]})", "data.jsonl:1 field 'clips[0].seconds': required field is missing"},
      {R"({"text_tokens": 5, "clips": [{"seconds": 2, "fps": 8}]})",
       "data.jsonl:1 field 'clips[0].fps': unknown field"},
      {R"({"text_tokens": 5, "clips": [3.5]})", "data.jsonl:1 field 'clips[0]': expected an object"},
      {R"({"text_tokens": 5, "clips": {"seconds": 3}})", "data.jsonl:1 field 'clips': expected an array"},
      {R"([1, 2])", "data.jsonl:1: expected a JSON object per line"},
      {R"({"text_tokens": 5,)", "data.jsonl:1: malformed JSON"},
      {R"(NaN)", "data.jsonl:1: malformed JSON"},
  };
  for (const bad_case& c : cases) {
    CAPTURE(c.line);
    const std::string message = trace_error_of(c.line);
    CHECK_MESSAGE(message.rfind(c.expected, 0) == 0, message);
  }
  // The line number counts blank lines.
  CHECK(
      trace_error_of("{\"text_tokens\": 1}\n\n{\"text_tokens\": -1}\n").rfind("data.jsonl:3 field 'text_tokens'", 0) ==
      0);
}

TEST_CASE("empty and blank traces are errors") {
  for (const char* name : {"empty_trace.jsonl", "blank_trace.jsonl"}) {
    CAPTURE(name);
    try {
      (void)dip::read_trace(data_file(name));
      FAIL("a trace without samples must not load");
    } catch (const dip::error& e) {
      CHECK(e.code() == dip::errc::parse_error);
      CHECK(e.where() == data_file(name));
      CHECK(e.detail().find("no samples") != std::string::npos);
    }
  }
  CHECK_THROWS_AS(dip::read_trace(data_file("no_such_trace.jsonl")), dip::error);
}

TEST_CASE("the shared real-data traces load") {
  struct expected_trace {
    const char* name;
    std::size_t samples;
  };
  for (const expected_trace t :
       {expected_trace{"vlm-scienceqa.jsonl", 4241}, expected_trace{"vlm-coco-captions.jsonl", 25014},
        expected_trace{"video-msrvtt.jsonl", 10000}}) {
    const std::string path = shared_file(t.name);
    if (!std::filesystem::exists(path)) {
      MESSAGE("skipped: " << path << " is not present");
      continue;
    }
    CAPTURE(path);
    const auto samples = dip::read_trace(path);
    CHECK(samples.size() == t.samples);
    std::size_t with_images = 0, clips = 0;
    for (const auto& s : samples) {
      with_images += s.images.empty() ? 0 : 1;
      clips += s.clips.size();
    }
    if (std::string(t.name) == "vlm-scienceqa.jsonl") {
      // README: 47.6% of ScienceQA samples have one image.
      CHECK(double(with_images) / double(samples.size()) == doctest::Approx(0.476).epsilon(0.01));
    }
    if (std::string(t.name) == "video-msrvtt.jsonl") CHECK(clips == t.samples);
  }
}
