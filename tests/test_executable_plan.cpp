// Executable plans (docs/plan-format.md, version 2; dip/io/executable_batch.hpp): random packed
// microbatches of the tiny presets planned by dip::planner with every schedule, on 2 and 4 ranks,
// exported with their items and read back to the same document; the tensors obey the format's
// rules (every module's sub-microbatches cover its items once, messages between chains hand each
// producer item to the consumer sub-microbatches that need it, a gradient carries its forward's
// tensors); what does not match the graph is refused, naming the microbatch and module or the
// JSON path.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <dip/batch/packing.hpp>
#include <dip/io/plan_export.hpp>
#include <dip/planner/planner.hpp>

#include "plan_file_support.hpp"

namespace {

const std::vector<std::string> schedules = {"dip",         "static-dip", "optimus", "gpipe",    "1f1b",
                                            "interleaved", "zb1p",       "zbv",     "dualpipev"};

// Random samples of the preset's kind, packed into small microbatches (at most 160 LLM tokens and
// 6 images, or 3 clips of 12 s in all), so that a few samples make several microbatches.
std::vector<dip::packed_microbatch> random_batch(const dip::multimodal_model& model, std::uint64_t seed,
                                                 std::size_t microbatches) {
  std::mt19937_64 rng(seed);
  const auto integer = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const bool video = dip::packing_kind_of(model) == dip::packing_kind::text_to_video;
  std::vector<dip::training_sample> samples;
  for (int i = 0; i < 12 * int(microbatches); ++i) {
    dip::training_sample s;
    s.text_tokens = integer(video ? 4 : 0, 60);
    if (video) {
      s.clips.push_back({0.5 * integer(1, 12)});
    } else {
      for (int k = integer(0, 3); k > 0; --k) {
        s.images.push_back(integer(0, 1) == 0 ? dip::trace_image::default_size()
                                              : dip::trace_image::with_pixels(integer(50, 400), integer(50, 400)));
      }
      if (s.text_tokens == 0 && s.images.empty()) s.text_tokens = 1;
    }
    samples.push_back(std::move(s));
  }
  dip::packing_limits limits;
  limits.max_tokens = 160;
  limits.max_images = 6;
  limits.max_clips = 3;
  limits.max_seconds = 12;
  std::vector<dip::packed_microbatch> packed = dip::pack_samples(samples, model, limits);
  REQUIRE(packed.size() >= microbatches);
  packed.resize(microbatches);
  return packed;
}

dip::planner<dip::analytic_cost_model> planner_for(const dip::model_preset& preset, int pp,
                                                   std::size_t sub_microbatch_size = 0) {
  dip::cluster_spec cluster = dip::cluster_of(preset);
  cluster.pp = pp;
  dip::planner_options o;
  o.search_ms = 0;
  o.search_rollouts = 4;
  o.sub_microbatch_size = sub_microbatch_size;
  return {preset.model, dip::analytic_cost_model(cluster.gpu, cluster.tp), cluster, std::move(o)};
}

// Which chain holds each module.
std::vector<std::size_t> chain_of_modules(const dip::placement& place, std::size_t modules) {
  std::vector<std::size_t> out(modules, place.chains.size());
  for (const dip::chunk_spec& c : place.chunks) {
    for (const dip::layer_span& s : c.spans) out[s.module.index()] = c.chain;
  }
  return out;
}

std::vector<std::size_t> all_items(std::size_t n) {
  std::vector<std::size_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = i;
  return out;
}

// The format's invariants on one exported plan.
void check_invariants(const dip::exported_plan& file) {
  REQUIRE(file.batch.has_value());
  const dip::stage_graph& g = *file.schedule.graph;
  const dip::exported_model& model = file.model;
  const dip::exported_batch& batch = *file.batch;
  const std::vector<std::size_t> chain = chain_of_modules(g.placement(), model.modules.size());
  REQUIRE(batch.microbatches.size() == g.microbatch_count());

  // Every module's sub-microbatches, as its chain runs them, hold each of its items once and
  // their rows add up to the module's rows of the microbatch.
  for (std::size_t j = 0; j < batch.microbatches.size(); ++j) {
    const dip::exported_microbatch& mb = batch.microbatches[j];
    REQUIRE(mb.subs.size() == model.modules.size());
    for (std::size_t m = 0; m < model.modules.size(); ++m) {
      CAPTURE(j);
      CAPTURE(m);
      CHECK(mb.subs[m].size() == g.sub_count(j, chain[m]));
      std::vector<std::size_t> items;
      std::int64_t rows = 0;
      for (const dip::exported_sub& s : mb.subs[m]) {
        items.insert(items.end(), s.items.begin(), s.items.end());
        rows += s.rows;
        CHECK(std::is_sorted(s.items.begin(), s.items.end()));
      }
      std::sort(items.begin(), items.end());
      const std::vector<std::size_t> expected = all_items(dip::item_count(mb, model.modules[m].item));
      CHECK(items == expected);
      CHECK(rows == dip::item_rows(mb, model.modules[m], expected));
    }
  }

  // Forward edges, and the gradient edges that mirror them.
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::size_t> forward_edge;  // (producer F, consumer F) -> edge
  for (std::size_t e = 0; e < g.edges().size(); ++e) {
    const dip::stage_edge& edge = g.edges()[e];
    if (g.at(edge.to).kind == dip::stage_kind::forward) forward_edge[{edge.from.value(), edge.to.value()}] = e;
  }
  // (microbatch, producer module, producer item) -> the consumer sub-microbatches it went to, per consumer chain.
  std::map<std::tuple<std::size_t, std::size_t, std::size_t, std::size_t>, std::set<std::uint32_t>> delivered;
  for (std::size_t e = 0; e < g.edges().size(); ++e) {
    const dip::stage_edge& edge = g.edges()[e];
    const dip::stage& from = g.at(edge.from);
    const dip::stage& to = g.at(edge.to);
    const std::vector<dip::message_tensor>& tensors = file.tensors[e];
    for (const dip::message_tensor& t : tensors) CHECK(t.rows >= 0);
    if (to.kind != dip::stage_kind::forward) {
      const bool same_work = from.chunk == to.chunk && from.microbatch == to.microbatch && from.sub == to.sub;
      if (same_work) {
        CHECK(tensors.empty());
        continue;
      }
      const auto f = forward_edge.find({dip::forward_of(g, edge.to).value(), dip::forward_of(g, edge.from).value()});
      REQUIRE(f != forward_edge.end());
      CHECK(tensors == file.tensors[f->second]);  // a gradient carries its forward's tensors
      continue;
    }
    const std::size_t kp = g.placement().chunk(from.chunk).chain, kc = g.placement().chunk(to.chunk).chain;
    const std::size_t j = from.microbatch.index();
    const dip::exported_microbatch& mb = batch.microbatches[j];
    if (kp == kc) {
      // Along a chain: the state of every module on both sides of the cut.
      const std::size_t cut = g.placement().chunk(from.chunk).position;
      for (std::size_t m = 0; m < model.modules.size(); ++m) {
        if (chain[m] != kp) continue;
        std::size_t first = g.placement().chains[kp].size(), last = 0;
        for (const dip::chunk_id c : g.placement().chains[kp]) {
          for (const dip::layer_span& s : g.placement().chunk(c).spans) {
            if (s.module.index() != m) continue;
            first = std::min(first, g.placement().chunk(c).position);
            last = std::max(last, g.placement().chunk(c).position);
          }
        }
        const bool live = first <= cut && cut < last;
        const auto state = std::find_if(tensors.begin(), tensors.end(), [&](const dip::message_tensor& t) {
          return t.module.index() == m && t.kind == dip::tensor_kind::state;
        });
        CHECK(live == (state != tensors.end()));
        if (live && state != tensors.end()) CHECK(state->items == mb.subs[m].at(from.sub).items);
        const auto context = std::find_if(tensors.begin(), tensors.end(), [&](const dip::message_tensor& t) {
          return t.module.index() == m && t.kind == dip::tensor_kind::context;
        });
        if (context != tensors.end()) {
          // A DiT's context: the captions of its sub-microbatch's clips.
          std::vector<std::size_t> captions;
          for (std::size_t clip : mb.subs[m].at(from.sub).items) {
            if (const auto c = dip::caption_of_clip(mb, clip)) captions.push_back(*c);
          }
          CHECK(context->items == captions);
        }
      }
      continue;
    }
    // Between chains: every producer item of the tensor is recorded against the consumer sub.
    for (const dip::message_tensor& t : tensors) {
      CHECK(t.kind == dip::tensor_kind::output);
      CHECK(chain[t.module.index()] == kp);
      for (std::size_t item : t.items) {
        CHECK(std::binary_search(mb.subs[t.module.index()][from.sub].items.begin(),
                                 mb.subs[t.module.index()][from.sub].items.end(), item));
        delivered[{j, t.module.index(), item, kc}].insert(to.sub);
      }
    }
  }
  // VLM (images -> the packed sequence): every image reaches the one LLM sub-microbatch; T2V
  // (captions -> clips): every caption reaches exactly the DiT sub-microbatch holding its clip;
  // items of one kind reach the consumer sub-microbatch holding them.
  for (std::size_t j = 0; j < batch.microbatches.size(); ++j) {
    const dip::exported_microbatch& mb = batch.microbatches[j];
    for (std::size_t p = 0; p < model.modules.size(); ++p) {
      for (std::size_t c = 0; c < model.modules.size(); ++c) {
        const std::vector<std::size_t>& inputs = model.modules[c].inputs;
        if (chain[c] == chain[p] || std::find(inputs.begin(), inputs.end(), p) == inputs.end()) continue;
        CAPTURE(j);
        CAPTURE(p);
        CAPTURE(c);
        const dip::item_kind from = model.modules[p].item, to = model.modules[c].item;
        for (std::size_t item = 0; item < dip::item_count(mb, from); ++item) {
          std::set<std::uint32_t> expected;
          for (std::uint32_t u = 0; u < mb.subs[c].size(); ++u) {
            const std::vector<std::size_t>& held = mb.subs[c][u].items;
            if (from == dip::item_kind::caption && to == dip::item_kind::clip) {
              for (std::size_t clip : held) {
                if (dip::caption_of_clip(mb, clip) == item) expected.insert(u);
              }
            } else if (from != to || std::binary_search(held.begin(), held.end(), item)) {
              expected.insert(u);
            }
          }
          if (from == dip::item_kind::caption && to == dip::item_kind::clip) CHECK(expected.size() == 1);
          if (to == dip::item_kind::sequence) CHECK(expected == std::set<std::uint32_t>{0});
          const auto found = delivered.find({j, p, item, chain[c]});
          CHECK((found == delivered.end() ? std::set<std::uint32_t>{} : found->second) == expected);
        }
      }
    }
  }
}

dip::exported_plan export_planned(const dip::planned_batch& planned, const dip::multimodal_model& model,
                                  const std::vector<dip::packed_microbatch>& packed) {
  return dip::export_plan(planned.plan, model, planned.work, planned.split, packed, planned.schedule,
                          std::int64_t(planned.index));
}

struct planned_case {
  dip::model_preset preset;
  std::vector<dip::packed_microbatch> packed;
  dip::planned_batch planned;
};

// tiny-vlm's dip plan on 2 ranks with two images per vit sub-microbatch: several sub-microbatches.
planned_case vlm_case() {
  planned_case c{dip::find_preset("tiny-vlm"), {}, {}};
  c.packed = random_batch(c.preset.model, 3, 3);
  c.planned = planner_for(c.preset, 2, 2).plan(c.packed, "dip");
  return c;
}

}  // namespace

