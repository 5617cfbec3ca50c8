// Batches as the Python bindings take them: a list of microbatches, each a list of samples in
// the trace schema (dip/batch/trace.hpp), already converted to JSON.
//
// A sample is read by the trace reader itself (parse_trace_sample), so the rules and messages
// are those of a .jsonl trace; only the location is rewritten from "file:line" to
// "batch[j][i]". Each microbatch is packed by the model's rules (dip/batch/packing.hpp) and
// must fill exactly one packed microbatch: its samples are what the user put together, so
// spilling them over into a second microbatch would silently change the batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <dip/batch/packing.hpp>
#include <dip/batch/trace.hpp>
#include <dip/core/error.hpp>
#include <dip/model/model.hpp>

namespace dip::python {

struct packed_batch {
  std::vector<packed_microbatch> microbatches;
  std::vector<std::string> truncations;  // one line per sample the packer had to cut
};

inline std::string sample_where(std::size_t microbatch, std::size_t sample) {
  return "batch[" + std::to_string(microbatch) + "][" + std::to_string(sample) + "]";
}

// One sample of the trace schema, with errors located as "batch[j][i] field 'images[0].width'".
inline training_sample parse_sample(const nlohmann::json& value, std::size_t microbatch, std::size_t sample) {
  const std::string where = sample_where(microbatch, sample);
  constexpr std::string_view source = "<batch>";  // what parse_trace_sample puts before ":1"
  try {
    return parse_trace_sample(value.dump(), source, 1);
  } catch (const error& e) {
    std::string rest = e.where();
    const std::string prefix = std::string(source) + ":1";
    if (rest.starts_with(prefix)) rest = rest.substr(prefix.size());
    throw error(e.code(), where + rest, e.detail());
  }
}

inline std::string packing_limits_text(packing_kind kind, const packing_limits& limits) {
  switch (kind) {
    case packing_kind::vision_language:
      return "at most " + std::to_string(limits.max_tokens) + " LLM tokens (text + image tokens) and " +
             std::to_string(limits.max_images) + " images";
    case packing_kind::text_to_video:
      return "at most " + std::to_string(limits.max_clips) + " clips totalling " +
             std::to_string(int(limits.max_seconds)) + " s";
    case packing_kind::text: return "at most " + std::to_string(limits.max_tokens) + " text tokens";
  }
  return "?";
}

// Packs `batch` (a JSON array of arrays of sample objects) for `model`.
inline packed_batch pack_batch(const nlohmann::json& batch, const multimodal_model& model) {
  require(batch.is_array() && !batch.empty(), errc::invalid_argument, "batch",
          "expected a non-empty list of microbatches (each a list of sample dicts)");
  packed_batch out;
  for (std::size_t j = 0; j < batch.size(); ++j) {
    const std::string where = "batch[" + std::to_string(j) + "]";
    const nlohmann::json& samples = batch[j];
    require(samples.is_array() && !samples.empty(), errc::invalid_argument, where,
            "expected a non-empty list of sample dicts");
    sequence_packer packer(model);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const training_sample sample = parse_sample(samples[i], j, i);
      const packing_stats before = packer.stats();
      try {
        packer.add(sample, i);
      } catch (const error& e) {
        throw error(e.code(), sample_where(j, i), e.detail());
      }
      const packing_stats& after = packer.stats();
      if (after.truncated_samples > before.truncated_samples) {
        out.truncations.push_back(
            sample_where(j, i) + " is larger than one microbatch holds (" +
            packing_limits_text(packer.kind(), packer.limits()) +
            ") and was cut: " + std::to_string(after.truncated_text_tokens - before.truncated_text_tokens) +
            " text tokens, " + std::to_string(after.truncated_images - before.truncated_images) + " images, " +
            std::to_string(after.truncated_seconds - before.truncated_seconds) + " clip seconds");
      }
    }
    packer.flush();
    require(packer.ready() > 0, errc::invalid_argument, where,
            "has nothing a " + std::string(to_string(packer.kind())) +
                " model trains on (a text-to-video model needs clips; every sample was dropped)");
    require(packer.ready() == 1, errc::invalid_argument, where,
            "its samples fill " + std::to_string(packer.ready()) + " packed microbatches, but one holds " +
                packing_limits_text(packer.kind(), packer.limits()) + "; spread them over more microbatches");
    out.microbatches.push_back(packer.take());
  }
  return out;
}

