// dip::exec::rank_report: one rank's figures after run_rank (its gradients, losses, peaks, time);
// dip::exec::combine_reports: the step's result from every rank's report. Shared by every
// backend's execute, so all reduce gradients and sum losses in the same canonical order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "dip/exec/data.hpp"

namespace dip::exec {

// One rank's figures after run_rank.
struct rank_report {
  gradient_store gradients;
  std::map<std::tuple<std::size_t, std::uint32_t, std::uint32_t>, double> losses;
  std::size_t peak_activation_bytes = 0;
  std::size_t peak_offloaded_bytes = 0;
  double seconds = 0;
};

// The step's result from every rank's report: gradients reduced in the canonical order, losses
// summed in (microbatch, module, unit) order, per-rank figures. Shared by every backend's execute.
inline step_result combine_reports(std::vector<rank_report> reports) {
  gradient_store all;
  std::map<std::tuple<std::size_t, std::uint32_t, std::uint32_t>, double> losses;
  step_result result;
  for (rank_report& r : reports) {
    all.merge(std::move(r.gradients));
    losses.merge(r.losses);
    result.peak_activation_bytes.push_back(r.peak_activation_bytes);
    result.peak_offloaded_bytes.push_back(r.peak_offloaded_bytes);
    result.rank_seconds.push_back(r.seconds);
  }
  result.gradients = all.reduce();
  result.loss = total_loss(losses);
  return result;
}

}  // namespace dip::exec
