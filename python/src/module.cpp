// dip._dip: the Python bindings (pybind11). The `dip` package (python/dip/__init__.py) re-exports
// what is here; docs/python.md is the user's guide and API reference.
//
// Everything crosses the boundary as plain Python values (str, int, float, lists, dicts) or as
// the small classes Model, Planner, Plan and Action, so Python code never holds a reference into
// a C++ structure that could dangle. Planning is dip::planner's (python/src/planner_handle.hpp);
// it releases the GIL: other Python threads run while a schedule is searched.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <dip/batch/source.hpp>
#include <dip/core/error.hpp>
#include <dip/dip.hpp>

#include "json_python.hpp"
#include "model_handle.hpp"
#include "plan_view.hpp"
#include "planner_handle.hpp"
#include "profiled_costs.hpp"
#include "sample_batch.hpp"

namespace py = pybind11;
using namespace dip::python;

namespace {

// dip.Error: a ValueError (bad input is what dip reports) with the library's where/what/code.
PyObject* dip_error_type = nullptr;

void translate_dip_errors(std::exception_ptr thrown) {
  try {
    if (thrown) std::rethrow_exception(thrown);
  } catch (const dip::error& e) {
    py::object type = py::reinterpret_borrow<py::object>(dip_error_type);
    py::object value = type(e.what());
    value.attr("where") = e.where();
    value.attr("what") = e.detail();
    value.attr("code") = std::string(dip::to_string(e.code()));
    PyErr_SetObject(dip_error_type, value.ptr());
  }
}

// A batch must be a list of microbatches, each a list of sample dicts; anything else is a
// TypeError naming the position. Values inside a sample are checked by the trace reader.
nlohmann::json batch_to_json(py::handle batch) {
  const auto is_sequence = [](py::handle h) { return py::isinstance<py::list>(h) || py::isinstance<py::tuple>(h); };
  if (!is_sequence(batch)) {
    throw py::type_error("batch: expected a list of microbatches (each a list of sample dicts), got " +
                         std::string(py::str(batch.get_type().attr("__name__"))));
  }
  nlohmann::json out = nlohmann::json::array();
  std::size_t j = 0;
  for (py::handle microbatch : batch) {
    const std::string where = "batch[" + std::to_string(j) + "]";
    if (!is_sequence(microbatch)) {
      throw py::type_error(where + ": expected a list of sample dicts, got " +
                           std::string(py::str(microbatch.get_type().attr("__name__"))));
    }
    nlohmann::json samples = nlohmann::json::array();
    std::size_t i = 0;
    for (py::handle sample : microbatch) {
      const std::string at = sample_where(j, i++);
      if (!py::isinstance<py::dict>(sample)) {
        throw py::type_error(at + ": expected a sample dict such as {\"text_tokens\": 512, \"images\": 2}, got " +
                             std::string(py::str(sample.get_type().attr("__name__"))));
      }
      samples.push_back(to_json(sample, at));
    }
    out.push_back(std::move(samples));
    ++j;
  }
  return out;
}

// Packs a Python batch; samples the packer had to cut become UserWarnings.
std::vector<dip::packed_microbatch> pack_python_batch(py::handle batch, const model_handle& model) {
  packed_batch packed = pack_batch(batch_to_json(batch), model.model);
  for (const std::string& note : packed.truncations) {
    if (PyErr_WarnEx(PyExc_UserWarning, note.c_str(), 1) != 0) throw py::error_already_set();
  }
  return std::move(packed.microbatches);
}

// A model file by path (str or os.PathLike), or JSON text when a str starts with '{'.
std::shared_ptr<model_handle> model_from_python_json(py::handle path_or_text) {
  if (py::isinstance<py::str>(path_or_text)) {
    return std::make_shared<model_handle>(model_from_json(path_or_text.cast<std::string>()));
  }
  const std::string path = py::str(py::module_::import("os").attr("fspath")(path_or_text));
  return std::make_shared<model_handle>(model_from_file(dip::read_model_file(std::filesystem::path(path)), path));
}

// What Planner() and plan() take as a model: a dip.Model, or what dip-plan's --model takes (a
// preset name, a model file's path; or JSON text).
std::shared_ptr<const model_handle> model_of(py::handle model) {
  if (py::isinstance<model_handle>(model)) return model.cast<std::shared_ptr<model_handle>>();
  if (py::isinstance<py::str>(model)) {
    const std::string text = model.cast<std::string>();
    const auto first = text.find_first_not_of(" \t\r\n");
    const bool is_file = (first != std::string::npos && text[first] == '{') || text.ends_with(".json") ||
                         std::filesystem::exists(text);
    return is_file ? model_from_python_json(model) : std::make_shared<model_handle>(model_from_preset(text));
  }
  if (py::hasattr(model, "__fspath__")) return model_from_python_json(model);
  throw py::type_error("model: expected a dip.Model, a preset name or a model file's path, got " +
                       std::string(py::str(model.get_type().attr("__name__"))));
}

py::dict module_dict(const dip::multimodal_model& model, const dip::module_spec& m) {
  py::list inputs;
  for (dip::module_id id : model.inputs_of(m.id)) inputs.append(model.module(id).name);
  py::dict d;
  d["name"] = m.name;
  d["role"] = std::string(dip::to_string(m.role));
  d["modality"] = m.modality.name();
  d["layers"] = m.layers.size();
  d["parameters"] = dip::parameter_count(m);
  d["item"] = std::string(dip::to_string(dip::module_item_kind(model, m.id)));
  d["inputs"] = inputs;
  return d;
}

// The plan's action-list JSON text (version 2), made without the GIL.
std::string plan_text(const plan_view& v) {
  dip::require(v.source_plan != nullptr, dip::errc::invalid_argument, "Plan", "has no plan to export");
  py::gil_scoped_release unlocked;
  return dip::plan_json_text(dip::plan_to_json(v.source_plan->exported()));
}

py::dict microbatch_dict(const dip::microbatch_summary& s) { return to_python(dip::to_json(s)).cast<py::dict>(); }

py::dict action_dict(const action_view& a) {
  py::dict d;
  d["kind"] = a.kind;
  d["stage"] = a.stage;
  d["module"] = a.module;
  d["chunk"] = a.chunk;
  d["chain"] = a.chain;
  d["microbatch"] = a.microbatch;
  d["sub"] = a.sub;
  d["strategy"] = a.strategy;
  d["peer"] = a.peer ? py::object(py::int_(*a.peer)) : py::none();
  d["edge"] = a.edge ? py::object(py::int_(*a.edge)) : py::none();
  d["start_ms"] = a.start_ms;
  d["end_ms"] = a.end_ms;
  d["label"] = a.label;
  return d;
}

// A source of batches that keeps its model alive (batch_source itself needs the model only
// while it is made, samples_of needs it for every batch).
struct python_batch_source {
  std::shared_ptr<const model_handle> model;
  dip::batch_source source;