// The samples of a packed microbatch in the trace schema, such that packing them again gives the
// same images, clips and sequences (what planning reads): each image as its LLM-token count,
// each clip (piece) with its caption as the sample's text.
inline nlohmann::json samples_of(const packed_microbatch& mb, const multimodal_model& model) {
  nlohmann::json samples = nlohmann::json::array();
  switch (packing_kind_of(model)) {
    case packing_kind::text:
      for (std::int64_t length : mb.sequence_lengths)
        samples.push_back(nlohmann::json::object({{"text_tokens", length}}));
      break;
    case packing_kind::vision_language:
      for (std::size_t s = 0; s < mb.samples.size() && s < mb.sequence_lengths.size(); ++s) {
        nlohmann::json images = nlohmann::json::array();
        std::int64_t text = mb.sequence_lengths[s];
        // One sequence holds every image (the "dynamic" source's microbatches do not number
        // their images' samples); otherwise images name the sample they came from.
        const bool all_images = mb.sequence_lengths.size() == 1;
        for (const packed_image& image : mb.images) {
          if (!all_images && image.sample != mb.samples[s]) continue;
          images.push_back(nlohmann::json::object({{"tokens", image.tokens}}));
          text -= image.tokens;
        }
        nlohmann::json sample = nlohmann::json::object({{"text_tokens", text}});
        if (!images.empty()) sample["images"] = std::move(images);
        samples.push_back(std::move(sample));
      }
      break;
    case packing_kind::text_to_video: {
      // One sample per stream sample, its clip pieces in order.
      std::map<std::uint64_t, std::size_t> position;
      for (const packed_clip& clip : mb.clips) {
        auto [at, fresh] = position.try_emplace(clip.sample, samples.size());
        if (fresh)
          samples.push_back(
              nlohmann::json::object({{"text_tokens", clip.caption_tokens}, {"clips", nlohmann::json::array()}}));
        samples[at->second]["clips"].push_back(nlohmann::json::object({{"seconds", clip.seconds}}));
      }
      break;
    }
  }
  return samples;
}

// What planning reads of a packed microbatch (not which stream samples it came from).
inline bool same_work(const packed_microbatch& a, const packed_microbatch& b) {
  const auto clip_work = [](const packed_microbatch& mb) {
    std::vector<std::tuple<double, std::int64_t, std::int64_t, std::int64_t>> clips;
    for (const packed_clip& c : mb.clips) clips.emplace_back(c.seconds, c.frames, c.latent_tokens, c.caption_tokens);
    return clips;
  };
  const auto image_work = [](const packed_microbatch& mb) {
    std::vector<std::pair<std::int64_t, std::int64_t>> images;
    for (const packed_image& i : mb.images) images.emplace_back(i.tokens, i.encoder_tokens);
    return images;
  };
  return a.text_tokens == b.text_tokens && a.image_tokens == b.image_tokens && a.encoder_tokens == b.encoder_tokens &&
         a.captions == b.captions && a.sequence_lengths == b.sequence_lengths && image_work(a) == image_work(b) &&
         clip_work(a) == clip_work(b);
}

// A source's batch as sample dicts. Throws dip::error when the dicts would not plan the same
// work (the "uniform" text-to-video microbatch has several captions per clip, which the trace
// schema cannot say), rather than hand back a batch that differs from the source's.
inline nlohmann::json batch_as_samples(const std::vector<packed_microbatch>& batch, const multimodal_model& model,
                                       const std::string& source) {
  nlohmann::json out = nlohmann::json::array();
  for (const packed_microbatch& mb : batch) out.push_back(samples_of(mb, model));
  const packed_batch again = pack_batch(out, model);
  for (std::size_t j = 0; j < batch.size(); ++j) {
    require(same_work(batch[j], again.microbatches[j]), errc::invalid_argument, source,
            "microbatch " + std::to_string(j) +
                " cannot be written as sample dicts (for example several captions per clip); plan it with "
                "dip-plan --data " +
                source + " instead");
  }
  return out;
}

}  // namespace dip::python
