// Sequence packing as trainers do it: a stream of samples becomes a stream of packed
// microbatches, greedily (next-fit: a sample that does not fit the open microbatch closes it and
// opens the next), in stream order.
//
// The model decides the rules (packing_kind_of):
// - vision-language (it has an image encoder): one packed sequence of at most 8192 LLM tokens
//   (text tokens + each image's LLM tokens) holding at most 48 images;
// - text-to-video (it has a video module): at most 8 clips per microbatch totalling at most 16 s.
//   A clip longer than the model's max_clip_seconds is first cut into consecutive pieces of at
//   most that length (30 s at 16 s -> 16 s + 14 s), each conditioned on the sample's caption.
//   The paper says "< 16 s"; it also trains on 16 s clips, which only fit when the bound is
//   inclusive, so a microbatch may total exactly 16 s;
// - text only: one packed sequence of at most 8192 text tokens (images and clips are ignored:
//   a plain LLM trains on the text alone).
// A sample too large for an empty microbatch is truncated, never silently dropped: it keeps its
// first images while they fit (at most 48, their tokens within 8192), then as much text as the
// remaining tokens allow; a clip piece longer than the duration limit is shortened to it. Every
// cut is counted in packing_stats; a sample left with nothing to train on is counted as dropped.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dip/batch/module_items.hpp"
#include "dip/batch/trace.hpp"
#include "dip/core/error.hpp"
#include "dip/model/model.hpp"

namespace dip {

enum class packing_kind { text, vision_language, text_to_video };

constexpr std::string_view to_string(packing_kind kind) noexcept {
  switch (kind) {
    case packing_kind::text: return "text";
    case packing_kind::vision_language: return "vision-language";
    case packing_kind::text_to_video: return "text-to-video";
  }
  return "?";
}

// A model with a video module packs clips, else one with an image encoder packs images and text,
// else text alone.
inline packing_kind packing_kind_of(const multimodal_model& model) {
  if (find_video_encoding(model) != nullptr) return packing_kind::text_to_video;
  if (find_image_encoding(model) != nullptr) return packing_kind::vision_language;
  return packing_kind::text;
}

struct packing_limits {
  std::int64_t max_tokens = 8192;                      // LLM tokens per packed sequence
  std::size_t max_images = max_images_per_microbatch;  // 48
  std::size_t max_clips = max_clips_per_microbatch;    // 8
  double max_seconds = 16;                             // clip seconds per microbatch, in all
};

inline void validate(const packing_limits& limits) {
  require(limits.max_tokens > 0, errc::invalid_argument, "packing_limits.max_tokens", "must be > 0");
  require(limits.max_images > 0, errc::invalid_argument, "packing_limits.max_images", "must be > 0");
  require(limits.max_clips > 0, errc::invalid_argument, "packing_limits.max_clips", "must be > 0");
  require(std::isfinite(limits.max_seconds) && limits.max_seconds > 0, errc::invalid_argument,
          "packing_limits.max_seconds", "must be finite and > 0");
}

// An image in a packed microbatch; `sample` is the stream index of the sample it came from.
struct packed_image {
  std::uint64_t sample = 0;
  std::int64_t tokens = 0;          // LLM-side tokens
  std::int64_t encoder_tokens = 0;  // vision-encoder patch tokens
  friend bool operator==(const packed_image&, const packed_image&) = default;
};

// A clip (or a piece of a longer one: `piece` counts from 0) conditioned on its caption.
struct packed_clip {
  std::uint64_t sample = 0;
  std::size_t piece = 0;
  double seconds = 0;
  std::int64_t frames = 0;
  std::int64_t latent_tokens = 0;
  std::int64_t caption_tokens = 0;  // the conditioning the decoder cross-attends to
  friend bool operator==(const packed_clip&, const packed_clip&) = default;
};

// One packed microbatch: what it holds and what each module's items are.
struct packed_microbatch {
  std::vector<std::uint64_t> samples;  // stream indices of the samples (or clip pieces) in it
  std::int64_t text_tokens = 0;        // text the LLM sees (text-to-video: the captions)
  std::int64_t image_tokens = 0;       // images' LLM-side tokens
  std::int64_t encoder_tokens = 0;     // images' encoder patch tokens
  std::vector<packed_image> images;
  std::vector<packed_clip> clips;
  std::vector<std::int64_t> captions;  // caption-encoder items (text-to-video): their lengths
  // Tokens of each sample in the packed LLM sequence (text + image tokens): attention stays
  // within a sample, as varlen flash-attention trainers run it, so token pairs are the sum of
  // their squares. Empty for text-to-video (its LLM encodes captions).
  std::vector<std::int64_t> sequence_lengths;

