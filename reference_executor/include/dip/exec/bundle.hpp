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
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/exec/unit_pass.hpp"

namespace dip::exec {

// T is the compute backend's tensor type; the CPU backend's bundles are the aliases below.
template <class T>
struct basic_activation_bundle {
  std::map<unit_key, basic_unit_state<T>> states;
  std::map<unit_key, T> outputs;
};

template <class T>
struct basic_gradient_bundle {
  std::map<unit_key, basic_unit_state<T>> states;           // dx, dc
  std::map<unit_key, std::map<unit_key, T>> contributions;  // producer unit -> consumer unit -> dc / N
};

// monostate: an edge that orders stages but carries nothing (F -> B of the loss, I -> W).
template <class T>
using basic_payload = std::variant<std::monostate, basic_activation_bundle<T>, basic_gradient_bundle<T>>;

using activation_bundle = basic_activation_bundle<tensor>;
using gradient_bundle = basic_gradient_bundle<tensor>;
using payload = basic_payload<tensor>;

template <class T>
std::size_t byte_size(const basic_activation_bundle<T>& b) {
  std::size_t total = 0;
  for (const auto& [k, s] : b.states) total += s.bytes();
  for (const auto& [k, y] : b.outputs) total += byte_size(y);
  return total;
}

namespace detail {
enum entry_kind : int { state_entry = 0, output_entry = 1, contribution_entry = 2 };
}  // namespace detail

// A payload's entries: the header (one row per entry, 5 columns) and the tensors in header order.
template <class T>
struct basic_packed {
  tensor header;
  std::vector<T> tensors;
};

template <class T>
basic_packed<T> pack_entries(const basic_payload<T>& p) {
  basic_packed<T> out;
  std::vector<std::array<double, 5>> header;
  const auto states = [&](const std::map<unit_key, basic_unit_state<T>>& map) {
    for (const auto& [k, s] : map) {
      header.push_back({detail::state_entry, double(k.module), double(k.unit), 0, 0});
      out.tensors.push_back(s.x);
      out.tensors.push_back(s.c);
    }
  };
  if (const auto* a = std::get_if<basic_activation_bundle<T>>(&p)) {
    states(a->states);
    for (const auto& [k, y] : a->outputs) {
      header.push_back({detail::output_entry, double(k.module), double(k.unit), 0, 0});
      out.tensors.push_back(y);
    }
  } else if (const auto* g = std::get_if<basic_gradient_bundle<T>>(&p)) {
    states(g->states);
    for (const auto& [producer, parts] : g->contributions) {
      for (const auto& [consumer, row] : parts) {
        header.push_back({detail::contribution_entry, double(producer.module), double(producer.unit),
                          double(consumer.module), double(consumer.unit)});
        out.tensors.push_back(row);
      }
    }
  }
  out.header.resize(std::int64_t(header.size()), 5);
  for (std::size_t r = 0; r < header.size(); ++r) {
    for (int c = 0; c < 5; ++c) out.header(std::int64_t(r), c) = header[r][std::size_t(c)];
  }
  return out;
}

// `forward` says which bundle the edge carries; `where` names the message for errors.
template <class T>
basic_payload<T> unpack_entries(const tensor& head, std::vector<T> tensors, bool forward, const std::string& where) {
  require(head.cols() == 5, errc::invalid_argument, where, "message has no header");
  basic_activation_bundle<T> a;
  basic_gradient_bundle<T> g;
  std::size_t next = 0;
  const auto take = [&]() -> T {
    require(next < tensors.size(), errc::invalid_argument, where, "message is shorter than its header says");
    return std::move(tensors[next++]);
  };
  for (std::int64_t r = 0; r < head.rows(); ++r) {
    const auto kind = int(head(r, 0));
    const unit_key key{std::uint32_t(head(r, 1)), std::uint32_t(head(r, 2))};
    if (kind == detail::state_entry) {
      basic_unit_state<T> s{take(), T()};
      s.c = take();
      (forward ? a.states : g.states).emplace(key, std::move(s));
    } else if (kind == detail::output_entry && forward) {
      a.outputs.emplace(key, take());
    } else if (kind == detail::contribution_entry && !forward) {
      g.contributions[key].emplace(unit_key{std::uint32_t(head(r, 3)), std::uint32_t(head(r, 4))}, take());
    } else {
      throw error(errc::invalid_argument, where, "message header has an entry of the wrong kind");
    }
  }
  if (forward) return a;
  return g;
}

// The CPU form: tensor 0 is the header, then the entries' tensors.
inline tensor_pack pack(const payload& p) {
  basic_packed<tensor> entries = pack_entries(p);
  tensor_pack out;
  out.reserve(entries.tensors.size() + 1);
  out.push_back(std::move(entries.header));
  for (tensor& t : entries.tensors) out.push_back(std::move(t));
  return out;
}

inline payload unpack(tensor_pack pack, bool forward, const std::string& where) {
  require(!pack.empty() && pack[0].cols() == 5, errc::invalid_argument, where, "message has no header");
  std::vector<tensor> rest(std::make_move_iterator(pack.begin() + 1), std::make_move_iterator(pack.end()));
  return unpack_entries<tensor>(pack[0], std::move(rest), forward, where);
}

}  // namespace dip::exec
