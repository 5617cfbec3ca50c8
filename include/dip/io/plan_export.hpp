// The action-list export of a plan (format: docs/plan-format.md, version 2): per rank, the
// ordered actions a runtime executes, with every stage's chunk, layers, (sub-)microbatch, pass and
// memory strategy, and every message's peer, tag, tensors and the action it must arrive before.
// The file also holds the model, the items of every sub-microbatch (dip/io/executable_batch.hpp)
// and the whole stage graph (placement, stages, edges), so that a runtime can execute it and it
// reads back into a dip::plan that dip::validate and dip::simulate accept: a plan round-trips.
//
//   const dip::planned_batch planned = planner.plan(packed, "1f1b");
//   dip::exported_plan file = dip::export_plan(planned.plan, planner.model(), planned.work, planned.split,
//                                              packed, "1f1b", 0);
//   dip::write_plan_file("plan.json", file);
//   dip::exported_plan back = dip::read_plan_file("plan.json");   // validated
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dip/batch/batch_work.hpp"
#include "dip/batch/packing.hpp"
#include "dip/batch/splitter.hpp"
#include "dip/core/error.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"
#include "dip/io/executable_batch.hpp"
#include "dip/io/json_fields.hpp"
#include "dip/io/model_export.hpp"
#include "dip/model/layer.hpp"
#include "dip/model/model.hpp"
#include "dip/schedule/plan.hpp"
#include "dip/schedule/stage_graph.hpp"
#include "dip/schedule/stage_graph_from_parts.hpp"
#include "dip/schedule/strategy_cost.hpp"
#include "dip/schedule/validate.hpp"

