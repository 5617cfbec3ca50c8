// The vertices and edges of a stage graph: a stage is one (sub-)microbatch on one chunk in one
// pass (F, B, or I and W when the backward is split); an edge is a data dependency carrying
// `size` bytes when its stages are on different ranks. dip/schedule/stage_graph.hpp holds them.
#pragma once

#include <cstdint>

#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"

namespace dip {

enum class stage_kind : std::uint8_t { forward, backward, backward_input, backward_weight };

constexpr char to_char(stage_kind kind) noexcept {
  switch (kind) {
    case stage_kind::forward: return 'F';
    case stage_kind::backward: return 'B';
    case stage_kind::backward_input: return 'I';
    case stage_kind::backward_weight: return 'W';
  }
  return '?';
}

struct stage {
  stage_kind kind = stage_kind::forward;
  chunk_id chunk;
  microbatch_id microbatch;
  std::uint32_t sub = 0;  // sub-microbatch within the microbatch (0 when the chain is not split)
  rank_id rank;
  duration time{};
  bytes memory_delta{};  // + kept activations after F, - when B (or W) frees them
  bytes output{};        // bytes sent along each outgoing edge to another rank
};

struct stage_edge {
  stage_id from;
  stage_id to;
  bytes size{};  // bytes to transfer when the two stages are on different ranks
};

struct stage_graph_options {
  bool split_backward = false;  // B becomes I then W (zero-bubble schedules)
};

}  // namespace dip
