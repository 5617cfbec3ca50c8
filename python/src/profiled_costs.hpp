// dip.ProfiledCosts as the bindings hold it: a dip::profiled_cost_model (dip/cost/profiled.hpp)
// filled from Python sample dicts, and its fit reports as plain dicts.
//
// A sample is {"work": {...}, "forward_ms", "backward_input_ms", "backward_weight_ms",
// "activation_bytes", "output_bytes"}: the five outputs are required (a profile that silently
// read a typo as 0 would price the layer as free), a work unit's fields default to 0.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <pybind11/pybind11.h>

#include <dip/core/error.hpp>
#include <dip/core/units.hpp>
#include <dip/cost/profiled.hpp>
#include <dip/cost/work.hpp>
#include <dip/io/json_fields.hpp>

#include "json_python.hpp"

namespace dip::python {

namespace py = pybind11;

// "quadratic", "linear" or "per_sequence"; anything else is a dip::error naming it.
inline profile_basis basis_of(const std::string& name) {
  if (name == "quadratic") return profile_basis::quadratic;
  if (name == "linear") return profile_basis::linear;
  if (name == "per_sequence") return profile_basis::per_sequence;
  throw error(errc::invalid_argument, "basis", "expected 'quadratic', 'linear' or 'per_sequence', got '" + name + "'");
}

// Runs `read` on an object_reader over `value`, turning its parse errors into invalid arguments
// (the input is a Python value, not a file).
template <class Read>
auto read_python_object(const nlohmann::json& value, const std::string& path, Read&& read) {
  try {
    io::object_reader in(value, "", path);
    auto out = read(in);
    in.finish();
    return out;
  } catch (const error& e) {
    std::string where = e.where();
    if (where.rfind(": ", 0) == 0) where.erase(0, 2);  // the reader's empty source
    throw error(errc::invalid_argument, where, e.detail());
  }
}

inline work_unit read_work_fields(io::object_reader& in) {
  work_unit w;
  w.sequences = in.optional_number("sequences").value_or(0.0);
  w.tokens = in.optional_number("tokens").value_or(0.0);
  w.token_pairs = in.optional_number("token_pairs").value_or(0.0);
  w.context_tokens = in.optional_number("context_tokens").value_or(0.0);
  w.context_pairs = in.optional_number("context_pairs").value_or(0.0);
  return w;
}

// A work dict ({"tokens": 512, "token_pairs": 262144, ...}; missing keys are 0) at `path`.
inline work_unit work_from_python(py::handle work, const std::string& path) {
  if (!py::isinstance<py::dict>(work)) {
    throw py::type_error(path +
                         ": expected a dict of sequences, tokens, token_pairs, context_tokens and "
                         "context_pairs, got " +
                         std::string(py::str(work.get_type().attr("__name__"))));
  }
  return read_python_object(to_json(work, path), path, [](io::object_reader& in) { return read_work_fields(in); });
}

// The samples of add_samples / add_layer_samples, checked where they sit ("samples[3].forward_ms").
inline std::vector<profile_sample> samples_from_python(py::handle samples) {
  if (!py::isinstance<py::list>(samples) && !py::isinstance<py::tuple>(samples)) {
    throw py::type_error("samples: expected a list of sample dicts, got " +
                         std::string(py::str(samples.get_type().attr("__name__"))));
  }
  std::vector<profile_sample> out;
  std::size_t i = 0;
  for (py::handle sample : samples) {
    const std::string path = "samples[" + std::to_string(i++) + "]";
    if (!py::isinstance<py::dict>(sample)) {
      throw py::type_error(path + ": expected a sample dict {\"work\": {...}, \"forward_ms\", ...}, got " +
                           std::string(py::str(sample.get_type().attr("__name__"))));
    }
    out.push_back(read_python_object(to_json(sample, path), path, [&](io::object_reader& in) {
      profile_sample s;
      s.work = read_python_object(in.required("work"), path + ".work",
                                  [](io::object_reader& work) { return read_work_fields(work); });
      s.forward = milliseconds(in.number("forward_ms"));
      s.backward_input = milliseconds(in.number("backward_input_ms"));
      s.backward_weight = milliseconds(in.number("backward_weight_ms"));
      s.activation = bytes(in.number("activation_bytes"));
      s.output = bytes(in.number("output_bytes"));
      return s;
    }));
  }
  return out;
}

inline py::dict fit_dict(const fit_report& f) {
  py::dict d;
  d["coefficients"] = f.coefficients;
  d["rms_residual"] = f.rms_residual;
  d["max_abs_residual"] = f.max_abs_residual;
  d["max_relative_residual"] = f.max_relative_residual;
  d["r_squared"] = f.r_squared;
  d["samples"] = f.samples;
  return d;
}

inline py::dict report_dict(const profile_report& r) {
  py::dict d;
  d["basis"] = std::string(to_string(r.basis));
  d["features"] = feature_names(r.basis);
  d["samples"] = r.samples;
  d["forward"] = fit_dict(r.forward);
  d["backward_input"] = fit_dict(r.backward_input);
  d["backward_weight"] = fit_dict(r.backward_weight);
  d["activation"] = fit_dict(r.activation);
  d["output"] = fit_dict(r.output);
  return d;
}

inline py::dict cost_dict(const layer_cost& c) {
  py::dict d;
  d["forward_ms"] = to_milliseconds(c.forward);
  d["backward_input_ms"] = to_milliseconds(c.backward_input);
  d["backward_weight_ms"] = to_milliseconds(c.backward_weight);
  d["activation_bytes"] = c.activation.base();
  d["output_bytes"] = c.output.base();
  return d;
}

}  // namespace dip::python