namespace dip {

// Bumped whenever a field changes meaning or a required field is added; the reader accepts
// exactly this version. Version 2: the model, the batch's items and exact integer message tensors.
inline constexpr int plan_export_version = 2;
inline constexpr std::string_view plan_export_format = "dip.plan";

// A plan as the file holds it.
struct exported_plan {
  plan schedule;                                     // with its stage graph
  std::vector<std::string> module_names;             // by module id (placement spans name modules by id)
  exported_model model;                              // the model the placement was made for
  std::optional<exported_batch> batch;               // the sub-microbatches' items; nullopt: exported from bare work
  std::vector<std::vector<message_tensor>> tensors;  // by edge of the stage graph; empty where nothing travels
  std::string schedule_name;                         // "1f1b", "dip", ... ("" if unnamed)
  std::int64_t iteration = 0;                        // which batch of the run the plan is for
};

namespace detail {

// Checks that `model` and `batch` are the ones `p`'s graph was built from; the file's tables
// without tensors.
inline exported_plan export_frame(const plan& p, const multimodal_model& model, const batch_work& batch,
                                  std::string schedule_name, std::int64_t iteration) {
  validate(p);
  const stage_graph& graph = *p.graph;
  for (const chunk_spec& chunk : graph.placement().chunks) {
    for (const layer_span& span : chunk.spans) {
      require(span.module.index() < model.module_count() && span.last <= model.module(span.module).layers.size(),
              errc::invalid_argument, "export_plan",
              "the model '" + model.name() + "' is not the one the plan's placement was made for");
    }
  }
  require(batch.microbatches.size() == graph.microbatch_count(), errc::invalid_argument, "export_plan",
          "the batch has " + std::to_string(batch.microbatches.size()) + " microbatches, the plan's graph " +
              std::to_string(graph.microbatch_count()));
  for (std::size_t j = 0; j < batch.microbatches.size(); ++j) {
    require(batch.microbatches[j].modules.size() == model.module_count(), errc::invalid_argument, "export_plan",
            "microbatch " + std::to_string(j) + " does not give every module its work");
  }
  exported_plan file{p, {}, describe_model(model), std::nullopt, {}, std::move(schedule_name), iteration};
  for (const module_spec& m : model.modules()) file.module_names.push_back(m.name);
  return file;
}

}  // namespace detail

// The file of plan `p`, whose stage graph was built from `model` and `batch` (they give module
// names and message rows). The file has no `batch` (its items are unknown): a message between
// chains carries the producer's whole output. Throws dip::error(errc::invalid_plan) for a plan
// dip::validate rejects, errc::invalid_argument for a model or batch that does not match the graph.
inline exported_plan export_plan(const plan& p, const multimodal_model& model, const batch_work& batch,
                                 std::string schedule_name = {}, std::int64_t iteration = 0) {
  exported_plan file = detail::export_frame(p, model, batch, std::move(schedule_name), iteration);
  file.tensors = edge_tensors(*p.graph, file.model, batch);
  return file;
}

// The executable file of plan `p`: also which items each sub-microbatch holds (`split`, made from
// the `packed` microbatches, whose work is `batch`: planned_batch's split and work) and the exact
// tensors of every message. Throws as above, and dip::error(errc::invalid_argument,
// "export_plan") naming the microbatch and module where the split, the packed microbatches, the
// batch and the graph disagree.
inline exported_plan export_plan(const plan& p, const multimodal_model& model, const batch_work& batch,
                                 std::span<const split_microbatch> split, std::span<const packed_microbatch> packed,
                                 std::string schedule_name = {}, std::int64_t iteration = 0) {
  exported_plan file = detail::export_frame(p, model, batch, std::move(schedule_name), iteration);
  require(split.size() == batch.microbatches.size(), errc::invalid_argument, "export_plan",
          "the split has " + std::to_string(split.size()) + " microbatches, the batch " +
              std::to_string(batch.microbatches.size()));
  for (std::size_t j = 0; j < split.size(); ++j) {
    for (std::size_t m = 0; m < model.module_count(); ++m) {
      const std::vector<work_unit>& units = batch.microbatches[j].modules[m];
      const bool same = m < split[j].modules.size() && split[j].modules[m].subs.size() == units.size() &&
                        std::equal(units.begin(), units.end(), split[j].modules[m].subs.begin(),
                                   [](const work_unit& w, const sub_microbatch& s) { return w == s.work; });
      require(same, errc::invalid_argument, "export_plan",
              detail::module_where(file.model, j, m) + ": the split is not the one the batch's work was made from");
    }
  }
  file.batch = export_batch(*p.graph, file.model, split, packed);
  file.tensors = edge_tensors(*p.graph, file.model, *file.batch);
  return file;
}

// The JSON document of `file` (docs/plan-format.md), its fields in the documented order.
inline nlohmann::ordered_json plan_to_json(const exported_plan& file) {
  using json = nlohmann::ordered_json;
  require(file.schedule.graph != nullptr, errc::invalid_argument, "plan_to_json", "the plan has no stage graph");
  const stage_graph& graph = *file.schedule.graph;
  const placement& place = graph.placement();
  require(file.tensors.size() == graph.edges().size(), errc::invalid_argument, "plan_to_json",
          "has the tensors of " + std::to_string(file.tensors.size()) + " messages for " +
              std::to_string(graph.edges().size()) + " edges");
  require(file.model.modules.size() == file.module_names.size(), errc::invalid_argument, "plan_to_json",
          "the model has " + std::to_string(file.model.modules.size()) + " modules, module_names " +
              std::to_string(file.module_names.size()));
  for (std::size_t m = 0; m < file.module_names.size(); ++m) {
    require(file.model.modules[m].name == file.module_names[m], errc::invalid_argument, "plan_to_json",
            "module " + std::to_string(m) + " is '" + file.model.modules[m].name + "' in the model, '" +
                file.module_names[m] + "' in module_names");
  }
  const auto module_name = [&](module_id m) {
    require(m.index() < file.module_names.size(), errc::invalid_argument, "plan_to_json",
            "module " + std::to_string(m.value()) + " has no name");
    return file.module_names[m.index()];
  };

  json chunks = json::array();
  for (const chunk_spec& chunk : place.chunks) {
    json spans = json::array();
    for (const layer_span& s : chunk.spans) {
      spans.push_back({{"module", module_name(s.module)}, {"first_layer", s.first}, {"last_layer", s.last - 1}});
    }
    chunks.push_back(
        {{"rank", chunk.rank.value()}, {"chain", chunk.chain}, {"position", chunk.position}, {"spans", spans}});
  }
  json chains = json::array();
  for (std::size_t k = 0; k < place.chains.size(); ++k) {
    json members = json::array();
    for (chunk_id c : place.chains[k]) members.push_back(c.value());
    chains.push_back({{"chunks", members}, {"inputs", place.chain_inputs[k]}});
  }
  json stages = json::array();
  for (const stage& s : graph.stages()) {
    stages.push_back({{"kind", std::string(1, to_char(s.kind))},
                      {"chunk", s.chunk.value()},
                      {"microbatch", s.microbatch.value()},
                      {"sub", s.sub},
                      {"rank", s.rank.value()},
                      {"time_s", s.time.base()},
                      {"memory_delta_bytes", s.memory_delta.base()},
                      {"output_bytes", s.output.base()}});
  }
  json edges = json::array();
  for (std::size_t e = 0; e < graph.edges().size(); ++e) {
    const stage_edge& edge = graph.edges()[e];
    edges.push_back({{"from", edge.from.value()},
                     {"to", edge.to.value()},
                     {"tensors", tensors_to_json(file.tensors[e])},
                     {"bytes", edge.size.base()}});
  }

  json ranks = json::array();
  for (std::size_t r = 0; r < file.schedule.ranks.size(); ++r) {
    const std::vector<action>& list = file.schedule.ranks[r];
    std::map<std::uint32_t, std::size_t> computed_at;  // stage -> its compute action on this rank
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (list[i].kind == action_kind::compute) computed_at.emplace(list[i].stage.value(), i);
    }
    json actions = json::array();
    for (const action& a : list) {
      if (a.kind == action_kind::compute) {
        const stage& s = graph.at(a.stage);
        actions.push_back({{"op", "compute"},
                           {"stage", a.stage.value()},
                           {"kind", std::string(1, to_char(s.kind))},
                           {"chunk", s.chunk.value()},
                           {"microbatch", s.microbatch.value()},
                           {"sub", s.sub},
                           {"strategy", std::string(to_string(a.strategy))}});
        continue;
      }
      const stage_edge& edge = graph.edges()[a.edge];
      json message = {{"op", a.kind == action_kind::send ? "send" : "recv"},
                      {"edge", a.edge},
                      {"tag", a.edge},
                      {"peer", a.peer.value()},
                      {"from_stage", edge.from.value()},
                      {"to_stage", edge.to.value()},
                      {"tensors", tensors_to_json(file.tensors[a.edge])},
                      {"bytes", edge.size.base()}};
      if (a.kind == action_kind::recv) {
        const auto consumer = computed_at.find(edge.to.value());
        require(consumer != computed_at.end(), errc::invalid_plan, "rank " + std::to_string(r),
                "receives " + describe(graph, a) + " but never computes its consumer");
        message["wait_before"] = consumer->second;
      }
      actions.push_back(std::move(message));
    }
    ranks.push_back({{"rank", r}, {"actions", std::move(actions)}});
  }

