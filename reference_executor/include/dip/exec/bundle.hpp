// What the plan's messages carry, and how it is packed into tensors for a transport.
//
// A forward message (an edge out of an F stage) is an activation_bundle: hidden states of
// modules in progress and finished outputs still needed downstream (chain_layout.hpp). A
// backward message is a gradient_bundle: the gradients of those states, and for each producer
// output the context-gradient contributions of the consumer units that read it, kept apart
// (consumer unit -> dc / N) until the producer sums them in canonical order.
// Packed form: tensor 0 is a header with one row per entry (kind, module, unit, consumer
// module, consumer unit); then per state x and c, per output y, per contribution the 1 x width
// row, in header order.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/exec/unit_pass.hpp"

namespace dip::exec {

struct activation_bundle {
  std::map<unit_key, unit_state> states;
  std::map<unit_key, tensor> outputs;
};

struct gradient_bundle {
  std::map<unit_key, unit_state> states;                            // dx, dc
  std::map<unit_key, std::map<unit_key, tensor>> contributions;     // producer unit -> consumer unit -> dc / N
};

// monostate: an edge that orders stages but carries nothing (F -> B of the loss, I -> W).
using payload = std::variant<std::monostate, activation_bundle, gradient_bundle>;

inline std::size_t byte_size(const activation_bundle& b) {
  std::size_t total = 0;
  for (const auto& [k, s] : b.states) total += s.bytes();
  for (const auto& [k, y] : b.outputs) total += byte_size(y);
  return total;
}

namespace detail {
enum entry_kind : int { state_entry = 0, output_entry = 1, contribution_entry = 2 };
}  // namespace detail

inline tensor_pack pack(const payload& p) {
  tensor_pack out{tensor()};
  std::vector<std::array<double, 5>> header;
  const auto states = [&](const std::map<unit_key, unit_state>& map) {
    for (const auto& [k, s] : map) {
      header.push_back({detail::state_entry, double(k.module), double(k.unit), 0, 0});
      out.push_back(s.x);
      out.push_back(s.c);
    }
  };
  if (const auto* a = std::get_if<activation_bundle>(&p)) {
    states(a->states);
    for (const auto& [k, y] : a->outputs) {
      header.push_back({detail::output_entry, double(k.module), double(k.unit), 0, 0});
      out.push_back(y);
    }
  } else if (const auto* g = std::get_if<gradient_bundle>(&p)) {
    states(g->states);
    for (const auto& [producer, parts] : g->contributions) {
      for (const auto& [consumer, row] : parts) {
        header.push_back({detail::contribution_entry, double(producer.module), double(producer.unit),
                          double(consumer.module), double(consumer.unit)});
        out.push_back(row);
      }
    }
  }
  out[0].resize(std::int64_t(header.size()), 5);
  for (std::size_t r = 0; r < header.size(); ++r) {
    for (int c = 0; c < 5; ++c) out[0](std::int64_t(r), c) = header[r][std::size_t(c)];
  }
  return out;
}

// `forward` says which bundle the edge carries; `where` names the message for errors.
inline payload unpack(tensor_pack pack, bool forward, const std::string& where) {
  require(!pack.empty() && pack[0].cols() == 5, errc::invalid_argument, where, "message has no header");
  activation_bundle a;
  gradient_bundle g;
  std::size_t next = 1;
  const auto take = [&]() -> tensor {
    require(next < pack.size(), errc::invalid_argument, where, "message is shorter than its header says");
    return std::move(pack[next++]);
  };
  for (std::int64_t r = 0; r < pack[0].rows(); ++r) {
    const auto kind = int(pack[0](r, 0));
    const unit_key key{std::uint32_t(pack[0](r, 1)), std::uint32_t(pack[0](r, 2))};
    if (kind == detail::state_entry) {
      unit_state s{take(), tensor()};
      s.c = take();
      (forward ? a.states : g.states).emplace(key, std::move(s));
    } else if (kind == detail::output_entry && forward) {
      a.outputs.emplace(key, take());
    } else if (kind == detail::contribution_entry && !forward) {
      g.contributions[key].emplace(unit_key{std::uint32_t(pack[0](r, 3)), std::uint32_t(pack[0](r, 4))}, take());
    } else {
      throw error(errc::invalid_argument, where, "message header has an entry of the wrong kind");
    }
  }
  if (forward) return a;
  return g;
}

}  // namespace dip::exec
