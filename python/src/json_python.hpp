// Python objects <-> nlohmann::json, for sample dicts going in and coming back out.
//
// Going in, every value is checked where it sits, so that a TypeError names it:
// "batch[2][0]['images'][1]: expected a number, a string, a list or a dict, got set". Integers
// are anything with __index__ (numpy integers too), floats anything with __float__; bool is
// kept apart from int (it is a subclass of int in Python, but not a count in the schema).
#pragma once

#include <string>

#include <nlohmann/json.hpp>
#include <pybind11/pybind11.h>

namespace dip::python {

namespace py = pybind11;

inline nlohmann::json to_json(py::handle value, const std::string& path) {
  if (value.is_none()) return nullptr;
  if (py::isinstance<py::bool_>(value)) return value.cast<bool>();
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  if (py::isinstance<py::dict>(value)) {
    nlohmann::json object = nlohmann::json::object();
    for (auto [key, item] : value.cast<py::dict>()) {
      if (!py::isinstance<py::str>(key)) {
        throw py::type_error(path + ": dict keys must be strings, got " + std::string(py::repr(key)));
      }
      const std::string name = key.cast<std::string>();
      object[name] = to_json(item, path + "['" + name + "']");
    }
    return object;
  }
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    nlohmann::json array = nlohmann::json::array();
    std::size_t i = 0;
    for (py::handle item : value) array.push_back(to_json(item, path + "[" + std::to_string(i++) + "]"));
    return array;
  }
  if (PyIndex_Check(value.ptr())) {
    const py::int_ number = py::reinterpret_steal<py::int_>(PyNumber_Index(value.ptr()));
    if (!number) throw py::error_already_set();
    // Beyond int64 the schema rejects the value anyway; as a float it gets the schema's message.
    int overflow = 0;
    const long long n = PyLong_AsLongLongAndOverflow(number.ptr(), &overflow);
    if (overflow != 0) return PyLong_AsDouble(number.ptr());
    return std::int64_t(n);
  }
  if (PyFloat_Check(value.ptr()) || py::hasattr(value, "__float__")) return value.cast<double>();
  throw py::type_error(path + ": expected a number, a string, a list or a dict, got " +
                       std::string(py::str(value.get_type().attr("__name__"))));
}

inline py::object to_python(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(value.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(value.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(value.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float: return py::float_(value.get<double>());
    case nlohmann::json::value_t::string: return py::str(value.get<std::string>());
    case nlohmann::json::value_t::array: {
      py::list list;
      for (const nlohmann::json& item : value) list.append(to_python(item));
      return list;
    }
    case nlohmann::json::value_t::object: {
      py::dict dict;
      for (auto it = value.begin(); it != value.end(); ++it) dict[py::str(it.key())] = to_python(it.value());
      return dict;
    }
    default: return py::none();
  }
}

}  // namespace dip::python