  json modules = json::array();
  for (const std::string& name : file.module_names) modules.push_back(name);
  return {{"format", plan_export_format},
          {"version", plan_export_version},
          {"schedule", file.schedule_name},
          {"iteration", file.iteration},
          {"pipeline_ranks", graph.ranks()},
          {"microbatches", graph.microbatch_count()},
          {"split_backward", graph.split_backward()},
          {"modules", std::move(modules)},
          {"model", model_to_json(file.model)},
          {"placement", {{"chunks", std::move(chunks)}, {"chains", std::move(chains)}}},
          {"batch", file.batch ? batch_to_json(*file.batch) : json(nullptr)},
          {"stages", std::move(stages)},
          {"edges", std::move(edges)},
          {"ranks", std::move(ranks)}};
}

namespace io {

// Element `i` of array field `field` of `parent`, as an object reader with a path like
// "ranks[2].actions[5]".
inline object_reader element(const object_reader& parent, const nlohmann::json& array, std::string_view field,
                             std::size_t i, const std::string& source) {
  const std::string prefix = parent.path().empty() ? "" : parent.path() + ".";
  return object_reader(array[i], source, prefix + std::string(field) + "[" + std::to_string(i) + "]");
}

inline const nlohmann::json& array_field(object_reader& object, std::string_view field) {
  const nlohmann::json& value = object.required(field);
  if (!value.is_array()) object.fail(field, "expected an array, got " + json_type_name(value));
  return value;
}

// An array of integers in [0, limit), e.g. chunk or chain indices.
inline std::vector<std::size_t> index_array(object_reader& object, std::string_view field, std::size_t limit,
                                            std::string_view what) {
  std::vector<std::size_t> result;
  const nlohmann::json& values = array_field(object, field);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const nlohmann::json& v = values[i];
    const std::string item = std::string(field) + "[" + std::to_string(i) + "]";
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || std::uint64_t(v.get<std::int64_t>()) >= limit) {
      object.fail(item,
                  "expected " + std::string(what) + " index in [0, " + std::to_string(limit) + "), got " + v.dump());
    }
    result.push_back(v.get<std::size_t>());
  }
  return result;
}

