// dip: dynamic interleaved pipeline planning for multimodal model training.
//
// The umbrella header: the foundation every use of dip needs (core, model, cost models, model
// files, the version) and the planner facade with the batch sources, so that one include plans a
// batch (dip::planner, dip/planner/planner.hpp). The algorithms behind it are opt-in, one header per algorithm, each
// compiling on its own: dip/batch/ (traces, sources, splitting), dip/partition/ (placements), dip/schedule/ (stage
// graph, baselines, the DIP planner, the asynchronous planner), dip/sim/ (the simulator), dip/io/ (plan exports, Chrome
// traces); docs/concepts.md says which header holds what. CUDA/NCCL code lives in reference_executor/ and is never
// reached from here.
#pragma once

// core: errors, units, ids, coroutine generator
#include "dip/core/error.hpp"
#include "dip/core/generator.hpp"
#include "dip/core/ids.hpp"
#include "dip/core/units.hpp"

// model: modules, layers, the module DAG, hardware and model presets
#include "dip/model/hardware.hpp"
#include "dip/model/layer.hpp"
#include "dip/model/modality.hpp"
#include "dip/model/model.hpp"
#include "dip/model/module.hpp"
#include "dip/model/presets.hpp"

// cost: the cost-model concept and the three models that satisfy it
#include "dip/cost/analytic.hpp"
#include "dip/cost/cost_model.hpp"
#include "dip/cost/fixed_table.hpp"
#include "dip/cost/layer_ops.hpp"
#include "dip/cost/least_squares.hpp"
#include "dip/cost/profiled.hpp"
#include "dip/cost/work.hpp"

// io: model files
#include "dip/io/model_json.hpp"

// planning a batch: batch sources (traces, synthetic data) and the planner facade
#include "dip/batch/source.hpp"
#include "dip/planner/planner.hpp"

// DIP_VERSION_STRING, dip::version()
#include "dip/version.hpp"
