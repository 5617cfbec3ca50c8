// How dynamic are packed batches? For each data source, pack 100 global batches of 8
// microbatches (seed 1) and print per microbatch the distribution of images (or frames) and of
// the encoder's and the backbone's forward+backward time, plus the ratio between the heaviest
// and the lightest global batch: the dynamicity a per-batch planner has to absorb (the DIP paper
// reports up to 4.15x for text-to-video).
//
//   source --next_batch(8)--> 8 packed microbatches --per module work--> analytic H800 cost
//
// Usage: dip-example-batch_statistics [SHARED_DATA_DIR]   (default ../shared/data; run from the
// repository root). Traces that are not there are skipped with a note.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <dip/batch/source.hpp>
#include <dip/batch/splitter.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/model/hardware.hpp>
#include <dip/model/presets.hpp>

namespace {

struct distribution {
  double mean = 0, p50 = 0, p95 = 0, max = 0;
};

distribution describe(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  distribution d;
  for (double x : xs) d.mean += x;
  d.mean /= double(xs.size());
  const auto at = [&](double q) { return xs[std::min(xs.size() - 1, std::size_t(q * double(xs.size())))]; };
  d.p50 = at(0.5);
  d.p95 = at(0.95);
  d.max = xs.back();
  return d;
}

// Forward + backward time of a whole module for `work`. A module repeats one layer shape many
// times, and an analytic cost depends only on the layer's shape, so each run of equal layers is
// costed once (this keeps the example fast in Debug builds).
template <class Costs>
double module_ms(const Costs& costs, const dip::module_spec& module, const dip::work_unit& work) {
  if (work.empty()) return 0;
  double total = 0;
  for (std::size_t first = 0; first < module.layers.size();) {
    std::size_t last = first + 1;
    while (last < module.layers.size() && module.layers[last] == module.layers[first]) ++last;
    const dip::layer_cost one = costs.cost(module, first, work);
    total += dip::to_milliseconds(one.forward + one.backward()) * double(last - first);
    first = last;
  }
  return total;
}

void report(const std::string& preset_name, const std::string& data, const std::string& label) {
  const dip::model_preset preset = dip::find_preset(preset_name);
  const dip::multimodal_model& model = preset.model;
  const dip::analytic_cost_model costs(dip::find_gpu("H800"), preset.parallel.tp);
  const bool video = dip::packing_kind_of(model) == dip::packing_kind::text_to_video;

  dip::batch_source source = dip::make_batch_source(data, model, 1);
  std::vector<double> items, encoder, backbone, microbatch_ms, batch_ms;
  for (int iteration = 0; iteration < 100; ++iteration) {
    double batch_total = 0;
    for (const dip::packed_microbatch& mb : source.next_batch(8)) {
      items.push_back(video ? double(mb.frames()) : double(mb.images.size()));
      double enc = 0, back = 0;
      for (const dip::module_spec& m : model.modules()) {
        const dip::item_kind kind = dip::module_item_kind(model, m.id);
        dip::work_unit work;  // the module's work, unsplit
        for (std::size_t i = 0; i < dip::item_count(mb, kind); ++i) work += dip::item_work(mb, m, kind, i);
        const double ms = module_ms(costs, m, work);
        (kind == dip::item_kind::image || kind == dip::item_kind::caption ? enc : back) += ms;
      }
      encoder.push_back(enc);
      backbone.push_back(back);
      microbatch_ms.push_back(enc + back);
      batch_total += enc + back;
    }
    batch_ms.push_back(batch_total);
  }
  const distribution n = describe(items), e = describe(encoder), b = describe(backbone);
  const double heaviest = *std::max_element(batch_ms.begin(), batch_ms.end());
  const double lightest = *std::min_element(batch_ms.begin(), batch_ms.end());
  const auto [light_mb, heavy_mb] = std::minmax_element(microbatch_ms.begin(), microbatch_ms.end());
  std::printf("| %-6s | %-23s | %-6s | %6.1f | %4.0f | %4.0f | %4.0f | %6.1f | %6.1f | %6.1f | %6.1f | %5.1f | %5.1f |"
              " %5.1f | %5.1f | %5.2fx | %6.2fx |\n",
              preset_name.c_str(), label.c_str(), video ? "frames" : "images", n.mean, n.p50, n.p95, n.max, e.mean,
              e.p50, e.p95, e.max, b.mean, b.p50, b.p95, b.max, heaviest / lightest, *heavy_mb / *light_mb);
  const dip::packing_stats& stats = source.stats();
  if (stats.truncated_samples + stats.dropped_samples + stats.cut_clips > 0) {
    std::printf("|        | packing: %llu samples, %llu truncated, %llu dropped, %llu clips cut into %llu pieces\n",
                (unsigned long long)stats.samples, (unsigned long long)stats.truncated_samples,
                (unsigned long long)stats.dropped_samples, (unsigned long long)stats.cut_clips,
                (unsigned long long)stats.clip_pieces);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path shared = argc > 1 ? argv[1] : "../shared/data";
  std::printf(
      "100 global batches x 8 packed microbatches, seed 1; per microbatch: images or frames, encoder\n"
      "(ViT+projector, or caption LLM+projector) and backbone (LLM, or DiT) fwd+bwd ms on one H800 at the\n"
      "preset's TP (whole module, all layers); last columns: heaviest / lightest global batch and microbatch.\n\n");
  std::printf(
      "|        |                         |        | items per microbatch       | encoder ms per microbatch         |"
      " backbone ms per microbatch  | heaviest / lightest  |\n");
  std::printf(
      "| model  | data                    | items  |   mean |  p50 |  p95 |  max |   mean |    p50 |    p95 |    max |"
      "  mean |   p50 |   p95 |   max |  batch | microbatch |\n");
  std::printf(
      "|--------|-------------------------|--------|-------:|-----:|-----:|-----:|-------:|-------:|-------:|-------:|"
      "------:|------:|------:|------:|-------:|-----------:|\n");
  try {
    for (const char* data : {"uniform", "laion", "obelics", "scienceqa", "mixed"}) report("vlm-s", data, data);
    for (const char* trace : {"vlm-coco-captions.jsonl", "vlm-scienceqa.jsonl"}) {
      const std::filesystem::path path = shared / trace;
      if (std::filesystem::exists(path)) report("vlm-s", path.string(), trace);
      else std::printf("| vlm-s  | %-23s | skipped: %s not found\n", trace, path.string().c_str());
    }
    for (const char* data : {"uniform", "video"}) report("t2v-s", data, data);
    const std::filesystem::path msrvtt = shared / "video-msrvtt.jsonl";
    if (std::filesystem::exists(msrvtt)) report("t2v-s", msrvtt.string(), "video-msrvtt.jsonl");
    else std::printf("| t2v-s  | %-23s | skipped: %s not found\n", "video-msrvtt.jsonl", msrvtt.string().c_str());
  } catch (const dip::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