inline stage_kind read_stage_kind(object_reader& object, std::string_view field) {
  const std::string text = object.string(field);
  if (text == "F") return stage_kind::forward;
  if (text == "B") return stage_kind::backward;
  if (text == "I") return stage_kind::backward_input;
  if (text == "W") return stage_kind::backward_weight;
  object.fail(field, "expected one of F, B, I, W, got '" + text + "'");
}

inline memory_strategy read_strategy(object_reader& object, std::string_view field) {
  const std::string text = object.string(field);
  for (memory_strategy s : {memory_strategy::keep, memory_strategy::recompute, memory_strategy::offload}) {
    if (text == to_string(s)) return s;
  }
  object.fail(field, "expected keep, recompute or offload, got '" + text + "'");
}

// A field that repeats what another table says (a compute's kind, a message's shape): it must agree.
template <class T>
void expect_same(object_reader& object, std::string_view field, const T& read, const T& expected,
                 const std::string& what) {
  if (!(read == expected)) object.fail(field, "disagrees with " + what);
}

inline placement read_placement(const nlohmann::json& value, int ranks, const std::vector<std::string>& modules,
                                const std::string& source) {
  object_reader reader(value, source, "placement");
  placement place;
  place.ranks = ranks;
  const nlohmann::json& chunks = array_field(reader, "chunks");
  for (std::size_t c = 0; c < chunks.size(); ++c) {
    object_reader chunk = element(reader, chunks, "chunks", c, source);
    chunk_spec spec;
    spec.rank = rank_id::from_index(std::size_t(chunk.integer("rank", 0, ranks - 1)));
    spec.chain = std::size_t(chunk.integer("chain", 0));
    spec.position = std::size_t(chunk.integer("position", 0));
    const nlohmann::json& spans = array_field(chunk, "spans");
    if (spans.empty()) chunk.fail("spans", "a chunk holds at least one layer span");
    for (std::size_t i = 0; i < spans.size(); ++i) {
      object_reader span = element(chunk, spans, "spans", i, source);
      const std::string name = span.string("module");
      std::size_t m = 0;
      while (m < modules.size() && modules[m] != name) ++m;
      if (m == modules.size()) span.fail("module", "no module named '" + name + "' in modules");
      const std::int64_t first = span.integer("first_layer", 0);
      const std::int64_t last = span.integer("last_layer", first);
      span.finish();
      spec.spans.push_back({module_id::from_index(m), std::size_t(first), std::size_t(last) + 1});
    }
    chunk.finish();
    place.chunks.push_back(std::move(spec));
  }
  const nlohmann::json& chains = array_field(reader, "chains");
  for (std::size_t k = 0; k < chains.size(); ++k) {
    object_reader chain = element(reader, chains, "chains", k, source);
    std::vector<chunk_id> members;
    for (std::size_t c : index_array(chain, "chunks", place.chunks.size(), "a chunk")) {
      members.push_back(chunk_id::from_index(c));
    }
    place.chain_inputs.push_back(index_array(chain, "inputs", chains.size(), "a chain"));
    chain.finish();
    place.chains.push_back(std::move(members));
  }
  reader.finish();
  return place;
}

}  // namespace io

