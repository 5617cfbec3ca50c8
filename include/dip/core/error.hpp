// dip::error: the one exception type the library throws for bad input and impossible requests.
//
// Every error says *what* went wrong and *where* (a file and line, a JSON field path, a module
// name, a command-line flag), so that a user with a 500-GPU job waiting can fix the input
// without reading dip's source. The category lets callers branch without parsing text.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace dip {

enum class errc {
  invalid_argument,  // a value out of range, NaN, negative, zero where positive is needed
  parse_error,       // malformed JSON or trace text, wrong types, unknown fields
  not_found,         // an unknown preset, module, layer or file
  graph_error,       // a cycle, a dangling edge, an unconnected module
  infeasible,        // a request no plan can satisfy (memory cap, more stages than layers)
  deadlock,          // a plan that cannot finish
  invalid_plan,      // a plan that breaks a rule of the validator
};

constexpr std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::invalid_argument: return "invalid argument";
    case errc::parse_error: return "parse error";
    case errc::not_found: return "not found";
    case errc::graph_error: return "graph error";
    case errc::infeasible: return "infeasible";
    case errc::deadlock: return "deadlock";
    case errc::invalid_plan: return "invalid plan";
  }
  return "error";
}

class error : public std::runtime_error {
 public:
  // `where` may be empty when the context is the whole call; the message then is just `what`.
  error(errc code, std::string where, std::string what)
      : std::runtime_error(compose(where, what)), code_(code), where_(std::move(where)), detail_(std::move(what)) {}

  errc code() const noexcept { return code_; }
  // The location: "model.json: modules[2].layers", "module 'vit'", "--pp".
  const std::string& where() const noexcept { return where_; }
  // The message without the location.
  const std::string& detail() const noexcept { return detail_; }

 private:
  static std::string compose(const std::string& where, const std::string& what) {
    return where.empty() ? what : where + ": " + what;
  }

  errc code_;
  std::string where_;
  std::string detail_;
};

// Throws dip::error(code, where, what) unless `condition` holds. The message is built eagerly,
// so keep this off hot paths; it exists to keep argument checks one line each.
inline void require(bool condition, errc code, std::string_view where, std::string_view what) {
  if (!condition) throw error(code, std::string(where), std::string(what));
}

}  // namespace dip
