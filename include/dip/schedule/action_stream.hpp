// A rank's action list as a coroutine-style iterator, for executors that consume actions one at
// a time (and for symmetry with the baseline generators); `plan::ranks[r]` is the same list
// materialised.
#pragma once

#include <memory>
#include <string>

#include "dip/core/error.hpp"
#include "dip/core/generator.hpp"
#include "dip/core/ids.hpp"
#include "dip/schedule/plan.hpp"

namespace dip {

namespace detail {
inline generator<action> rank_actions_body(std::shared_ptr<const plan> p, std::size_t rank) {
  for (const action& a : p->ranks[rank]) co_yield a;
}
}  // namespace detail

// Rank `rank`'s actions in order. The generator shares ownership of the plan, so it stays valid
// however the caller's pointer is reset. Throws dip::error at the call for a bad rank.
inline generator<action> rank_actions(std::shared_ptr<const plan> p, rank_id rank) {
  require(p != nullptr, errc::invalid_argument, "rank_actions", "no plan");
  require(rank.valid() && rank.index() < p->ranks.size(), errc::invalid_argument, "rank_actions",
          "rank " + (rank.valid() ? std::to_string(rank.value()) : std::string("invalid")) +
              " is not one of the plan's " + std::to_string(p->ranks.size()));
  return detail::rank_actions_body(std::move(p), rank.index());
}

}  // namespace dip
