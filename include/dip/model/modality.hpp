// dip::modality: the kind of data a module consumes (text, image, video, audio, latent, ...).
//
// A modality is a name rather than a closed enum so that a trainer can add its own ("depth",
// "point_cloud") without touching dip; the five built-in ones have named constructors. Names
// are lowercase identifiers: letters, digits, '_' and '-'.
#pragma once

#include <compare>
#include <string>
#include <string_view>
#include <utility>

#include "dip/core/error.hpp"

namespace dip {

class modality {
 public:
  explicit modality(std::string name) : name_(std::move(name)) {
    bool ok = !name_.empty();
    for (char c : name_) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
    }
    require(ok, errc::invalid_argument, "modality",
            "name must be a non-empty lowercase identifier, got '" + name_ + "'");
  }

  static modality text() { return modality("text"); }
  static modality image() { return modality("image"); }
  static modality video() { return modality("video"); }
  static modality audio() { return modality("audio"); }
  static modality latent() { return modality("latent"); }

  const std::string& name() const noexcept { return name_; }

  friend auto operator<=>(const modality&, const modality&) = default;
  friend bool operator==(const modality&, const modality&) = default;

 private:
  std::string name_;
};

}  // namespace dip
