// dip::work_unit: how much work one stage does, as a cost model needs to see it.
//
// A layer's cost depends on more than a token count: self-attention grows with the square of
// each sequence's length (ten 169-token images cost less attention than one 1690-token
// sequence), and a diffusion block cross-attends to its text conditioning. A work_unit keeps
// the sums that the cost formulas need, so packed sequences of different lengths compose by
// addition.
#pragma once

#include <cmath>

#include "dip/core/error.hpp"

namespace dip {

struct work_unit {
  double sequences = 0;       // independent sequences (images, clips, packed text sequences)
  double tokens = 0;          // tokens over all sequences, as this module sees them
  double token_pairs = 0;     // sum over sequences of length^2 (self-attention's quadratic term)
  double context_tokens = 0;  // conditioning tokens attended to (cross-attention keys/values)
  double context_pairs = 0;   // sum over sequences of length * its context length

  // One sequence of `length` tokens.
  static work_unit sequence(double length) noexcept { return {1.0, length, length * length, 0.0, 0.0}; }
  // `count` sequences of `length` tokens each.
  static work_unit sequences_of(double count, double length) noexcept {
    return {count, count * length, count * length * length, 0.0, 0.0};
  }
  // One sequence of `length` tokens that cross-attends to `context` conditioning tokens.
  static work_unit conditioned_sequence(double length, double context) noexcept {
    return {1.0, length, length * length, context, length * context};
  }

  bool empty() const noexcept { return tokens <= 0.0; }

  work_unit& operator+=(const work_unit& other) noexcept {
    sequences += other.sequences;
    tokens += other.tokens;
    token_pairs += other.token_pairs;
    context_tokens += other.context_tokens;
    context_pairs += other.context_pairs;
    return *this;
  }
  friend work_unit operator+(work_unit a, const work_unit& b) noexcept { return a += b; }
  friend bool operator==(const work_unit&, const work_unit&) = default;
};

// Throws dip::error naming `where` if any field is negative, NaN or infinite.
inline void validate(const work_unit& work, std::string_view where) {
  const double fields[] = {work.sequences, work.tokens, work.token_pairs, work.context_tokens, work.context_pairs};
  static constexpr const char* names[] = {"sequences", "tokens", "token_pairs", "context_tokens", "context_pairs"};
  for (int i = 0; i < 5; ++i) {
    if (!std::isfinite(fields[i]) || fields[i] < 0.0) {
      throw error(errc::invalid_argument, std::string(where),
                  std::string("work_unit.") + names[i] + " must be finite and >= 0, got " + std::to_string(fields[i]));
    }
  }
}

}  // namespace dip
