// Workload traces: one training sample per line of a JSON Lines file, and how a sample's images
// and clips become tokens for a given model.
//
// Accepted shapes (docs/batches.md), one JSON object per line, blank lines skipped:
//   {"text_tokens": 532, "images": [{"tokens": 169}, {"width": 640, "height": 480}, {}]}
//   {"text_tokens": 48, "images": 2}        // shorthand: 2 images at the model's default size
//   {"text_tokens": 80, "clips": [{"seconds": 12.3}]}
// `text_tokens` is required (an integer >= 0); `images` and `clips` are optional. An image is an
// explicit LLM-token count, a pixel size, or `{}` for the model's default size. Anything else (an
// unknown field, a wrong type, a negative, zero-size or non-finite value, more than
// max_images_per_sample images, an image above 2^40 pixels, a sample with nothing in it, an
// empty file) is a dip::error of category parse_error whose where() names the file,
// the line and the field: "data.jsonl:17 field 'images[1].width'".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <istream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dip/core/error.hpp"
#include "dip/model/model.hpp"

namespace dip {

// One image of a sample, as the trace gives it: exactly one of an LLM-token count, a pixel size,
// or neither (the model's default size).
struct trace_image {
  std::optional<std::int64_t> tokens;  // tokens the LLM sees for it, after the encoder's merge
  std::optional<std::int64_t> width;   // pixels; set together with height
  std::optional<std::int64_t> height;

  static trace_image default_size() { return {}; }
  static trace_image with_tokens(std::int64_t n) { return {n, std::nullopt, std::nullopt}; }
  static trace_image with_pixels(std::int64_t w, std::int64_t h) { return {std::nullopt, w, h}; }
  friend bool operator==(const trace_image&, const trace_image&) = default;
};

struct trace_clip {
  double seconds = 0;
  friend bool operator==(const trace_clip&, const trace_clip&) = default;
};

// One training sample: its text (a caption, a document, a conversation), its images and its
// video clips. The model decides what the pieces cost (see resolve_image / resolve_clip).
struct training_sample {
  std::int64_t text_tokens = 0;
  std::vector<trace_image> images;
  std::vector<trace_clip> clips;
  friend bool operator==(const training_sample&, const training_sample&) = default;
};

// --- resolving a sample against a model ---------------------------------------------------------

// An image as a model sees it: `tokens` for the LLM (and the projector), `encoder_tokens` patch
// tokens for the vision encoder (tokens x merge^2).
struct image_tokens {
  std::int64_t tokens = 0;
  std::int64_t encoder_tokens = 0;
  friend bool operator==(const image_tokens&, const image_tokens&) = default;
};

// A clip (or a piece of one) as a model sees it: ceil(seconds x fps) frames of tokens_per_frame
// latent tokens.
struct clip_tokens {
  double seconds = 0;
  std::int64_t frames = 0;
  std::int64_t latent_tokens = 0;
  friend bool operator==(const clip_tokens&, const clip_tokens&) = default;
};

namespace detail {
// ceil that forgives the last bit of floating-point noise (12.3 s x 16 fps = 196.8 -> 197, but
// 0.1 x 30 = 3.0000000000000004 -> 3).
inline std::int64_t ceil_count(double x) { return std::int64_t(std::ceil(x - 1e-9 * std::max(1.0, x))); }
}  // namespace detail

// The encoder sees one token per patch; a merge x merge block of patches becomes one LLM token,
// so a w x h image is ceil(w / (patch * merge)) x ceil(h / (patch * merge)) LLM tokens.
inline image_tokens resolve_image(const trace_image& image, const image_encoding& encoding) {
  const std::int64_t merge_area = encoding.merge * encoding.merge;
  std::int64_t tokens = encoding.default_tokens;
  if (image.tokens) {
    tokens = *image.tokens;
  } else if (image.width && image.height) {
    const std::int64_t block = encoding.patch_size * encoding.merge;
    tokens = ((*image.width + block - 1) / block) * ((*image.height + block - 1) / block);
  }
  return {tokens, tokens * merge_area};
}

inline clip_tokens resolve_clip(double seconds, const video_encoding& encoding) {
  const std::int64_t frames = detail::ceil_count(seconds * encoding.fps);
  return {seconds, frames, frames * encoding.tokens_per_frame};
}

// The image encoding of the model's first module that has one (its vision encoder), if any.
inline const image_encoding* find_image_encoding(const multimodal_model& model) {
  for (const module_spec& m : model.modules()) {
    if (m.image) return &*m.image;
  }
  return nullptr;
}

// The video encoding of the model's first module that has one (its diffusion decoder), if any.
inline const video_encoding* find_video_encoding(const multimodal_model& model) {
  for (const module_spec& m : model.modules()) {
    if (m.video) return &*m.video;
  }
  return nullptr;
}

// --- reading traces ----------------------------------------------------------------------------

// Far above any real sample (OBELICS documents keep at most 30 images; a microbatch packs at most
// 48): a larger count is corrupt data, and `"images": 1e12` would otherwise allocate terabytes.
inline constexpr std::size_t max_images_per_sample = 4096;

namespace detail {

// Field access for one trace line, with errors located as "file:line field 'path'".
class trace_line_reader {
 public:
  trace_line_reader(std::string_view source, std::size_t line) : source_(source), line_(line) {}