  std::int64_t llm_tokens() const noexcept { return text_tokens + image_tokens; }
  std::int64_t frames() const noexcept {
    std::int64_t total = 0;
    for (const packed_clip& c : clips) total += c.frames;
    return total;
  }
  double seconds() const noexcept {
    double total = 0;
    for (const packed_clip& c : clips) total += c.seconds;
    return total;
  }
  bool empty() const noexcept { return samples.empty(); }
  friend bool operator==(const packed_microbatch&, const packed_microbatch&) = default;
};

// What packing had to cut (all counts since the packer was made).
struct packing_stats {
  std::uint64_t samples = 0;               // samples added
  std::uint64_t microbatches = 0;          // microbatches closed
  std::uint64_t truncated_samples = 0;     // samples (or clip pieces) cut to fit an empty microbatch
  std::int64_t truncated_text_tokens = 0;  // text tokens cut away
  std::uint64_t truncated_images = 0;      // images cut away
  double truncated_seconds = 0;            // clip seconds cut away
  std::uint64_t dropped_samples = 0;       // samples with nothing left to train on
  std::uint64_t cut_clips = 0;             // clips longer than the model's maximum, cut into pieces
  std::uint64_t clip_pieces = 0;           // pieces those cuts produced
};

// Greedy packer for one model. Feed samples with add(); take() hands out closed microbatches in
// order. The open microbatch carries over between calls, as in a trainer's data loader.
class sequence_packer {
 public:
  explicit sequence_packer(const multimodal_model& model, packing_limits limits = {})
      : kind_(packing_kind_of(model)), limits_(limits) {
    validate(limits_);
    if (const image_encoding* e = find_image_encoding(model)) image_ = *e;
    if (const video_encoding* e = find_video_encoding(model)) video_ = *e;
  }

  packing_kind kind() const noexcept { return kind_; }
  const packing_limits& limits() const noexcept { return limits_; }
  const packing_stats& stats() const noexcept { return stats_; }

  // Packs `sample`, the `index`-th of the stream (for bookkeeping and messages). Throws
  // dip::error for content the model cannot train on: clips for a vision-language model,
  // images for a text-to-video model, a clip cut into more than 65536 pieces.
  void add(const training_sample& sample, std::uint64_t index) {
    ++stats_.samples;
    switch (kind_) {
      case packing_kind::text: add_sequence(index, sample.text_tokens, {}); break;
      case packing_kind::vision_language: {
        require(sample.clips.empty(), errc::invalid_argument, "sample " + std::to_string(index),
                "has video clips, but a vision-language model has no video module");
        std::vector<image_tokens> images;
        for (const trace_image& image : sample.images) images.push_back(resolve_image(image, *image_));
        add_sequence(index, sample.text_tokens, images);
        break;
      }
      case packing_kind::text_to_video: {
        require(sample.images.empty(), errc::invalid_argument, "sample " + std::to_string(index),
                "has images, but a text-to-video model has no image encoder");
        add_clips(index, sample);
        break;
      }
    }
  }

  std::size_t ready() const noexcept { return ready_.size(); }

  // The oldest closed microbatch. Throws dip::error if none is ready.
  packed_microbatch take() {
    require(!ready_.empty(), errc::invalid_argument, "sequence_packer::take", "no packed microbatch is ready");
    packed_microbatch next = std::move(ready_.front());
    ready_.pop_front();
    return next;
  }

  // Closes the open microbatch, if it holds anything (the end of a finite stream).
  void flush() { close(); }

 private:
  void close() {
    if (open_.empty()) return;
    ready_.push_back(std::move(open_));
    open_ = {};
    seconds_ = 0;
    ++stats_.microbatches;
  }

  static void note_sample(packed_microbatch& mb, std::uint64_t index) {
    if (mb.samples.empty() || mb.samples.back() != index) mb.samples.push_back(index);
  }