TEST_CASE("every schedule's plan of the tiny presets exports with its items and round-trips") {
  std::size_t plans = 0, split_chains = 0, crossings = 0;
  for (const char* name : {"tiny-vlm", "tiny-t2v"}) {
    const dip::model_preset preset = dip::find_preset(name);
    for (int pp : {2, 4}) {
      for (std::size_t sub_size : {std::size_t(0), std::size_t(2)}) {
        const auto planner = planner_for(preset, pp, sub_size);
        for (std::uint64_t seed : {1, 2}) {
          const std::vector<dip::packed_microbatch> packed = random_batch(preset.model, seed + 10 * sub_size, 4);
          for (const std::string& schedule : schedules) {
            CAPTURE(name);
            CAPTURE(pp);
            CAPTURE(sub_size);
            CAPTURE(seed);
            CAPTURE(schedule);
            if (schedule == "dualpipev" && packed.size() < 2 * std::size_t(pp)) continue;  // needs m >= 2p
            const dip::planned_batch planned = planner.plan(packed, schedule, seed);
            const dip::exported_plan file = export_planned(planned, preset.model, packed);
            check_invariants(file);
            const nlohmann::ordered_json doc = dip::plan_to_json(file);
            CHECK(doc["version"] == 2);
            const dip::exported_plan back =
                dip::plan_from_json(nlohmann::json::parse(dip::plan_json_text(doc)), "plan.json");
            CHECK(back.model == file.model);
            CHECK(back.batch == file.batch);
            CHECK(back.tensors == file.tensors);
            CHECK(dip::plan_to_json(back) == doc);
            ++plans;
            const dip::stage_graph& g = *planned.plan.graph;
            for (std::size_t j = 0; j < g.microbatch_count(); ++j) {
              for (std::size_t k = 0; k < g.placement().chains.size(); ++k) split_chains += g.sub_count(j, k) > 1;
            }
            for (const dip::stage_edge& e : g.edges()) {
              crossings += g.placement().chunk(g.at(e.from).chunk).chain != g.placement().chunk(g.at(e.to).chunk).chain;
            }
          }
        }
      }
    }
  }
  CHECK(split_chains > 0);  // some chains ran several sub-microbatches
  CHECK(crossings > 0);     // and some messages went between chains
  MESSAGE(plans << " plans exported, " << split_chains << " split (microbatch, chain)s, " << crossings
                << " edges between chains");
}

