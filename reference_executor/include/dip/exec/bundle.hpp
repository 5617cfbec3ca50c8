// What the plan's messages carry: exactly the tensors the executable plan lists on the edge
// (dip::edge_tensors, docs/plan-format.md version 2), in its order: per module the state
// (hidden rows), the context (the producer rows a diffusion module cross-attends to) or the
// output rows of the items the consumer needs. A gradient message carries the gradients of the
// forward message it flows back along: the same shapes. Both ends check them against the plan.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "dip/core/error.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/io/executable_batch.hpp"

namespace dip::exec {

// The tensors of one edge, in the plan's order (empty: an edge that orders stages only).
// T is the compute backend's tensor type.
template <class T>
using basic_payload = std::vector<T>;
using payload = basic_payload<tensor>;

template <class T>
std::size_t byte_size(const basic_payload<T>& p) {
  std::size_t total = 0;
  for (const T& t : p) total += byte_size(t);
  return total;
}

// The shapes the plan gives an edge's tensors.
inline std::vector<tensor_shape> shapes_of(const std::vector<message_tensor>& specs) {
  std::vector<tensor_shape> out;
  out.reserve(specs.size());
  for (const message_tensor& t : specs) out.push_back({t.rows, t.features});
  return out;
}

// Throws dip::error(invalid_plan, where) unless `shapes` are the plan's.
inline void check_message(const std::vector<tensor_shape>& shapes, const std::vector<message_tensor>& specs,
                          const std::string& where) {
  const std::vector<tensor_shape> expected = shapes_of(specs);
  const auto text = [](const std::vector<tensor_shape>& list) {
    std::string out = "[";
    for (std::size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + to_string(list[i]);
    return out + "]";
  };
  require(shapes == expected, errc::invalid_plan, where,
          "message has tensors " + text(shapes) + ", the plan says " + text(expected));
}

// The CPU form is the payload itself.
inline tensor_pack pack(const payload& p) { return p; }
inline payload unpack(tensor_pack pack) { return pack; }

}  // namespace dip::exec
