// dip: dynamic interleaved pipeline planning for multimodal model training.
//
// The umbrella header: everything in include/dip/ that needs only a C++20 compiler and the
// header-only dependencies (Boost.Graph, Eigen, nlohmann-json). CUDA/NCCL code lives in
// reference_executor/ and is never reached from here. Each header below also compiles on its
// own, so a trainer may include just what it uses.
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

namespace dip {
inline constexpr int version_major = 0;
inline constexpr int version_minor = 1;
inline constexpr int version_patch = 0;
inline constexpr const char* version_string = "0.1.0";
}  // namespace dip
