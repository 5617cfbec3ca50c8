// The analytic roofline cost model: FLOPs against hand-worked formulas, and the shape of its
// time curves (compute-bound when big, memory/launch-bound when small, tensor parallelism).
#include <doctest/doctest.h>

#include <dip/cost/analytic.hpp>
#include <dip/cost/layer_ops.hpp>
#include <dip/model/presets.hpp>

namespace {
const dip::transformer_block llama3_block{4096, 14336, 32, 8, true};
}

TEST_CASE("FLOPs of a Llama3-8B layer equal the formula worked by hand") {
  // One 4096-token sequence, h = 4096, f = 14336, 8 KV groups of d = 128:
  //   QKV     2 n h (h + 2 g d) = 2 * 4096 * 4096 * 6144      =   206,158,430,208
  //   scores  4 n^2 h           = 4 * 4096^3                  =   274,877,906,944
  //   output  2 n h^2           = 2 * 4096^3                  =   137,438,953,472
  //   SwiGLU  6 n h f           = 6 * 4096 * 4096 * 14336     = 1,443,109,011,456
  //   total                                                   = 2,061,584,302,080
  const dip::layer_flops f = dip::flops_of(llama3_block, dip::work_unit::sequence(4096));
  CHECK(f.forward == 2'061'584'302'080.0);
  // Backward: matmuls twice (input and weight gradient), attention twice, all of it input.
  CHECK(f.backward_input == 2'061'584'302'080.0 - 274'877'906'944.0 + 2 * 274'877'906'944.0);
  CHECK(f.backward_weight == 2'061'584'302'080.0 - 274'877'906'944.0);
  CHECK(f.total() == doctest::Approx(3 * f.forward));
}

TEST_CASE("a plain block is 24 n h^2 + 4 n^2 h FLOPs, attention summed per sequence") {
  const double h = 1024, n = 2048;
  const dip::transformer_block plain{1024, 4096, 16, 16, false};
  CHECK(dip::flops_of(plain, dip::work_unit::sequence(n)).forward == 24 * n * h * h + 4 * n * n * h);
  // Four sequences of 512 tokens: same linear work, a quarter of the attention.
  const auto packed = dip::work_unit::sequences_of(4, 512);
  CHECK(dip::flops_of(plain, packed).forward == 24 * n * h * h + 4 * (4 * 512.0 * 512.0) * h);
  // Composition by addition equals the closed form.
  dip::work_unit sum;
  for (int i = 0; i < 4; ++i) sum += dip::work_unit::sequence(512);
  CHECK(sum == packed);
}

TEST_CASE("kept activations follow Korthikanti et al.: 32 n h (+ FP32 log-sum-exp) for a plain block") {
  const dip::transformer_block plain{1024, 4096, 16, 16, false};
  const double n = 2048, h = 1024;
  CHECK(dip::activation_bytes_of(plain, dip::work_unit::sequence(n)) == 32 * n * h + 4 * n * 16);
}

TEST_CASE("DiT cross-attention grows with the conditioning length") {
  const dip::dit_block block{3584, 10240, 28, 28, false};
  const auto bare = dip::flops_of(block, dip::work_unit::conditioned_sequence(4096, 0)).forward;
  const auto with_text = dip::flops_of(block, dip::work_unit::conditioned_sequence(4096, 100)).forward;
  // 100 conditioning tokens: K/V projection 2 * 100 * h * 2h and scores 4 * 4096 * 100 * h.
  const double h = 3584;
  CHECK(with_text - bare == doctest::Approx(2 * 100 * h * 2 * h + 4 * 4096.0 * 100 * h));
}

TEST_CASE("roofline: compute-bound at large sizes, efficiency rises with the sub-microbatch") {
  const dip::module_spec llm = dip::presets::llama3_8b();
  const dip::analytic_cost_model model(dip::h800(), 1);
  const double peak = dip::h800().peak_bf16.base();
  // At 16k tokens the time is the FLOPs at the calibrated efficiencies, within launch overheads.
  const auto work = dip::work_unit::sequences_of(4, 4096);
  const dip::layer_cost c = model.cost(llm, 1, work);
  const dip::layer_flops f = dip::flops_of(llm.layers[1], work);
  const double attention = 4 * (4 * 4096.0 * 4096.0) * 4096;
  const double expected_fwd = (f.forward - attention) / (peak * 0.75) + attention / (peak * 0.55);
  CHECK(dip::to_seconds(c.forward) == doctest::Approx(expected_fwd).epsilon(0.05));
  // Throughput per token never falls as the work grows (memory-, then compute-bound).
  double previous = 0;
  for (double tokens = 1; tokens <= 65536; tokens *= 2) {
    const double per_second = tokens /
                              dip::to_seconds(model.cost(llm, 1, dip::work_unit::sequences_of(tokens, 1)).forward);
    CHECK(per_second >= previous * 0.999);
    previous = per_second;
  }
  // One token is memory-bound: reading the weights dominates.
  const dip::layer_cost tiny = model.cost(llm, 1, dip::work_unit::sequence(1));
  const double weight_bytes = 2.0 * double(dip::parameter_count(llm.layers[1]));
  CHECK(dip::to_seconds(tiny.forward) >= weight_bytes / (dip::h800().hbm.base() * 0.8));
  CHECK(model.cost(llm, 1, dip::work_unit{}) == dip::layer_cost{});
}

TEST_CASE("tensor parallelism divides the work and adds its collectives") {
  const dip::module_spec llm = dip::presets::llama3_8b();
  const auto work = dip::work_unit::sequence(8192);
  const dip::analytic_cost_model one(dip::h800(), 1), four(dip::h800(), 4);
  const dip::layer_cost c1 = one.cost(llm, 1, work), c4 = four.cost(llm, 1, work);
  const dip::duration collectives = four.tensor_parallel_time(llm.layers[1], work);
  CHECK(one.tensor_parallel_time(llm.layers[1], work) == dip::duration{});
  // Two ring all-reduces of 8192 x 4096 BF16 values: 2 * (2 * 3/4 * 64 MiB) / (200 GB/s * 0.8) + 2 * 10 us.
  const double tensor = 8192.0 * 4096 * 2;
  CHECK(dip::to_seconds(collectives) == doctest::Approx(2 * (1.5 * tensor / 160e9 + 10e-6)));
  CHECK(dip::to_seconds(c4.forward - collectives) < dip::to_seconds(c1.forward) / 3.5);
  CHECK(c4.backward_weight < c1.backward_weight / 3.5);  // no collective in the weight gradient
  CHECK(c4.activation.base() == doctest::Approx(c1.activation.base() / 4));
  CHECK(c4.output.base() == doctest::Approx(8192.0 * 4096 * 2 / 4));
}

TEST_CASE("bad requests are errors") {
  const dip::module_spec llm = dip::presets::llama3_8b();
  const dip::analytic_cost_model model(dip::h800(), 1);
  CHECK_THROWS_WITH_AS(model.cost(llm, 99, dip::work_unit::sequence(8)), doctest::Contains("layer 99 does not exist"),
                       dip::error);
  dip::module_spec opaque{
      "measured", dip::module_role::other, dip::modality::text(), {dip::opaque_layer{"x", 0, 0}}, {}, {}, {}};
  CHECK_THROWS_WITH_AS(model.cost(opaque, 0, dip::work_unit::sequence(8)), doctest::Contains("fixed cost table"),
                       dip::error);
  CHECK_THROWS_AS(dip::analytic_cost_model(dip::h800(), 0), dip::error);
  CHECK_THROWS_AS(dip::analytic_cost_model(dip::h800(), 1, {.matmul = 1.5}), dip::error);
  CHECK_THROWS_AS(dip::chunk_cost(model, llm, 3, 3, dip::work_unit::sequence(8)), dip::error);
  CHECK_THROWS_AS(dip::chunk_cost(model, llm, 0, 35, dip::work_unit::sequence(8)), dip::error);
}

TEST_CASE("chunk cost sums its layers and hands on the last layer's output") {
  const dip::module_spec llm = dip::presets::llama3_8b();
  const dip::analytic_cost_model model(dip::h800(), 2);
  const auto work = dip::work_unit::sequence(1024);
  const dip::layer_cost chunk = dip::chunk_cost(model, llm, 0, 5, work);
  dip::duration forward{};
  dip::bytes activation{};
  for (std::size_t i = 0; i < 5; ++i) {
    forward += model.cost(llm, i, work).forward;
    activation += model.cost(llm, i, work).activation;
  }
  CHECK(dip::to_seconds(chunk.forward) == doctest::Approx(dip::to_seconds(forward)));
  CHECK(chunk.activation.base() == doctest::Approx(activation.base()));
  CHECK(chunk.output == model.cost(llm, 4, work).output);
}
