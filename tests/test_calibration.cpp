// Calibrating the cost model on the CPU executor: every layer gets a fit, the bytes a forward
// keeps are fitted exactly (they are a closed form of tokens and token pairs), and a plan made
// with the fitted model predicts the executor's peak activation memory and runs bitwise exact.
#include <doctest/doctest.h>

#include <dip/batch/source.hpp>
#include <dip/exec/calibration.hpp>
#include <dip/exec/executor.hpp>
#include <dip/exec/reference.hpp>
#include <dip/model/presets.hpp>
#include <dip/planner/planner.hpp>
#include <dip/sim/simulator.hpp>

TEST_CASE("calibration fits every layer; kept and output bytes exactly") {
  for (const char* name : {"tiny-vlm", "tiny-t2v"}) {
    CAPTURE(name);
    const dip::multimodal_model model = dip::find_preset(name).model;
    const dip::exec::executable_model executable(model);
    dip::exec::calibration_options options;
    options.repeats = 1;
    const dip::exec::calibration fitted = dip::exec::calibrate_cpu(executable, options);
    std::size_t layers = 0;
    for (const dip::module_spec& m : model.modules()) {
      layers += m.layers.size();
      for (std::size_t i = 0; i < m.layers.size(); ++i) CHECK(fitted.costs.has_profile(m.name, i));
    }
    CHECK(fitted.layers.size() == layers);
    for (const dip::exec::layer_calibration& l : fitted.layers) {
      CAPTURE(l.module);
      CAPTURE(l.layer);
      CHECK(l.report.activation.max_relative_residual < 1e-9);
      CHECK(l.report.output.max_relative_residual < 1e-9);
    }
    // A bigger unit costs more time than a smaller one.
    const dip::module_spec& first = model.modules().front();
    const auto small = fitted.costs.cost(first, 1, dip::work_unit::sequences_of(2, 32));
    const auto large = fitted.costs.cost(first, 1, dip::work_unit::sequences_of(8, 128));
    CHECK(large.forward > small.forward);
    CHECK(large.activation > small.activation);
  }
}

TEST_CASE("a plan priced by the calibrated model predicts the executor's peak activations") {
  const dip::multimodal_model model = dip::find_preset("tiny-vlm").model;
  const dip::exec::executable_model executable(model);
  dip::exec::calibration_options options;
  options.repeats = 1;
  const dip::exec::calibration fitted = dip::exec::calibrate_cpu(executable, options);
  // dip-plan's pipeline on the calibrated costs: 1F1B on the balanced partition over 2 ranks,
  // transfers free (the executor's are in-process).
  dip::cluster_spec cluster;
  cluster.pp = 2;
  cluster.link = dip::bandwidth{};
  const dip::planner planner(model, fitted.costs, cluster);
  dip::batch_source source = dip::make_batch_source(
      "obelics", model, 3, {.max_tokens = 256, .max_images = 4, .max_clips = 4, .max_seconds = 16});
  const std::vector<dip::packed_microbatch> packed = source.next_batch(4);
  const dip::planned_batch planned = planner.plan(packed, "1f1b");
  CHECK(planned.placement == "balanced");
  const dip::plan& p = planned.plan;
  const dip::exported_batch batch = dip::exec::executable_batch(planned, packed, model);
  const dip::simulation_result& sim = planned.simulation;
  const dip::exec::step_result run = dip::exec::execute(p, model, batch);
  for (std::size_t r = 0; r < run.peak_activation_bytes.size(); ++r) {
    CAPTURE(r);
    // The simulated peak includes the rank's weights; the executor counts activations alone.
    const double predicted = (sim.ranks[r].peak_memory - planned.weight_memory[r]).base();
    // The executor also holds what is in flight (received inputs, the running stage's tapes),
    // which the model leaves out: the measured peak is at least the predicted one, and close.
    CHECK(double(run.peak_activation_bytes[r]) >= predicted * 0.999);
    CHECK(double(run.peak_activation_bytes[r]) <= predicted * 1.10);
  }
  const dip::exec::step_result reference = dip::exec::run_sequential(model, batch);
  CHECK(run.loss == reference.loss);
}