TEST_CASE("a classic schedule runs a split module whole: one sub-microbatch with all its items") {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const std::vector<dip::packed_microbatch> packed = random_batch(preset.model, 4, 3);
  const auto planner = planner_for(preset, 2, 2);
  const dip::planned_batch dip_plan = planner.plan(packed, "dip");
  const dip::planned_batch classic = planner.plan(packed, "1f1b");
  // The classic plan's graph with the dip plan's split (several vit sub-microbatches): the same
  // items, merged; the work must then be the merged one the classic graph ran.
  std::vector<dip::split_microbatch> split = dip_plan.split;
  const dip::exported_batch merged =
      dip::export_batch(*classic.plan.graph, dip::describe_model(preset.model), split, packed);
  for (std::size_t j = 0; j < packed.size(); ++j) {
    for (std::size_t m = 0; m < preset.model.module_count(); ++m) {
      REQUIRE(merged.microbatches[j].subs[m].size() == 1);
      CHECK(merged.microbatches[j].subs[m][0].items ==
            all_items(dip::item_count(merged.microbatches[j], dip::describe_model(preset.model).modules[m].item)));
    }
  }
}

// The work units of `subs` summed in order.
dip::work_unit total_work(const std::vector<dip::exported_sub>& subs) {
  dip::work_unit total;
  for (const dip::exported_sub& s : subs) total += s.work;
  return total;
}

