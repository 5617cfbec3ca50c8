// The executor's CUDA backend against the exact CPU backend (ctest executor_cuda, label gpu):
// - kernels: RMSNorm, SiLU and bf16 GEMMs (all transpose cases) against double on the host;
// - every executable layer: forward, input and context gradients, weight gradients;
// - whole plans in single-GPU mode: tiny-vlm and tiny-t2v with 1F1B (merged sub-microbatches)
//   and DIP (keep/recompute/offload mixed), gradients within gradient_tolerance of the CPU
//   executor's; and, with NCCL and a GPU per rank, the same plans in nccl mode.
// Exit codes: 0 pass, 1 a check failed, 77 no usable GPU (ctest: skipped).
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <dip/batch/source.hpp>
#include <dip/cost/analytic.hpp>
#include <dip/exec/executor.hpp>
#include <dip/exec/layers.hpp>
#include <dip/model/presets.hpp>
#include <dip/partition/contiguous_placement.hpp>
#include <dip/partition/modality_partition.hpp>
#include <dip/planner/dip_planner.hpp>
#include <dip/schedule/baselines.hpp>
#include <dip/schedule/build_stage_graph.hpp>

#include "cuda_compute.hpp"
#include "cuda_executor.hpp"
#include "kernels.cuh"

namespace {

namespace cu = dip::exec::cuda;
using dip::exec::tensor;

int failures = 0;

double relative(const tensor& got, const tensor& want) {
  if (got.rows() != want.rows() || got.cols() != want.cols()) return INFINITY;
  const double norm = want.norm();
  return (got - want).norm() / (norm > 0 ? norm : 1.0);
}

void expect_close(const std::string& what, const tensor& got, const tensor& want, double tolerance) {
  const double r = relative(got, want);
  if (!(r <= tolerance)) {
    std::fprintf(stderr, "FAIL %s: relative difference %.3g > %.3g (shapes %s, %s)\n", what.c_str(), r, tolerance,
                 dip::exec::to_string(dip::exec::shape_of(got)).c_str(),
                 dip::exec::to_string(dip::exec::shape_of(want)).c_str());
    ++failures;
  }
}

void test_kernels(const cu::device_context& ctx) {
  const cudaStream_t s = ctx.compute();
  const tensor x = dip::exec::random_tensor(7, 33, 1.0, 1);
  const tensor gain = dip::exec::random_tensor(1, 33, 1.0, 2);
  tensor inverse;
  const tensor want = dip::exec::detail::rms_norm(x, gain, inverse);
  cu::device_tensor dinv;
  expect_close("rms_norm", cu::download(cu::rms_norm(ctx, cu::upload(x, s), cu::upload(gain, s), dinv), s), want, 1e-5);
  expect_close("rms_norm inverse", cu::download(dinv, s), inverse, 1e-5);
  expect_close("silu", cu::download(cu::silu(ctx, cu::upload(x, s)), s), dip::exec::detail::silu(x), 1e-5);
  // bf16 inputs (8 significant bits), fp32 accumulation: ~3e-3 relative on random data.
  const tensor a = dip::exec::random_tensor(37, 53, 1.0, 3), b = dip::exec::random_tensor(53, 29, 1.0, 4);
  const tensor at = a.transpose(), bt = b.transpose();
  const tensor product = a * b;
  expect_close("gemm nn", cu::download(cu::matmul(ctx, cu::upload(a, s), false, cu::upload(b, s), false), s), product,
               1e-2);
  expect_close("gemm tn", cu::download(cu::matmul(ctx, cu::upload(at, s), true, cu::upload(b, s), false), s), product,
               1e-2);
  expect_close("gemm nt", cu::download(cu::matmul(ctx, cu::upload(a, s), false, cu::upload(bt, s), true), s), product,
               1e-2);
  expect_close("gemm tt", cu::download(cu::matmul(ctx, cu::upload(at, s), true, cu::upload(bt, s), true), s), product,
               1e-2);
}

// One layer of a one-module model: forward, backward and weight gradients on both backends.
void test_layer(const cu::device_context& ctx, const std::string& name, std::vector<dip::layer_spec> layers,
                std::size_t index, bool with_context) {
  // With a context: a producer module "source" (output width 6) feeds "m".
  dip::model_builder builder("layer-test");
  dip::module_spec source;
  source.name = "source";
  source.layers = {dip::linear_layer{3, 6}};
  dip::module_spec m;
  m.name = "m";
  m.layers = std::move(layers);
  if (with_context) builder.add(source).connect("source", "m");
  builder.add(m);
  const dip::exec::executable_model exec(builder.build());
  const std::size_t mi = with_context ? 1 : 0;
  const dip::exec::layer& l = exec.at(mi, index);
  const cudaStream_t s = ctx.compute();
  const dip::exec::sequence_lengths lengths{3, 2};
  const tensor x = dip::exec::random_tensor(5, l.input_width(), 1.0, 11);
  const tensor c = with_context ? dip::exec::random_tensor(5, exec.context_width(mi), 1.0, 12) : tensor();
  const tensor dy = dip::exec::random_tensor(5, l.output_width(), 1.0, 13);
  dip::exec::layer_tape tape;
  const tensor y = l.forward(x, c, lengths, tape);
  tensor dc = tensor::Zero(c.rows(), c.cols());
  std::vector<dip::exec::weight_job> jobs;
  const tensor dx = l.backward_input(tape, c, dy, dc, jobs);
  const std::vector<tensor> dw = dip::exec::backward_weight(l, jobs);

  const dip::exported_batch no_batch;
  cu::cuda_compute compute(exec, no_batch, ctx);
  cu::gpu_tape gtape;
  const cu::device_tensor gc = cu::upload(c, s);
  const tensor gy = cu::download(compute.layer_forward(mi, index, cu::upload(x, s), gc, lengths, gtape), s);
  cu::device_tensor gdc = cu::zeros(c.rows(), c.cols(), s);
  std::vector<cu::gpu_job> gjobs;
  const tensor gdx = cu::download(compute.layer_backward(mi, index, gtape, gc, cu::upload(dy, s), gdc, gjobs), s);
  const std::vector<tensor> gdw = compute.weight_gradients(mi, index, gjobs);
  expect_close(name + " forward", gy, y, 2e-2);
  expect_close(name + " input gradient", gdx, dx, 2e-2);
  if (with_context) expect_close(name + " context gradient", cu::download(gdc, s), dc, 2e-2);
  for (std::size_t p = 0; p < dw.size(); ++p) expect_close(name + " " + l.parameters()[p].name, gdw.at(p), dw[p], 2e-2);
}

void compare_runs(const std::string& what, const dip::exec::step_result& got, const dip::exec::step_result& want) {
  if (!(std::abs(got.loss - want.loss) <= cu::gradient_tolerance * std::abs(want.loss))) {
    std::fprintf(stderr, "FAIL %s: loss %.8f, cpu %.8f\n", what.c_str(), got.loss, want.loss);
    ++failures;
  }
  if (got.gradients.size() != want.gradients.size()) {
    std::fprintf(stderr, "FAIL %s: %zu gradient entries, cpu %zu\n", what.c_str(), got.gradients.size(),
                 want.gradients.size());
    ++failures;
    return;
  }
  for (const auto& [key, grads] : want.gradients) {
    for (std::size_t p = 0; p < grads.size(); ++p) {
      expect_close(what + " module " + std::to_string(key.first) + " layer " + std::to_string(key.second) +
                       " parameter " + std::to_string(p),
                   got.gradients.at(key).at(p), grads[p], cu::gradient_tolerance);
    }
  }
  std::printf("%s: ranks' GPU time", what.c_str());
  for (double t : got.rank_seconds) std::printf(" %.2f ms", t * 1e3);
  std::printf("\n");
}

// Packed tiny-vlm and tiny-t2v batches planned with 1F1B and DIP (every memory strategy), on the
// GPU and on the CPU backend.
void test_plans(cu::cuda_mode mode, const char* mode_name) {
  for (const std::string name : {"tiny-vlm", "tiny-t2v"}) {
    const dip::model_preset preset = dip::find_preset(name);
    const auto planner = dip::make_planner(preset, {.tune_segments = false, .search_ms = 0, .search_rollouts = 8});
    dip::batch_source source = dip::make_batch_source(name == "tiny-t2v" ? "video" : "obelics", preset.model, 1,
                                                      {.max_tokens = 128, .max_images = 3, .max_clips = 3});
    const std::vector<dip::packed_microbatch> packed = source.next_batch(6);
    cu::cuda_execute_options options;
    options.mode = mode;
    for (const std::string schedule : {"1f1b", "dip"}) {
      dip::planned_batch planned = planner.plan(packed, schedule);
      const dip::exported_batch batch = dip::exec::executable_batch(planned, packed, preset.model);
      int next = 0;
      for (auto& list : planned.plan.ranks) {
        for (dip::action& a : list) {
          if (a.kind == dip::action_kind::compute && planned.plan.graph->at(a.stage).kind == dip::stage_kind::forward) {
            a.strategy = dip::memory_strategy(next++ % 3);
          }
        }
      }
      const auto plan = std::make_shared<const dip::plan>(planned.plan);
      compare_runs(name + " " + schedule + " " + mode_name, cu::execute_cuda(plan, preset.model, batch, options),
                   dip::exec::execute(plan, preset.model, batch));
    }
  }
}

}  // namespace

