// dip memory solver (DIP phase 3): the abstract per-rank problem behind the memory-strategy
// chooser, and its solver. Kept apart from the stage-graph side (strategy_cost.hpp prices the
// candidates, memory_chooser.hpp builds a problem per rank) because it knows nothing of stages:
// points on a line, items over intervals of points, a few (kept bytes, extra time) candidates
// per item, a memory cap.
//
// solve_memory_problem splits a problem into independent components and solves each with a
// repair heuristic, two Lagrangian relaxations (knapsack rows and covers), a decision diagram
// (exact while few items are alive at once; otherwise a restricted run for a solution and a
// relaxed one for a bound) and node-limited branch and bound. See docs/memory-strategies.md for
// the method and the measured gaps.
//
// This header includes all of it; the pieces, under memory_solver/, each compile on their own:
//   problem.hpp           the public types, select_candidates, first_infeasible_point
//   solve.hpp             solve_memory_problem: checks, decomposes, solves, assembles
//   decompose.hpp         binding points, components and their segments        (detail)
//   component.hpp         a component, its result, the proof tolerance          (detail)
//   solve_component.hpp   the methods in order on one component                 (detail)
//   repair.hpp            repair heuristic and upgrades                          (detail)
//   lagrangian.hpp        knapsack-row and cover relaxations, subgradient ascent (detail)
//   decision_diagram.hpp  restricted and relaxed decision diagrams              (detail)
//   exchange.hpp          local search by exchange moves                        (detail)
//   branch_and_bound.hpp  node-limited depth-first branch and bound             (detail)
//   headroom_tree.hpp     range add / range min over segments, for the above    (detail)
#pragma once

#include "dip/schedule/memory_solver/problem.hpp"
#include "dip/schedule/memory_solver/solve.hpp"