  py::list next_batch(std::size_t microbatches) {
    const std::vector<dip::packed_microbatch> batch = source.next_batch(microbatches);
    return to_python(batch_as_samples(batch, model->model, source.name())).cast<py::list>();
  }
};

}  // namespace

PYBIND11_MODULE(_dip, m) {
  m.doc() = "dip: pipeline-parallel schedules for multimodal model training (C++ core; use the `dip` package)";
  m.attr("__version__") = dip::version_string;

  dip_error_type = PyErr_NewExceptionWithDoc(
      "dip.Error",
      "An error dip reports for bad input or an impossible request. A ValueError with three "
      "attributes: `where` (the location: 'batch[2][0] field \\'images\\'', 'schedule', a file and "
      "field), `what` (the message without the location) and `code` (the category: 'invalid "
      "argument', 'parse error', 'not found', 'graph error', 'infeasible', 'deadlock', 'invalid plan').",
      PyExc_ValueError, nullptr);
  if (dip_error_type == nullptr) throw py::error_already_set();
  m.attr("Error") = py::handle(dip_error_type);
  py::register_exception_translator(&translate_dip_errors);

  m.def("presets", &dip::preset_names, "Names of the model presets, for Model.preset().");
  m.def(
      "schedules", [] { return dip::schedule_registry::builtin().names(); },
      "Names of the schedules plan() accepts (Planner.schedules: those of one planner).");
  m.def(
      "gpus",
      [] {
        std::vector<std::string> names;
        for (const dip::gpu_spec& g : dip::gpu_presets()) names.push_back(g.name);
        return names;
      },
      "Names of the GPU presets, for plan(gpu=...).");
  m.def("batch_sources", &dip::batch_source_names,
        "Names of the built-in batch sources, for batch_from_source() (a path to a .jsonl trace works too).");

  py::class_<model_handle, std::shared_ptr<model_handle>>(m, "Model",
                                                          R"(A model: its modules and the cluster defaults plan() uses.

Make one with Model.preset(name) or Model.from_json(path_or_text).)")
      .def_static(
          "preset", [](const std::string& name) { return std::make_shared<model_handle>(model_from_preset(name)); },
          py::arg("name"), "The model preset `name` (see dip.presets()). Raises dip.Error for an unknown name.")
      .def_static(
          "from_json", [](py::object path_or_text) { return model_from_python_json(path_or_text); },
          py::arg("path_or_text"),
          "A model from a JSON model file (docs/model-format.md): a path (str or os.PathLike), or the JSON text "
          "itself when the string starts with '{'. Raises dip.Error naming the file and field of a mistake.")
      .def_property_readonly("name", [](const model_handle& h) { return h.model.name(); })
      .def_property_readonly(
          "description", [](const model_handle& h) { return h.description; },
          "The preset's description ('ViT-5B + Llama3-8B'); '' for a model file.")
      .def_property_readonly(
          "source", [](const model_handle& h) { return h.source; }, "'preset', the model file's path, or '<string>'.")
      .def_property_readonly(
          "pp", [](const model_handle& h) { return h.pp; },
          "Default pipeline-parallel ranks (the preset's, the file's, else 1).")
      .def_property_readonly(
          "tp", [](const model_handle& h) { return h.tp; },
          "Default tensor-parallel degree (the preset's, the file's, else 1).")
      .def_property_readonly(
          "gpu", [](const model_handle& h) { return h.gpu; },
          "Default GPU preset (the preset's, the file's, else 'H800').")
      .def_property_readonly(
          "kind", [](const model_handle& h) { return std::string(dip::to_string(dip::packing_kind_of(h.model))); },
          "How batches are packed for it: 'vision-language', 'text-to-video' or 'text'.")
      .def_property_readonly("parameter_count", [](const model_handle& h) { return h.model.parameter_count(); })
      .def_property_readonly(
          "modules",
          [](const model_handle& h) {
            py::list modules;
            for (const dip::module_spec& spec : h.model.modules()) modules.append(module_dict(h.model, spec));
            return modules;
          },
          "The modules in id order, each a dict: name, role, modality, layers, parameters, item (what its "
          "sub-microbatches count: image, clip, caption or sequence) and inputs (names of the modules feeding it).")
      .def("__repr__", [](const model_handle& h) {
        std::string modules;
        for (const dip::module_spec& spec : h.model.modules()) modules += (modules.empty() ? "" : ", ") + spec.name;
        return "<dip.Model '" + h.model.name() + "' (" + modules + "), pp " + std::to_string(h.pp) + ", tp " +
               std::to_string(h.tp) + ", " + h.gpu + ">";
      });

  py::class_<action_view>(m, "Action", "One action of a rank's list (see docs/python.md, 'Actions').")
      .def_readonly("kind", &action_view::kind, "'compute', 'send' or 'recv'.")
      .def_readonly("stage", &action_view::stage,
                    "'F' (forward), 'B' (backward), 'I' (input gradient), 'W' (weight gradient); for send/recv, the "
                    "stage that produced the message.")
      .def_readonly("module", &action_view::module, "Module(s) of the stage's chunk, '+'-joined if several.")
      .def_readonly("chunk", &action_view::chunk)
      .def_readonly("chain", &action_view::chain)
      .def_readonly("microbatch", &action_view::microbatch)
      .def_readonly("sub", &action_view::sub, "Sub-microbatch within the microbatch (0 when not split).")
      .def_readonly("strategy", &action_view::strategy, "'keep', 'recompute' or 'offload' (a forward's activations).")
      .def_readonly("peer", &action_view::peer, "send: the receiving rank; recv: the sending rank; else None.")
      .def_readonly("edge", &action_view::edge, "send/recv: the message id, equal on the matching send and recv.")
      .def_readonly("start_ms", &action_view::start_ms, "Simulated start.")
      .def_readonly("end_ms", &action_view::end_ms, "Simulated end (a recv: when the data is there).")
      .def_readonly("label", &action_view::label, "Short text, e.g. 'F3.1@c2' or 'send F3@c1 -> F3@c2 to rank 2'.")
      .def("to_dict", &action_dict, "The action as a plain dict.")
      .def("__repr__", [](const action_view& a) { return "<dip.Action " + a.label + ">"; });

  py::class_<plan_view>(m, "Plan", "A validated, simulated plan of one batch under one schedule.")
      .def_readonly("model", &plan_view::model)
      .def_readonly("schedule", &plan_view::schedule)
      .def_readonly("partition", &plan_view::partition,
                    "The placement it ran on: 'balanced', 'megatron', 'dip' (modality-aware) or 'optimus'.")
      .def_readonly("pp", &plan_view::pp)
      .def_readonly("tp", &plan_view::tp)
      .def_readonly("gpu", &plan_view::gpu)
      .def_readonly("memory_cap_bytes", &plan_view::memory_cap_bytes, "Memory per GPU the plan had to fit.")
      .def_readonly("makespan_ms", &plan_view::makespan_ms, "Simulated iteration time.")
      .def_readonly("bubble_ratio", &plan_view::bubble_ratio, "1 - busy time / (ranks x makespan).")
      .def_readonly("lower_bound_ms", &plan_view::lower_bound_ms,
                    "The classic bound: the largest of the busiest rank's work, the critical path and the "
                    "average work (communication not counted).")
      .def_readonly("memory_free_bound_ms", &plan_view::memory_free_bound_ms,
                    "A tighter bound with memory free: lower_bound_ms or the rank window (per rank, its "
                    "earliest start, its work and its shortest tail), whichever is larger.")
      .def_readonly("cap_bound_ms", &plan_view::cap_bound_ms,
                    "What no schedule of this batch on this placement can beat within memory_cap_bytes, "
                    "recompute and offload allowed (memory_free_bound_ms when the plan was not capped).")
      .def_property_readonly(
          "lower_bounds",
          [](const plan_view& v) {
            py::dict d;
            d["busiest_rank_ms"] = v.busiest_rank_ms;
            d["critical_path_ms"] = v.critical_path_ms;
            d["average_work_ms"] = v.average_work_ms;
            d["rank_window_ms"] = v.rank_window_ms;
            d["cap_ms"] = v.cap_bound_ms;
            return d;
          },
          "The terms of the three bounds (docs/dip-plan.md, step 4; dip/sim/lower_bounds.hpp).")
      .def_property_readonly("peak_memory_bytes", &plan_view::peak_memory, "Largest peak over the ranks.")
      .def_readonly("peak_memory_bytes_per_rank", &plan_view::peak_memory_per_rank,
                    "Per rank: weights, gradients, optimiser state and the most activations held at once.")
      .def_readonly("weight_memory_bytes_per_rank", &plan_view::weight_memory_per_rank)
      .def_readonly("busy_ms", &plan_view::busy_ms, "Per rank: time spent computing.")
      .def_readonly("plan_ms", &plan_view::plan_ms, "Wall time of planning (graph, schedule, memory fit).")
      .def_readonly("index", &plan_view::index, "The batch index it was planned as (dip's search seed: seed + index).")
      .def_readonly("source", &plan_view::source,
                    "How Planner.get obtained it: 'in_time', 'best_so_far', 'fallback' or 'error'; None from plan().")
      .def_readonly("search_error", &plan_view::search_error, "source 'error': what dip's search raised; else ''.")
      .def_readonly("ranks", &plan_view::ranks, "Per rank, its actions in order (lists of dip.Action).")
      .def(
          "executable", [](const plan_view& v) { return py::module_::import("json").attr("loads")(plan_text(v)); },
          R"(The plan as an executable action-list document (docs/plan-format.md, version 2), a dict:
json.loads of to_json(). Per rank its actions; the model's modules and layers; under "batch", per
microbatch the images, clips and captions it holds and, per module, its sub-microbatches' items,
rows and work units; on every edge and message the exact tensors it carries ("state", "context" or "output"
rows x features of a module, for which items).)")
      .def(
          "to_json",
          [](const plan_view& v, py::object path) -> py::object {
            const std::string text = plan_text(v);
            if (path.is_none()) return py::str(text);
            const std::string file = py::str(py::module_::import("os").attr("fspath")(path));
            {
              py::gil_scoped_release unlocked;
              std::ofstream out(file);
              dip::require(bool(out), dip::errc::not_found, file, "cannot write the plan file");
              out << text;
              dip::require(bool(out), dip::errc::not_found, file, "writing the plan file failed");
            }
            return py::none();
          },
          py::arg("path") = py::none(),
          R"(The executable document as JSON text (what dip-plan --export writes), or, given a path
(str or os.PathLike), written to that file (returns None). Raises dip.Error if it cannot be written.)")
      .def_property_readonly(
          "microbatches",
          [](const plan_view& v) {
            py::list list;
            for (const dip::microbatch_summary& s : v.microbatches) list.append(microbatch_dict(s));
            return list;
          },
          "Per microbatch, what it holds after packing: samples, text_tokens, image_tokens, images, clips, frames "
          "and sub_microbatches per module.")
      .def("__repr__", [](const plan_view& v) {
        char text[256];
        std::snprintf(text, sizeof text, "<dip.Plan %s of '%s' on %d ranks: %.3f ms, bubble %.4f, peak %s>",
                      v.schedule.c_str(), v.model.c_str(), v.pp, v.makespan_ms, v.bubble_ratio,
                      dip::to_string(dip::bytes(double(v.peak_memory()))).c_str());
        return std::string(text);
      });

  py::class_<dip::profiled_cost_model>(m, "ProfiledCosts",
                                       R"(Layer costs fitted to measured runs (dip::profiled_cost_model).

Time a layer's forward, backward-input and backward-weight passes and measure its kept activation
and output at a few sizes; each of the five is fitted by least squares on [1, tokens, token_pairs]
(a + b n + c n^2 for one sequence of n tokens; basis "linear": [1, tokens]; "per_sequence":
[1, tokens, token_pairs, sequences], a cost per sequence too). Give samples for all
layers of a module (add_samples) or for one layer (add_layer_samples, which wins over the
module's). Pass it to dip.Planner(model, costs=...) or dip.plan(..., costs=...): the layers it
fitted are priced from it, the others by the analytic model.

    costs = dip.ProfiledCosts()
    costs.add_samples("vit", [{"work": {"sequences": 1, "tokens": n, "token_pairs": n * n},
                               "forward_ms": ..., "backward_input_ms": ..., "backward_weight_ms": ...,
                               "activation_bytes": ..., "output_bytes": ...} for n in (256, 1024, 4096)])
    plan = dip.plan(model, batch, "dip", costs=costs))")
      .def(py::init<>())
      .def(
          "add_samples",
          [](dip::profiled_cost_model& self, const std::string& module, py::object samples, const std::string& basis) {
            const dip::profile_basis b = basis_of(basis);
            return report_dict(self.add_samples(module, samples_from_python(samples), b));
          },
          py::arg("module"), py::arg("samples"), py::arg("basis") = "quadratic",
          R"(Adds measured samples for every layer of `module` without a fit of its own and refits the
module's profile on all its samples so far; returns the fit's report.

A sample: {"work": {"sequences", "tokens", "token_pairs", "context_tokens", "context_pairs"}
(missing keys are 0; token_pairs is the sum of squared sequence lengths), "forward_ms",
"backward_input_ms", "backward_weight_ms", "activation_bytes", "output_bytes"} (all five
required, >= 0). basis: "quadratic", "linear" or "per_sequence" (applies to all the module's samples).
The report: {"basis", "features", "samples", "forward", "backward_input", "backward_weight",
"activation", "output"}, each fit {"coefficients" (one per feature), "rms_residual",
"max_abs_residual", "max_relative_residual", "r_squared", "samples"}; coefficients and residuals
are in SI units: seconds (not ms) or bytes per 1, per token, per token pair.
Raises dip.Error naming the sample and key (a missing or negative value, a sample without
tokens), the basis, or what samples the fit lacks (too few distinct sizes); the profile is then
unchanged.)")
      .def(
          "add_layer_samples",
          [](dip::profiled_cost_model& self, const std::string& module, std::size_t layer, py::object samples,
             const std::string& basis) {
            const dip::profile_basis b = basis_of(basis);
            return report_dict(self.add_layer_samples(module, layer, samples_from_python(samples), b));
          },
          py::arg("module"), py::arg("layer"), py::arg("samples"), py::arg("basis") = "quadratic",
          "As add_samples, for layer `layer` of `module` only: its fit wins over the module's.")
      .def(
          "report",
          [](const dip::profiled_cost_model& self, const std::string& module, std::optional<std::size_t> layer) {
            return report_dict(layer ? self.report(module, *layer) : self.report(module));
          },
          py::arg("module"), py::arg("layer") = py::none(),
          "The report of `module`'s fit (layer None), or of the fit that prices layer `layer` (its own, else "
          "the module's). Raises dip.Error when there is none.")
      .def(
          "cost",
          [](const dip::profiled_cost_model& self, const model_handle& model, const std::string& module,
             std::size_t layer, py::object work) {
            const dip::module_spec& spec = model.model.module(model.model.at(module));
            return cost_dict(self.cost(spec, layer, work_from_python(work, "work")));
          },
          py::arg("model"), py::arg("module"), py::arg("layer"), py::arg("work"),
          R"(The fitted cost of layer `layer` of module `module` of `model` (a dip.Model) on `work` (a
work dict, missing keys 0): {"forward_ms", "backward_input_ms", "backward_weight_ms",
"activation_bytes", "output_bytes"}, each clamped at 0. Raises dip.Error for an unknown module,
a layer beyond it, or a layer with no fit.)")
      .def(
          "set_stage_overhead",
          [](dip::profiled_cost_model& self, double forward_ms, double backward_input_ms, double backward_weight_ms) {
            self.set_stage_overhead(dip::milliseconds(forward_ms), dip::milliseconds(backward_input_ms),
                                    dip::milliseconds(backward_weight_ms));
          },
          py::arg("forward_ms"), py::arg("backward_input_ms"), py::arg("backward_weight_ms"),
          R"(What running a stage costs beyond its layers (the runtime's own work per action), per kind:
added once to every stage's F, I and W (a B pays I's and W's) for each module it runs. Raises
dip.Error for a negative or non-finite time.)")
      .def_property_readonly(
          "stage_overhead",
          [](const dip::profiled_cost_model& self) {
            const dip::layer_cost& o = self.stage_overhead();
            py::dict d;
            d["forward_ms"] = o.forward.base() * 1e3;
            d["backward_input_ms"] = o.backward_input.base() * 1e3;
            d["backward_weight_ms"] = o.backward_weight.base() * 1e3;
            return d;
          },
          "The stage overhead set_stage_overhead gave (ms), zeros by default.")
      .def_property_readonly("modules", &dip::profiled_cost_model::profiled_modules,
                             "Names of the modules with samples (for all layers or one), sorted.")
      .def("__repr__", [](const dip::profiled_cost_model& self) {
        std::string names;
        for (const std::string& name : self.profiled_modules()) names += (names.empty() ? "" : ", ") + name;
        return "<dip.ProfiledCosts" + (names.empty() ? std::string(" (empty)") : " of " + names) + ">";
      });

  py::class_<planner_handle, std::shared_ptr<planner_handle>>(
      m, "Planner", R"(Plans batches for one training run: dip::planner from Python.

Built once from a model and the cluster (pp, tp, gpu, memory_cap_gib, p2p_latency_us, link_gbps),
its costs (the analytic model, or a dip.ProfiledCosts in front of it) and the
planner's options; each plan(batch, schedule) then places, splits, orders, fits and simulates one
batch. What is fixed for the run is made once, on first use: the placements, and K per chain of
the modality-aware one, tuned on tuning_batches (default: the first batch a dip or static-dip plan
gets). submit(index, batch) plans ahead on worker threads; get(index, timeout_s) returns that
plan by the deadline (dip's best plan so far, else the static-dip plan fitted to the cap).

model: a dip.Model, a preset name or a model file's path. The keyword arguments are dip-plan's
flags of the same names (docs/dip-plan.md); None means the model's value (pp, tp, gpu), the GPU's
memory (memory_cap_gib) or the planner's choice.)")
      .def(py::init([](py::object model, std::optional<int> pp, std::optional<int> tp, std::optional<std::string> gpu,
                       std::optional<std::string> partition, std::optional<double> memory_cap_gib, double search_ms,
                       std::size_t search_rollouts, std::uint64_t seed, unsigned threads, int chunks,
                       double p2p_latency_us, bool memory_strategies, bool fit_memory, bool tune_segments,
                       std::optional<int> segments_per_rank, std::optional<int> sub_microbatch_size,
                       std::optional<py::list> tuning_batches, const dip::profiled_cost_model* costs,
                       std::optional<double> link_gbps, std::string balance) {
             std::shared_ptr<const model_handle> handle = model_of(model);
             planner_request request{.pp = pp,
                                     .tp = tp,
                                     .gpu = std::move(gpu),
                                     .partition = std::move(partition),
                                     .balance = std::move(balance),
                                     .memory_cap_gib = memory_cap_gib,
                                     .search_ms = search_ms,
                                     .search_rollouts = search_rollouts,
                                     .seed = seed,
                                     .threads = threads,
                                     .chunks = chunks,
                                     .p2p_latency_us = p2p_latency_us,
                                     .link_gbps = link_gbps,
                                     .memory_strategies = memory_strategies,
                                     .fit_memory = fit_memory,
                                     .tune_segments = tune_segments,
                                     .segments_per_rank = segments_per_rank,
                                     .sub_microbatch_size = sub_microbatch_size,
                                     .tuning_batches = {},
                                     .costs = costs != nullptr ? *costs : dip::profiled_cost_model{}};
             check_request(request);  // before packing the tuning batches
             if (tuning_batches) {
               for (py::handle b : *tuning_batches) request.tuning_batches.push_back(pack_python_batch(b, *handle));
             }
             return std::make_shared<planner_handle>(std::move(handle), std::move(request));
           }),
           py::arg("model"), py::kw_only(), py::arg("pp") = py::none(), py::arg("tp") = py::none(),
           py::arg("gpu") = py::none(), py::arg("partition") = py::none(), py::arg("memory_cap_gib") = py::none(),
           py::arg("search_ms") = 200.0, py::arg("search_rollouts") = 0, py::arg("seed") = 0, py::arg("threads") = 1,
           py::arg("chunks") = 2, py::arg("p2p_latency_us") = 0.0, py::arg("memory_strategies") = true,
           py::arg("fit_memory") = true, py::arg("tune_segments") = true, py::arg("segments_per_rank") = py::none(),
           py::arg("sub_microbatch_size") = py::none(), py::arg("tuning_batches") = py::none(),
           py::arg("costs") = py::none(), py::arg("link_gbps") = py::none(), py::arg("balance") = "uniform",
           R"(partition: placement of the classic schedules, 'balanced' (default), 'megatron' or 'dip'.
balance: what 'balanced' balances time for: 'uniform' (default), DESIGN.md's uniform microbatch;
'batch', the mean microbatch of tuning_batches, else of the first batch planned (for data whose
microbatches are far from the uniform one, e.g. small models measured on CPUs).
costs: a dip.ProfiledCosts, copied now (later samples do not reach this planner): the layers it
fitted are priced from the profile; a model file's measured layer costs still come first and the
analytic model prices the rest. None: the analytic model (and the file's table).
link_gbps: bandwidth of a pipeline message in GB/s (1e9 bytes/s), > 0; None: NVLink when
tp x pp fits one node, else the network (the GPU preset's figures). p2p_latency_us adds to it.
tuning_batches: batches (lists of microbatches of sample dicts) to tune the segments per rank on
(dip, static-dip); default: the first batch planned with one of them.
search_ms, search_rollouts, seed, threads: dip's search per batch (batch `index` is searched with
seed + index); threads also solve phase 3's ranks in parallel. Raises dip.Error naming a bad argument.)")
      .def(
          "plan",
          [](const planner_handle& self, py::object batch, const std::string& schedule, std::uint64_t index) {
            self.check_schedule(schedule);  // before packing: a typo in the schedule is the first thing to hear about
            const std::vector<dip::packed_microbatch> packed = pack_python_batch(batch, *self.model());
            py::gil_scoped_release unlocked;
            return self.plan(packed, schedule, index);
          },
          py::arg("batch"), py::arg("schedule") = "dip", py::arg("index") = 0,
          R"(Plans one batch with one schedule, validates the plan and simulates it; returns a dip.Plan.

batch: a list of microbatches, each a list of sample dicts as in a trace file
  ({"text_tokens": N, "images": K}, {"text_tokens": N, "images": [{"width": W, "height": H}]},
  {"text_tokens": N, "clips": [{"seconds": S}]}); each microbatch must fit one packed microbatch.
schedule: one of Planner.schedules. index: the batch's index (dip's search seed is seed + index).
Raises dip.Error (a ValueError) naming what is wrong (an unknown schedule, with the known ones; a
schedule that cannot fit the memory cap, with why), TypeError for a batch of the wrong shape.)")
      .def(
          "submit",
          [](planner_handle& self, std::uint64_t index, py::object batch, const std::string& schedule) {
            self.check_schedule(schedule);
            std::vector<dip::packed_microbatch> packed = pack_python_batch(batch, *self.model());
            py::gil_scoped_release unlocked;
            self.submit(index, std::move(packed), schedule);
          },
          py::arg("index"), py::arg("batch"), py::arg("schedule") = "dip",
          R"(Plans batch `index` ahead on the planner's worker threads; get(index) returns the plan.

Indexes must increase from one submit to the next, and at most two batches may wait undelivered.
The first submit may place the model and tune its segments per rank (in this thread).)")
      .def(
          "get",
          [](planner_handle& self, std::uint64_t index, std::optional<double> timeout_s) {
            py::gil_scoped_release unlocked;
            return self.get(index, timeout_s);
          },
          py::arg("index"), py::arg("timeout_s") = py::none(),
          R"(The plan of submitted batch `index` within `timeout_s` seconds (None: when its search ends).

dip's search is cancelled at the deadline and its best plan so far is returned, or the static-dip
plan fitted to the cap when it has none; Plan.source says which ('in_time', 'best_so_far',
'fallback', 'error' with Plan.search_error). Batches are delivered in submission order. Raises
dip.Error for an index never submitted.)")
      .def_property_readonly(
          "schedules", [](const planner_handle& self) { return self.facade().schedules().names(); },
          "Names of the schedules plan() accepts.")
      .def_property_readonly(
          "model", [](const planner_handle& self) { return std::const_pointer_cast<model_handle>(self.model()); },
          "The dip.Model planned for.")
      .def_property_readonly("pp", [](const planner_handle& self) { return self.facade().cluster().pp; })
      .def_property_readonly("tp", [](const planner_handle& self) { return self.facade().cluster().tp; })
      .def_property_readonly("gpu", [](const planner_handle& self) { return self.facade().cluster().gpu.name; })
      .def_property_readonly(
          "memory_cap_bytes",
          [](const planner_handle& self) { return std::int64_t(self.facade().cluster().cap().base()); },
          "Memory per GPU plans must fit, weights included.")
      .def_property_readonly(
          "partition", [](const planner_handle& self) { return self.facade().options().partition; },
          "Placement of the classic schedules: 'balanced', 'megatron' or 'dip'.")
      .def_property_readonly(
          "async_stats",
          [](const planner_handle& self) {
            const dip::async_planner_stats s = self.facade().async_stats();
            py::dict d;
            d["planned_in_time"] = s.planned_in_time;
            d["best_so_far_used"] = s.best_so_far_used;
            d["fallback_used"] = s.fallback_used;
            d["errors"] = s.errors;
            return d;
          },
          "How get() obtained its plans so far: counts of in_time, best_so_far, fallback and error.")
      .def("__repr__", [](const planner_handle& self) {
        const dip::cluster_spec& c = self.facade().cluster();
        return "<dip.Planner '" + self.model()->model.name() + "', pp " + std::to_string(c.pp) + ", tp " +
               std::to_string(c.tp) + ", " + c.gpu.name + ", cap " + dip::to_string(c.cap()) + ">";
      });

  m.def(
      "plan",
      [](py::object model, py::object batch, const std::string& schedule, py::kwargs options) {
        // A planner for this one batch: with no tuning_batches it tunes K on the batch itself.
        const py::object planner = py::type::of<planner_handle>()(model, **options);
        return planner.attr("plan")(batch, schedule);
      },
      py::arg("model"), py::arg("batch"), py::arg("schedule") = "dip",
      R"(plan(model, batch, schedule="dip", *, pp=None, tp=None, gpu=None, partition=None,
memory_cap_gib=None, search_ms=200.0, search_rollouts=0, seed=0, threads=1, chunks=2,
p2p_latency_us=0.0, memory_strategies=True, fit_memory=True, tune_segments=True,
segments_per_rank=None, sub_microbatch_size=None, tuning_batches=None, costs=None,
link_gbps=None, balance="uniform")

Plans one batch with one schedule, validates the plan and simulates it; returns a dip.Plan.
The same as Planner(model, **options).plan(batch, schedule).

model: a dip.Model, a preset name or a model file's path.
batch: a list of microbatches, each a list of sample dicts as in a trace file
  ({"text_tokens": N, "images": K}, {"text_tokens": N, "images": [{"width": W, "height": H}]},
  {"text_tokens": N, "clips": [{"seconds": S}]}); each microbatch must fit one packed microbatch.
schedule: one of dip.schedules(): dip, static-dip, optimus, gpipe, 1f1b, interleaved, zb1p, zbv,
dualpipev.
The keyword arguments are dip.Planner's, dip-plan's flags of the same names (docs/dip-plan.md);
None means the model's value (pp, tp, gpu), the GPU's memory (memory_cap_gib) or the planner's choice.
partition: placement of the classic schedules, 'balanced' (default), 'megatron' or 'dip'.
balance: what 'balanced' balances for, 'uniform' (default) or 'batch' (the batches planned).
tuning_batches: batches to tune the segments per rank on (dip, static-dip); default: this batch.
costs: a dip.ProfiledCosts pricing the layers it fitted (None: the analytic model).
link_gbps: bandwidth of a pipeline message in GB/s, > 0 (None: NVLink inside a node, else the network).
Raises dip.Error (a ValueError) naming what is wrong, TypeError for a batch of the wrong shape.)");

  py::class_<python_batch_source>(m, "BatchSource", R"(A stream of batches from a built-in source or a .jsonl trace.

Batches come back as lists of microbatches of sample dicts, ready for plan(). Samples are packed
by the model's rules, and a microbatch left open carries over to the next batch, as in dip-plan.)")
      .def(py::init([](const std::string& name, std::shared_ptr<const model_handle> model, std::uint64_t seed) {
             return python_batch_source{model, dip::make_batch_source(name, model->model, seed)};
           }),
           py::arg("name"), py::arg("model"), py::arg("seed") = 1,
           "name: one of dip.batch_sources() or a path to a .jsonl trace; seed: of a synthetic stream.")
      .def_property_readonly("name", [](const python_batch_source& s) { return s.source.name(); })
      .def("next_batch", &python_batch_source::next_batch, py::arg("microbatches") = 8,
           "The next batch: `microbatches` lists of sample dicts.");

  // Classes print as dip.Model, not dip._dip.Model: users meet them through the package.
  for (const char* name : {"Model", "Planner", "Action", "Plan", "BatchSource", "ProfiledCosts"})
    m.attr(name).attr("__module__") = "dip";

  m.def(
      "batch_from_source",
      [](const std::string& name, std::shared_ptr<const model_handle> model, std::size_t microbatches,
         std::uint64_t seed) {
        python_batch_source source{model, dip::make_batch_source(name, model->model, seed)};
        return source.next_batch(microbatches);
      },
      py::arg("name"), py::arg("model"), py::arg("microbatches") = 8, py::arg("seed") = 1,
      "The first batch of BatchSource(name, model, seed): a list of `microbatches` lists of sample dicts.");
}