// Reads a plan document (docs/plan-format.md). Every error is a dip::error naming `source` and
// the JSON path ("plan.json: ranks[1].actions[4].peer: ..."): errc::parse_error for a wrong
// format or version, a missing, unknown or mistyped field, an index that points nowhere (a
// dangling peer, stage or edge) or a field that disagrees with the tables it repeats;
// errc::invalid_plan, naming the rank and action, for a plan dip::validate rejects.
inline exported_plan plan_from_json(const nlohmann::json& document, std::string_view source_name) {
  using io::element;
  const std::string source(source_name);
  io::object_reader top(document, source, "");
  const std::string format = top.string("format");
  if (format != plan_export_format) {
    top.fail("format", "expected '" + std::string(plan_export_format) + "', got '" + format + "'");
  }
  {
    const nlohmann::json& version = top.required("version");
    if (!version.is_number_integer() || version.get<std::int64_t>() != plan_export_version) {
      top.fail("version", "unsupported version " + version.dump() + " (this reader reads version " +
                              std::to_string(plan_export_version) + ")");
    }
  }
  exported_plan file;
  file.schedule_name = top.string("schedule");
  file.iteration = top.integer("iteration", 0);
  const int ranks = int(top.integer("pipeline_ranks", 1, 1 << 20));
  const std::int64_t microbatches = top.integer("microbatches", 1);
  if (!top.has("split_backward")) top.fail("split_backward", "required field is missing");
  const bool split = top.boolean("split_backward", false);

  const nlohmann::json& modules = io::array_field(top, "modules");
  for (std::size_t m = 0; m < modules.size(); ++m) {
    const std::string item = "modules[" + std::to_string(m) + "]";
    if (!modules[m].is_string()) top.fail(item, "expected a module name, got " + io::json_type_name(modules[m]));
    const std::string name = modules[m].get<std::string>();
    for (const std::string& seen : file.module_names) {
      if (seen == name) top.fail(item, "module '" + name + "' is listed twice");
    }
    file.module_names.push_back(name);
  }
  file.model = io::read_exported_model(top.required("model"), source, "model");
  if (file.model.modules.size() != file.module_names.size()) {
    top.fail("model.modules", "has " + std::to_string(file.model.modules.size()) + " modules, modules lists " +
                                  std::to_string(file.module_names.size()));
  }
  for (std::size_t m = 0; m < file.module_names.size(); ++m) {
    if (file.model.modules[m].name != file.module_names[m]) {
      top.fail("model.modules[" + std::to_string(m) + "].name", "disagrees with modules[" + std::to_string(m) + "]");
    }
  }
  placement place = io::read_placement(top.required("placement"), ranks, file.module_names, source);
  for (std::size_t c = 0; c < place.chunks.size(); ++c) {
    for (std::size_t i = 0; i < place.chunks[c].spans.size(); ++i) {
      const layer_span& span = place.chunks[c].spans[i];
      const std::size_t layers = file.model.modules[span.module.index()].layers.size();
      if (span.last > layers) {
        top.fail("placement.chunks[" + std::to_string(c) + "].spans[" + std::to_string(i) + "].last_layer",
                 "module '" + file.module_names[span.module.index()] + "' has " + std::to_string(layers) + " layers");
      }
    }
  }
  if (const nlohmann::json& batch = top.required("batch"); !batch.is_null()) {
    file.batch = io::read_exported_batch(batch, source, "batch", file.model);
    if (file.batch->microbatches.size() != std::size_t(microbatches)) {
      top.fail("batch.microbatches", "has " + std::to_string(file.batch->microbatches.size()) +
                                         " entries, microbatches is " + std::to_string(microbatches));
    }
  }
  const exported_batch* items = file.batch ? &*file.batch : nullptr;

  std::vector<stage> stages;
  const nlohmann::json& stage_array = io::array_field(top, "stages");
  for (std::size_t i = 0; i < stage_array.size(); ++i) {
    io::object_reader s = element(top, stage_array, "stages", i, source);
    stage st;
    st.kind = io::read_stage_kind(s, "kind");
    const std::int64_t chunk = s.integer("chunk", 0);
    if (std::size_t(chunk) >= place.chunks.size())
      s.fail("chunk", "no chunk " + std::to_string(chunk) + " in placement");
    st.chunk = chunk_id::from_index(std::size_t(chunk));
    st.microbatch = microbatch_id::from_index(std::size_t(s.integer("microbatch", 0)));
    st.sub = std::uint32_t(s.integer("sub", 0, std::int64_t{1} << 31));
    st.rank = rank_id::from_index(std::size_t(s.integer("rank", 0, ranks - 1)));
    st.time = duration(s.number("time_s"));
    st.memory_delta = bytes(s.number("memory_delta_bytes", -std::numeric_limits<double>::max()));
    st.output = bytes(s.number("output_bytes"));
    s.finish();
    stages.push_back(st);
  }
  std::vector<stage_edge> edges;
  const nlohmann::json& edge_array = io::array_field(top, "edges");
  for (std::size_t e = 0; e < edge_array.size(); ++e) {
    io::object_reader edge = element(top, edge_array, "edges", e, source);
    const std::int64_t last_stage = std::int64_t(stages.size()) - 1;
    const stage_id from = stage_id::from_index(std::size_t(edge.integer("from", 0, last_stage)));
    const stage_id to = stage_id::from_index(std::size_t(edge.integer("to", 0, last_stage)));
    const std::size_t j = stages[from.index()].microbatch.index();
    if (items != nullptr && j >= items->microbatches.size()) {
      edge.fail("from", "a stage of microbatch " + std::to_string(j) + ", beyond the batch");
    }
    file.tensors.push_back(io::read_tensors(edge, "tensors", source, file.model, items, j));
    edges.push_back({from, to, bytes(edge.number("bytes"))});
    edge.finish();
  }

  std::shared_ptr<const stage_graph> graph;
  try {
    graph = std::make_shared<const stage_graph>(
        stage_graph_from_parts(std::move(place), split, std::move(stages), std::move(edges)));
  } catch (const error& e) {
    throw error(errc::parse_error, source + ": " + e.where(), e.detail());
  }
  if (std::size_t(microbatches) != graph->microbatch_count()) {
    top.fail("microbatches",
             "says " + std::to_string(microbatches) + ", the stages have " + std::to_string(graph->microbatch_count()));
  }

  file.schedule.graph = graph;
  if (file.batch) {  // every module's sub-microbatches, as the graph runs its chain
    std::vector<detail::module_place> places;
    try {
      places = detail::module_places(graph->placement(), file.model.modules.size());
    } catch (const error& e) {
      top.fail("placement", e.detail());
    }
    for (std::size_t j = 0; j < file.batch->microbatches.size(); ++j) {
      for (std::size_t m = 0; m < file.model.modules.size(); ++m) {
        const std::string field = "batch.microbatches[" + std::to_string(j) + "].subs[" + std::to_string(m) + "]";
        if (places[m].chain == detail::no_chain) top.fail(field, "the placement holds no layer of its module");
        const std::size_t runs = graph->sub_count(j, places[m].chain);
        const std::size_t listed = file.batch->microbatches[j].subs[m].size();
        if (listed != runs) {
          top.fail(field, "lists " + std::to_string(listed) + " sub-microbatches, the stages of chain " +
                              std::to_string(places[m].chain) + " run " + std::to_string(runs));
        }
      }
    }
  }
  const nlohmann::json& rank_array = io::array_field(top, "ranks");
  if (rank_array.size() != std::size_t(ranks)) {
    top.fail("ranks",
             "has " + std::to_string(rank_array.size()) + " entries, pipeline_ranks is " + std::to_string(ranks));
  }
  for (std::size_t r = 0; r < rank_array.size(); ++r) {
    io::object_reader rank = element(top, rank_array, "ranks", r, source);
    if (rank.integer("rank", 0) != std::int64_t(r))
      rank.fail("rank", "expected " + std::to_string(r) + " (ranks in order)");
    const nlohmann::json& action_array = io::array_field(rank, "actions");
    std::vector<action>& list = file.schedule.ranks.emplace_back();
    std::vector<std::pair<std::size_t, std::int64_t>> waits;  // (recv action, its wait_before)
    for (std::size_t i = 0; i < action_array.size(); ++i) {
      io::object_reader a = element(rank, action_array, "actions", i, source);
      const std::string op = a.string("op");
      action act;
      if (op == "compute") {
        act.kind = action_kind::compute;
        act.stage = stage_id::from_index(std::size_t(a.integer("stage", 0, std::int64_t(graph->size()) - 1)));
        const stage& s = graph->at(act.stage);
        const std::string what = "stages[" + std::to_string(act.stage.value()) + "]";
        io::expect_same(a, "kind", io::read_stage_kind(a, "kind"), s.kind, what);
        io::expect_same(a, "chunk", a.integer("chunk", 0), std::int64_t(s.chunk.value()), what);
        io::expect_same(a, "microbatch", a.integer("microbatch", 0), std::int64_t(s.microbatch.value()), what);
        io::expect_same(a, "sub", a.integer("sub", 0), std::int64_t(s.sub), what);
        act.strategy = io::read_strategy(a, "strategy");
      } else if (op == "send" || op == "recv") {
        act.kind = op == "send" ? action_kind::send : action_kind::recv;
        const std::int64_t e = a.integer("edge", 0, std::int64_t(graph->edges().size()) - 1);
        act.edge = std::uint32_t(e);
        const stage_edge& edge = graph->edges()[act.edge];
        const std::string what = "edges[" + std::to_string(e) + "]";
        io::expect_same(a, "tag", a.integer("tag", 0), e, "its edge (a message's tag is its edge index)");
        const std::int64_t peer = a.integer("peer", 0);
        if (peer >= ranks)
          a.fail("peer",
                 "dangling peer: no rank " + std::to_string(peer) + " in a pipeline of " + std::to_string(ranks));
        act.peer = rank_id::from_index(std::size_t(peer));
        act.stage = edge.from;
        io::expect_same(a, "from_stage", a.integer("from_stage", 0), std::int64_t(edge.from.value()), what);
        io::expect_same(a, "to_stage", a.integer("to_stage", 0), std::int64_t(edge.to.value()), what);
        io::expect_same(
            a, "tensors",
            io::read_tensors(a, "tensors", source, file.model, items, graph->at(edge.from).microbatch.index()),
            file.tensors[act.edge], what);
        io::expect_same(a, "bytes", a.number("bytes"), edge.size.base(), what);
        if (act.kind == action_kind::recv) waits.emplace_back(i, a.integer("wait_before", 0));
      } else {
        a.fail("op", "expected compute, send or recv, got '" + op + "'");
      }
      a.finish();
      list.push_back(act);
    }
    // A receive must name the compute on this rank that consumes it.
    for (const auto& [i, wait] : waits) {
      const stage_id consumer = graph->edges()[list[i].edge].to;
      const bool names_consumer = std::size_t(wait) < list.size() &&
                                  list[std::size_t(wait)].kind == action_kind::compute &&
                                  list[std::size_t(wait)].stage == consumer;
      if (!names_consumer || std::size_t(wait) <= i) {
        io::object_reader a = element(rank, action_array, "actions", i, source);
        a.fail("wait_before", "must be the index of the later compute of stage " + std::to_string(consumer.value()) +
                                  " (the message's consumer) on this rank");
      }
    }
    rank.finish();
  }
  top.finish();

  if (std::optional<detail::plan_violation> v = detail::find_plan_violation(file.schedule, {})) {
    throw error(errc::invalid_plan, source + ": " + v->where, v->what);
  }
  return file;
}