int main() {
  const int devices = cu::device_count();
  if (devices == 0) {
    std::printf("executor_cuda: skipped, no CUDA device\n");
    return 77;
  }
  try {
    {
      const cu::device_context ctx(0);
      test_kernels(ctx);
      test_layer(ctx, "transformer", {dip::transformer_block{8, 12, 2, 2, true}}, 0, false);
      test_layer(ctx, "transformer (no gate)", {dip::transformer_block{8, 12, 2, 2, false}}, 0, false);
      test_layer(ctx, "dit", {dip::linear_layer{4, 8}, dip::dit_block{8, 12, 2, 2, false}}, 1, true);
      test_layer(ctx, "linear", {dip::linear_layer{7, 5}}, 0, false);
      test_layer(ctx, "embedding", {dip::embedding{9, 6}}, 0, false);
      test_layer(ctx, "projector", {dip::projector{10, 7, 6}}, 0, false);
      test_layer(ctx, "lm_head", {dip::linear_layer{4, 6}, dip::lm_head{11, 6}}, 1, false);
    }
    test_plans(cu::cuda_mode::single_gpu, "single-gpu");
    if (cu::have_nccl() && devices >= 4) {
      test_plans(cu::cuda_mode::nccl, "nccl");
    } else {
      std::printf("executor_cuda: nccl mode not tested (%s, %d GPUs; it needs 4)\n",
                  cu::have_nccl() ? "NCCL built in" : "no NCCL", devices);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAIL: %s\n", e.what());
    return 1;
  }
  if (failures > 0) {
    std::fprintf(stderr, "executor_cuda: %d checks failed\n", failures);
    return 1;
  }
  std::printf("executor_cuda: all checks passed\n");
  return 0;
}