  std::string where(std::string_view field = {}) const {
    std::string w = std::string(source_) + ":" + std::to_string(line_);
    if (!field.empty()) w += " field '" + std::string(field) + "'";
    return w;
  }
  [[noreturn]] void fail(std::string_view field, const std::string& what) const {
    throw error(errc::parse_error, where(field), what);
  }

  // An integer in [minimum, maximum]; 2.0 is accepted, 2.5 is not.
  std::int64_t integer(const nlohmann::json& value, std::string_view field, std::int64_t minimum,
                       std::int64_t maximum = std::int64_t{1} << 40) const {
    if (!value.is_number()) fail(field, "expected an integer, got " + std::string(value.type_name()));
    const double x = value.get<double>();
    if (!std::isfinite(x) || std::floor(x) != x || x < double(minimum) || x > double(maximum)) {
      const std::string upper = maximum == std::int64_t{1} << 40 ? "2^40" : std::to_string(maximum);
      fail(field, "expected an integer in [" + std::to_string(minimum) + ", " + upper + "], got " + value.dump());
    }
    return std::int64_t(x);
  }

  double positive_number(const nlohmann::json& value, std::string_view field) const {
    if (!value.is_number()) fail(field, "expected a number, got " + std::string(value.type_name()));
    const double x = value.get<double>();
    if (!std::isfinite(x) || x <= 0.0) fail(field, "expected a finite number > 0, got " + value.dump());
    return x;
  }

  // Rejects keys of `object` (at `path`) outside `accepted`.
  void only(const nlohmann::json& object, std::string_view path,
            std::initializer_list<std::string_view> accepted) const {
    for (auto it = object.begin(); it != object.end(); ++it) {
      bool known = false;
      std::string list;
      for (std::string_view a : accepted) {
        known = known || it.key() == a;
        list += (list.empty() ? "" : ", ") + std::string(a);
      }
      if (!known) {
        fail(std::string(path) + (path.empty() ? "" : ".") + it.key(), "unknown field (accepted here: " + list + ")");
      }
    }
  }

