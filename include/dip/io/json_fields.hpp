// Strict reading of JSON objects: every error names the source and the field path
// ("toy.json: modules[1].layer.hidden: expected a positive integer, got -3"), and a field the
// reader does not know is an error rather than silently ignored (a typo like "layer_costs"
// would otherwise plan with default costs).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "dip/core/error.hpp"

namespace dip::io {

inline std::string json_type_name(const nlohmann::json& value) { return std::string(value.type_name()); }

// Turns nlohmann's 1-based position of the offending byte into "line L, column C" of `text`.
inline std::string line_and_column(std::string_view text, std::size_t byte) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i + 1 < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// Parses `text`; a syntax error becomes a dip::error naming the source, line and column.
inline nlohmann::json parse_json_text(std::string_view text, std::string_view source) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    std::string message = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 2: " prefix.
    if (const auto colon = message.find(": "); colon != std::string::npos) message = message.substr(colon + 2);
    throw error(errc::parse_error, std::string(source) + ": " + line_and_column(text, e.byte),
                "malformed JSON: " + message);
  } catch (const nlohmann::json::exception& e) {  // e.g. a number literal beyond double's range
    std::string message = e.what();
    if (const auto bracket = message.find("] "); bracket != std::string::npos) message = message.substr(bracket + 2);
    throw error(errc::parse_error, std::string(source), "malformed JSON: " + message);
  }
}

// A view of one JSON object at `path` that hands out typed fields and remembers which were
// read, so `finish()` can reject the ones nobody asked for.
class object_reader {
 public:
  object_reader(const nlohmann::json& object, std::string source, std::string path)
      : object_(object), source_(std::move(source)), path_(std::move(path)) {
    if (!object_.is_object()) fail("", "expected an object, got " + json_type_name(object_));
  }

  const std::string& path() const noexcept { return path_; }
  std::string where(std::string_view field) const {
    std::string p = path_;
    if (!field.empty()) p += (p.empty() ? "" : ".") + std::string(field);
    return source_ + (p.empty() ? "" : ": " + p);
  }
  [[noreturn]] void fail(std::string_view field, const std::string& what) const {
    throw error(errc::parse_error, where(field), what);
  }

  bool has(std::string_view field) const { return object_.contains(field); }

  const nlohmann::json* find(std::string_view field) {
    known_.insert(std::string(field));
    const auto it = object_.find(field);
    return it == object_.end() ? nullptr : &*it;
  }

  const nlohmann::json& required(std::string_view field) {
    const nlohmann::json* value = find(field);
    if (value == nullptr) fail(field, "required field is missing");
    return *value;
  }

  std::string string(std::string_view field) {
    const nlohmann::json& value = required(field);
    if (!value.is_string()) fail(field, "expected a string, got " + json_type_name(value));
    return value.get<std::string>();
  }
  std::optional<std::string> optional_string(std::string_view field) {
    if (!has(field)) {
      find(field);
      return std::nullopt;
    }
    return string(field);
  }

  // A finite number >= minimum (NaN and infinities cannot be written in JSON, but a huge
  // literal like 1e999 parses to infinity).
  double number(std::string_view field, double minimum = 0.0, bool strictly_greater = false) {
    const nlohmann::json& value = required(field);
    if (!value.is_number()) fail(field, "expected a number, got " + json_type_name(value));
    const double x = value.get<double>();
    const bool ok = std::isfinite(x) && (strictly_greater ? x > minimum : x >= minimum);
    if (!ok) {
      fail(field, std::string("expected a finite number ") + (strictly_greater ? "> " : ">= ") + trim(minimum) +
                      ", got " + value.dump());
    }
    return x;
  }
  std::optional<double> optional_number(std::string_view field, double minimum = 0.0, bool strictly_greater = false) {
    if (!has(field)) {
      find(field);
      return std::nullopt;
    }
    return number(field, minimum, strictly_greater);
  }

  // An integer in [minimum, maximum]; 2.0 is accepted, 2.5 is not.
  std::int64_t integer(std::string_view field, std::int64_t minimum = 1, std::int64_t maximum = std::int64_t{1} << 40) {
    const nlohmann::json& value = required(field);
    if (!value.is_number()) fail(field, "expected an integer, got " + json_type_name(value));
    const double x = value.get<double>();
    if (!std::isfinite(x) || std::floor(x) != x || x < double(minimum) || x > double(maximum)) {
      fail(field, "expected an integer in [" + std::to_string(minimum) + ", " + std::to_string(maximum) + "], got " +
                      value.dump());
    }
    return static_cast<std::int64_t>(x);
  }
  std::optional<std::int64_t> optional_integer(std::string_view field, std::int64_t minimum = 1,
                                               std::int64_t maximum = std::int64_t{1} << 40) {
    if (!has(field)) {
      find(field);
      return std::nullopt;
    }
    return integer(field, minimum, maximum);
  }

  bool boolean(std::string_view field, bool fallback) {
    const nlohmann::json* value = find(field);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) fail(field, "expected true or false, got " + json_type_name(*value));
    return value->get<bool>();
  }

  // Rejects fields that were never asked for, listing the ones this object accepts.
  void finish() const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (known_.count(it.key()) != 0) continue;
      std::string accepted;
      for (const std::string& k : known_) accepted += (accepted.empty() ? "" : ", ") + k;
      fail(it.key(), "unknown field (accepted here: " + accepted + ")");
    }
  }

 private:
  static std::string trim(double x) {
    std::string s = std::to_string(x);
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }

  const nlohmann::json& object_;
  std::string source_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

}  // namespace dip::io