bool close_work(const dip::work_unit& a, const dip::work_unit& b) {
  const auto close = [](double x, double y) {
    return std::fabs(x - y) <= 1e-12 * std::max(std::fabs(x), std::fabs(y));
  };
  return close(a.sequences, b.sequences) && close(a.tokens, b.tokens) && close(a.token_pairs, b.token_pairs) &&
         close(a.context_tokens, b.context_tokens) && close(a.context_pairs, b.context_pairs);
}

TEST_CASE("every sub-microbatch carries the work unit its stages were priced with") {
  const dip::model_preset preset = dip::find_preset("tiny-vlm");
  const dip::exported_model model = dip::describe_model(preset.model);
  const std::vector<dip::packed_microbatch> packed = random_batch(preset.model, 5, 3);
  const auto planner = planner_for(preset, 2, 2);
  const dip::planned_batch dip_plan = planner.plan(packed, "dip");
  const dip::planned_batch classic = planner.plan(packed, "1f1b");
  const dip::batch_work merged = dip::merge_sub_microbatches(dip_plan.work);
  std::size_t split_modules = 0;
  for (const dip::planned_batch* planned : {&dip_plan, &classic}) {
    CAPTURE(planned->schedule);
    const dip::exported_plan file = export_planned(*planned, preset.model, packed);
    REQUIRE(file.batch.has_value());
    for (std::size_t j = 0; j < packed.size(); ++j) {
      for (std::size_t m = 0; m < preset.model.module_count(); ++m) {
        CAPTURE(j);
        CAPTURE(m);
        const std::vector<dip::exported_sub>& subs = file.batch->microbatches[j].subs[m];
        const std::vector<dip::sub_microbatch>& split = planned->split[j].modules[m].subs;
        REQUIRE(subs.size() == split.size());
        for (std::size_t u = 0; u < subs.size(); ++u) {
          CHECK(subs[u].work == split[u].work);  // the split's unit, as the planner priced it
          CHECK(subs[u].work == planned->work.microbatches[j].modules[m][u]);
          CHECK(std::llround(subs[u].work.tokens) == subs[u].rows);
        }
        split_modules += subs.size() > 1;
        // The sub-microbatches' work adds up to the microbatch's module work.
        CHECK(close_work(total_work(subs), merged.microbatches[j].modules[m].front()));
      }
    }
    // The work reads back bit for bit.
    const nlohmann::ordered_json doc = dip::plan_to_json(file);
    const dip::exported_plan back = dip::plan_from_json(nlohmann::json::parse(dip::plan_json_text(doc)), "plan.json");
    CHECK(back.batch == file.batch);
  }
  CHECK(split_modules > 0);

  // A classic graph that runs the dip plan's split modules whole: one sub-microbatch each, whose
  // work is the sum of the split's (in order, as merge_sub_microbatches sums them).
  const dip::exported_batch whole = dip::export_batch(*classic.plan.graph, model, dip_plan.split, packed);
  std::size_t merged_modules = 0;
  for (std::size_t j = 0; j < packed.size(); ++j) {
    for (std::size_t m = 0; m < preset.model.module_count(); ++m) {
      CAPTURE(j);
      CAPTURE(m);
      REQUIRE(whole.microbatches[j].subs[m].size() == 1);
      CHECK(whole.microbatches[j].subs[m][0].work == merged.microbatches[j].modules[m].front());
      CHECK(close_work(whole.microbatches[j].subs[m][0].work, classic.work.microbatches[j].modules[m].front()));
      merged_modules += dip_plan.split[j].modules[m].subs.size() > 1;
    }
  }
  CHECK(merged_modules > 0);
}