 private:
  std::string_view source_;
  std::size_t line_;
};

inline trace_image parse_trace_image(const nlohmann::json& value, const trace_line_reader& r, const std::string& path) {
  if (!value.is_object()) {
    r.fail(path, "expected an object ({\"tokens\": N}, {\"width\": W, \"height\": H} or {}), got " +
                     std::string(value.type_name()));
  }
  r.only(value, path, {"tokens", "width", "height"});
  trace_image image;
  if (const auto t = value.find("tokens"); t != value.end()) {
    image.tokens = r.integer(*t, path + ".tokens", 1);
  }
  const auto w = value.find("width"), h = value.find("height");
  if (w != value.end()) image.width = r.integer(*w, path + ".width", 1);
  if (h != value.end()) image.height = r.integer(*h, path + ".height", 1);
  if (image.width.has_value() != image.height.has_value()) {
    r.fail(path + (image.width ? ".height" : ".width"),
           "required field is missing (an image gives both width and height)");
  }
  if (image.tokens && image.width) {
    r.fail(path + ".tokens", "give either tokens or width/height, not both");
  }
  // Bounds the tokens resolve_image derives (at most one per pixel) as explicit ones are bounded,
  // so that tokens x merge^2 cannot overflow.
  if (image.width && double(*image.width) * double(*image.height) > double(std::int64_t{1} << 40)) {
    r.fail(path, "an image of " + std::to_string(*image.width) + " x " + std::to_string(*image.height) +
                     " pixels is above 2^40 pixels");
  }
  return image;
}

}  // namespace detail

// Parses one trace line (`line` is its 1-based number in `source`, for messages).
inline training_sample parse_trace_sample(std::string_view text, std::string_view source, std::size_t line) {
  const detail::trace_line_reader r(source, line);
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    std::string message = e.what();
    if (const auto bracket = message.find("] "); bracket != std::string::npos) message = message.substr(bracket + 2);
    throw error(errc::parse_error, r.where(), "malformed JSON: " + message);
  }
  if (!value.is_object()) r.fail("", "expected a JSON object per line, got " + std::string(value.type_name()));
  r.only(value, "", {"text_tokens", "images", "clips"});

  training_sample sample;
  const auto text_field = value.find("text_tokens");
  if (text_field == value.end()) r.fail("text_tokens", "required field is missing");
  sample.text_tokens = r.integer(*text_field, "text_tokens", 0);

  if (const auto images = value.find("images"); images != value.end()) {
    if (images->is_number()) {
      const std::int64_t count = r.integer(*images, "images", 0, std::int64_t(max_images_per_sample));
      sample.images.assign(std::size_t(count), trace_image::default_size());
    } else if (images->is_array()) {
      if (images->size() > max_images_per_sample) {
        r.fail("images", std::to_string(images->size()) + " images in one sample; at most " +
                             std::to_string(max_images_per_sample));
      }
      for (std::size_t i = 0; i < images->size(); ++i) {
        sample.images.push_back(detail::parse_trace_image((*images)[i], r, "images[" + std::to_string(i) + "]"));
      }
    } else {
      r.fail("images", "expected a count or an array of images, got " + std::string(images->type_name()));
    }
  }
  if (const auto clips = value.find("clips"); clips != value.end()) {
    if (!clips->is_array()) r.fail("clips", "expected an array of clips, got " + std::string(clips->type_name()));
    for (std::size_t i = 0; i < clips->size(); ++i) {
      const std::string path = "clips[" + std::to_string(i) + "]";
      const nlohmann::json& clip = (*clips)[i];
      if (!clip.is_object()) r.fail(path, "expected an object {\"seconds\": S}, got " + std::string(clip.type_name()));
      r.only(clip, path, {"seconds"});
      const auto seconds = clip.find("seconds");
      if (seconds == clip.end()) r.fail(path + ".seconds", "required field is missing");
      sample.clips.push_back({r.positive_number(*seconds, path + ".seconds")});
    }
  }
  if (sample.text_tokens == 0 && sample.images.empty() && sample.clips.empty()) {
    r.fail("", "empty sample: no text tokens, images or clips");
  }
  return sample;
}

// Reads a whole trace from `in`; `source` names it in messages (usually the file name). Blank
// lines are skipped; a trace without samples is an error.
inline std::vector<training_sample> parse_trace(std::istream& in, std::string_view source) {
  std::vector<training_sample> samples;
  std::string text;
  for (std::size_t line = 1; std::getline(in, text); ++line) {
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    samples.push_back(parse_trace_sample(text, source, line));
  }
  require(!samples.empty(), errc::parse_error, source, "trace has no samples (an empty or blank file)");
  return samples;
}

// Reads the trace file at `path`; messages name it by its path.
inline std::vector<training_sample> read_trace(const std::string& path) {
  std::ifstream in(path);
  require(bool(in), errc::not_found, path, "cannot open trace file");
  return parse_trace(in, path);
}

}  // namespace dip