  // One sample into the packed LLM sequence (vision-language and text).
  void add_sequence(std::uint64_t index, std::int64_t text, std::vector<image_tokens> images) {
    std::int64_t image_sum = 0;
    for (const image_tokens& i : images) image_sum += i.tokens;
    if (images.size() > limits_.max_images || text + image_sum > limits_.max_tokens) {
      // Too large even for an empty microbatch: keep the first images that fit, then text.
      std::vector<image_tokens> kept;
      std::int64_t kept_sum = 0;
      for (const image_tokens& i : images) {
        if (kept.size() == limits_.max_images || kept_sum + i.tokens > limits_.max_tokens) break;
        kept.push_back(i);
        kept_sum += i.tokens;
      }
      const std::int64_t kept_text = std::min(text, limits_.max_tokens - kept_sum);
      ++stats_.truncated_samples;
      stats_.truncated_images += images.size() - kept.size();
      stats_.truncated_text_tokens += text - kept_text;
      images = std::move(kept);
      image_sum = kept_sum;
      text = kept_text;
    }
    if (text + image_sum == 0) {
      ++stats_.dropped_samples;
      return;
    }
    const bool fits = open_.llm_tokens() + text + image_sum <= limits_.max_tokens &&
                      open_.images.size() + images.size() <= limits_.max_images;
    if (!fits) close();
    note_sample(open_, index);
    open_.text_tokens += text;
    open_.image_tokens += image_sum;
    for (const image_tokens& i : images) {
      open_.images.push_back({index, i.tokens, i.encoder_tokens});
      open_.encoder_tokens += i.encoder_tokens;
    }
    open_.sequence_lengths.push_back(text + image_sum);
  }

  // A clip that would be cut into more pieces than this is refused (dip::error invalid_argument):
  // a day of video at 1.3 s pieces. Every piece is packed, so a clip of 1e300 s (or a model
  // whose max_clip_seconds is a sliver) would otherwise loop for ages, and the count overflow.
  static constexpr double max_pieces_per_clip = 65536;

  void add_clips(std::uint64_t index, const training_sample& sample) {
    if (sample.clips.empty()) {
      ++stats_.dropped_samples;  // a caption without a clip gives the decoder nothing to learn
      return;
    }
    const double longest = video_->max_clip_seconds;
    std::size_t piece = 0;
    for (const trace_clip& clip : sample.clips) {
      std::int64_t pieces = 1;
      if (clip.seconds > longest) {
        if (!(clip.seconds / longest <= max_pieces_per_clip)) {
          throw error(errc::invalid_argument, "sample " + std::to_string(index),
                      "a clip of " + std::to_string(clip.seconds) + " s would be cut into more than 65536 pieces of " +
                          std::to_string(longest) + " s (the model's max_clip_seconds)");
        }
        pieces = detail::ceil_count(clip.seconds / longest);
        ++stats_.cut_clips;
        stats_.clip_pieces += std::uint64_t(pieces);
      }
      for (std::int64_t p = 0; p < pieces; ++p) {
        const double start = double(p) * longest;
        const double length = std::min(longest, clip.seconds - start);
        add_piece(index, piece++, length, sample.text_tokens);
      }
    }
  }

  void add_piece(std::uint64_t index, std::size_t piece, double seconds, std::int64_t caption) {
    constexpr double slack = 1e-9;  // 16 s of pieces summing to 16.000000000000004 still fit
    if (seconds > limits_.max_seconds + slack) {
      ++stats_.truncated_samples;
      stats_.truncated_seconds += seconds - limits_.max_seconds;
      seconds = limits_.max_seconds;
    }
    const bool fits = open_.clips.size() < limits_.max_clips && seconds_ + seconds <= limits_.max_seconds + slack;
    if (!fits) close();
    note_sample(open_, index);
    const clip_tokens tokens = resolve_clip(seconds, *video_);
    open_.clips.push_back({index, piece, seconds, tokens.frames, tokens.latent_tokens, caption});
    if (caption > 0) open_.captions.push_back(caption);
    open_.text_tokens += caption;
    seconds_ += seconds;
  }

  packing_kind kind_;
  packing_limits limits_;
  std::optional<image_encoding> image_;
  std::optional<video_encoding> video_;
  packed_microbatch open_;
  double seconds_ = 0;  // clip seconds in open_
  std::deque<packed_microbatch> ready_;
  packing_stats stats_;
};

// Packs a finite list of samples (indices 0, 1, ...) into microbatches, the last one partial.
inline std::vector<packed_microbatch> pack_samples(const std::vector<training_sample>& samples,
                                                   const multimodal_model& model, packing_limits limits = {}) {
  sequence_packer packer(model, limits);
  for (std::size_t i = 0; i < samples.size(); ++i) packer.add(samples[i], i);
  packer.flush();
  std::vector<packed_microbatch> out;
  while (packer.ready() > 0) out.push_back(packer.take());
  return out;
}

}  // namespace dip