inline exported_plan plan_from_json(const nlohmann::ordered_json& document, std::string_view source_name) {
  return plan_from_json(nlohmann::json(document), source_name);
}

// A plan document as text: one stage, edge or action per line, so that a file is read (and
// diffed) row by row; other objects and arrays that fit in a short line stay on it.
inline std::string plan_json_text(const nlohmann::ordered_json& document) {
  std::string out;
  const auto write = [&out](const auto& self, const nlohmann::ordered_json& value, std::size_t depth,
                            bool row) -> void {
    const std::string compact = value.dump();
    const bool has_rows = value.is_array() && !value.empty() && (value.front().is_object() || value.front().is_array());
    const bool split = !row && (value.is_object() ? compact.size() > 160 : has_rows && compact.size() > 100);
    if (!split) {
      out += compact;
      return;
    }
    const std::string inner(depth + 1, ' ');
    out += value.is_object() ? "{\n" : "[\n";
    bool first = true;
    for (auto it = value.begin(); it != value.end(); ++it) {
      out += (first ? "" : ",\n") + inner;
      first = false;
      bool rows = false;  // the elements of a table of stages, edges or actions: one per line
      if (value.is_object()) {
        out += nlohmann::ordered_json(it.key()).dump() + ": ";
        rows = it.key() == "stages" || it.key() == "edges" || it.key() == "actions";
      }
      if (rows && it->is_array()) {
        out += "[";
        for (std::size_t i = 0; i < it->size(); ++i) {
          out += (i == 0 ? "\n" : ",\n") + std::string(depth + 2, ' ');
          self(self, (*it)[i], depth + 2, true);
        }
        out += it->empty() ? "]" : "\n" + inner + "]";
        continue;
      }
      self(self, *it, depth + 1, false);
    }
    out += "\n" + std::string(depth, ' ') + (value.is_object() ? "}" : "]");
  };
  write(write, document, 0, false);
  return out + "\n";
}

// Writes `file` as JSON; throws dip::error(errc::not_found) if the file cannot be written.
inline void write_plan_file(const std::filesystem::path& path, const exported_plan& file) {
  std::ofstream out(path);
  require(bool(out), errc::not_found, path.string(), "cannot write the plan file");
  out << plan_json_text(plan_to_json(file));
  require(bool(out), errc::not_found, path.string(), "writing the plan file failed");
}

// Reads and validates a plan file (see plan_from_json for the errors).
inline exported_plan read_plan_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  require(bool(in), errc::not_found, path.string(), "cannot open the plan file");
  std::stringstream text;
  text << in.rdbuf();
  return plan_from_json(io::parse_json_text(text.str(), path.string()), path.string());
}

}  // namespace dip
