// dip::chunk_order: which rank holds the c-th chunk of a chain of ranks x K chunks, before any
// rotation. Round robin puts chunk c on rank c mod P (GPipe, 1F1B, Megatron's interleaving);
// the V runs every odd round back, chunk c of round c / P on rank P - 1 - c mod P, so that with
// two chunks per rank rank 0 holds the first and the last chunk (ZB-V, DualPipeV) and a chain
// turns around on rank P - 1 without a message. The classic placements
// (contiguous_placement.hpp) and the modality-aware one (modality_partition.hpp) share it.
#pragma once

#include <cstddef>

namespace dip {

enum class chunk_order { round_robin, v_shape };

// Rank of chunk `c` of a chain on `ranks` ranks, before any offset.
constexpr std::size_t chunk_rank_in_order(std::size_t c, std::size_t ranks, chunk_order order) noexcept {
  const std::size_t round = c / ranks, column = c % ranks;
  return order == chunk_order::v_shape && round % 2 == 1 ? ranks - 1 - column : column;
}

}  // namespace dip