TEST_CASE("export_plan refuses a split that does not match the graph, naming the microbatch and module") {
  const planned_case c = vlm_case();
  const dip::stage_graph& g = *c.planned.plan.graph;
  const dip::exported_model model = dip::describe_model(c.preset.model);
  const std::size_t vit = c.preset.model.at("vit").index();
  std::optional<std::size_t> split_j;
  for (std::size_t j = 0; j < g.microbatch_count() && !split_j; ++j) {
    if (c.planned.split[j].modules[vit].subs.size() > 1) split_j = j;
  }
  REQUIRE(split_j.has_value());
  const std::size_t j = *split_j;
  std::vector<dip::split_microbatch> split = c.planned.split;
  const std::size_t runs = split[j].modules[vit].subs.size();
  split[j].modules[vit].subs.pop_back();
  const std::string counts = "microbatch " + std::to_string(j) + ", module 'vit': the split has " +
                             std::to_string(runs - 1) + " sub-microbatches, the plan's graph runs " +
                             std::to_string(runs);
  CHECK_THROWS_WITH(dip::export_batch(g, model, split, c.packed), doctest::Contains(counts.c_str()));
  // The same split with export_plan: it is not the split the batch's work was made from.
  const std::string not_the_work = "microbatch " + std::to_string(j) + ", module 'vit': the split is not";
  CHECK_THROWS_WITH(dip::export_plan(c.planned.plan, c.preset.model, c.planned.work, split, c.packed),
                    doctest::Contains(not_the_work.c_str()));
  // Packed microbatches that are not the split's.
  std::vector<dip::packed_microbatch> other = c.packed;
  std::swap(other.front(), other.back());
  CHECK_THROWS_AS(dip::export_plan(c.planned.plan, c.preset.model, c.planned.work, c.planned.split, other), dip::error);
  other = c.packed;
  other.pop_back();
  const std::string short_batch = "the packed batch " + std::to_string(other.size());
  CHECK_THROWS_WITH(dip::export_plan(c.planned.plan, c.preset.model, c.planned.work, c.planned.split, other),
                    doctest::Contains(short_batch.c_str()));
}

TEST_CASE("a batch or tensors that disagree with the plan are refused, naming the JSON path") {
  const planned_case c = vlm_case();
  const dip::exported_plan file = export_planned(c.planned, c.preset.model, c.packed);
  const nlohmann::json good = dip::plan_to_json(file);
  const auto check_error = [&](const nlohmann::json& doc, const std::string& where, const std::string& what) {
    const dip::error e = dip_test::read_error(doc);
    CHECK(e.code() == dip::errc::parse_error);
    CHECK(e.where() == where);
    CHECK_MESSAGE(e.detail().find(what) != std::string::npos, e.what());
  };
  CHECK_NOTHROW(dip::plan_from_json(good, "plan.json"));
  const std::size_t llm = c.preset.model.at("llm").index();
  const std::string subs = "plan.json: batch.microbatches[0].subs[" + std::to_string(llm) + "]";

  nlohmann::json doc = good;
  doc["batch"]["microbatches"][0]["subs"][llm][0]["rows"] = 1;
  check_error(doc, subs + "[0].rows", "the rows of its items for module 'llm' add up to");
  doc = good;
  doc["batch"]["microbatches"][0]["subs"][llm][0]["items"] = {1};
  check_error(doc, subs + "[0].items[0]", "expected increasing sequence indices below 1");
  doc = good;
  doc["batch"]["microbatches"][0]["subs"][llm][0]["work"]["tokens"] = 1;
  check_error(doc, subs + "[0].work.tokens", "its rows");
  doc = good;
  doc["batch"]["microbatches"][0]["subs"][llm][0]["work"]["token_pairs"] = -1;
  check_error(doc, subs + "[0].work.token_pairs", "expected a finite number >= 0");
  doc = good;
  doc["batch"]["microbatches"][0]["subs"][llm][0].erase("work");
  check_error(doc, subs + "[0].work", "required field is missing");
  doc = good;
  doc["batch"]["microbatches"][0]["subs"][llm].push_back(
      {{"items", nlohmann::json::array()}, {"rows", 0}, {"work", dip::work_to_json(dip::work_unit{})}});
  check_error(doc, subs, "lists 2 sub-microbatches, the stages of chain");
  doc = good;
  std::size_t with_images = 0;
  while (good["batch"]["microbatches"][with_images]["images"].empty()) ++with_images;
  doc["batch"]["microbatches"][with_images]["images"][0]["pixels"] = 1;
  check_error(doc, "plan.json: batch.microbatches[" + std::to_string(with_images) + "].images[0].pixels",
              "unknown field");
  doc = good;
  doc["batch"]["microbatches"].erase(doc["batch"]["microbatches"].size() - 1);
  check_error(doc, "plan.json: batch.microbatches", "entries, microbatches is 3");

  // A tensor whose rows are not its items' rows, and items beyond the microbatch.
  std::size_t e = 0;
  while (good["edges"][e]["tensors"].empty()) ++e;
  const std::string edge = "plan.json: edges[" + std::to_string(e) + "].tensors[0]";
  doc = good;
  doc["edges"][e]["tensors"][0]["rows"] = doc["edges"][e]["tensors"][0]["rows"].get<std::int64_t>() + 1;
  check_error(doc, edge + ".rows", "add up to");
  doc = good;
  doc["edges"][e]["tensors"][0]["items"].push_back(1000);
  check_error(doc, edge + ".items[" + std::to_string(good["edges"][e]["tensors"][0]["items"].size()) + "]",
              "expected increasing");
  doc = good;
  doc["edges"][e]["tensors"][0]["kind"] = "gradient";
  check_error(doc, edge + ".kind", "expected state, context or output");
  doc = good;
  doc["edges"][e]["tensors"][0]["module"] = 7;
  check_error(doc, edge + ".module", "expected an integer in [0, 2]");
}
