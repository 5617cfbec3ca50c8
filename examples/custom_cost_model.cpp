// Plugging a trainer's own cost model into dip.
//
//   your measurements --> my_cluster_costs (satisfies dip::cost_model_like)
//                              |
//                              v
//            dip::chunk_cost(..), and dip::planner<my_cluster_costs>: the partitioner, the
//            splitter and the stage graph behind every plan ask it, nothing else
//
// The model here is what a team might have after profiling: per-token times for each module,
// an attention term, and kept activation bytes per token. It needs nothing from dip except the
// types in the signature; the static_assert proves it satisfies the concept.
#include <cstdio>
#include <map>
#include <string>
#include <utility>

#include <dip/dip.hpp>

namespace {

class my_cluster_costs {
 public:
  struct per_token {
    double forward_us;        // per token
    double attention_ns;      // per token pair
    double activation_bytes;  // per token
  };

  explicit my_cluster_costs(std::map<std::string, per_token> table) : table_(std::move(table)) {}

  dip::layer_cost cost(const dip::module_spec& module, std::size_t /*layer*/, const dip::work_unit& work) const {
    const auto it = table_.find(module.name);
    if (it == table_.end()) {
      throw dip::error(dip::errc::not_found, "module '" + module.name + "'", "not profiled");
    }
    const per_token& p = it->second;
    const dip::duration forward = dip::microseconds(p.forward_us * work.tokens) +
                                  dip::microseconds(p.attention_ns * 1e-3 * work.token_pairs);
    // Rule of thumb: each backward half (input and weight gradient) costs about one forward.
    return {forward, forward, forward * 0.8, dip::bytes(p.activation_bytes * work.tokens),
            dip::bytes(2.0 * 4096 * work.tokens)};
  }

 private:
  std::map<std::string, per_token> table_;
};

static_assert(dip::cost_model_like<my_cluster_costs>);

}  // namespace

int main() {
  const dip::model_preset preset = dip::find_preset("vlm-s");
  const my_cluster_costs costs(
      {{"vit", {0.12, 0.02, 30000}}, {"projector", {0.05, 0.0, 8000}}, {"llm", {0.15, 0.015, 40000}}});

  // Cost one chunk of eight LLM layers for a packed 8192-token microbatch, and the whole ViT for
  // ten 2704-token images: exactly what the partitioner and the search will ask of it.
  const dip::multimodal_model& model = preset.model;
  const dip::module_spec& llm = model.module(model.at("llm"));
  const dip::module_spec& vit = model.module(model.at("vit"));
  const dip::layer_cost llm_chunk = dip::chunk_cost(costs, llm, 1, 9, dip::work_unit::sequence(8192));
  const dip::layer_cost vit_all =
      dip::chunk_cost(costs, vit, 0, vit.layers.size(), dip::work_unit::sequences_of(10, 2704));

  std::printf("llm layers 1-8, 8192 tokens: forward %s, backward %s, activations %s\n",
              dip::to_string(llm_chunk.forward).c_str(), dip::to_string(llm_chunk.backward()).c_str(),
              dip::to_string(llm_chunk.activation).c_str());
  std::printf("vit (all %zu layers), 10 images: forward %s, backward %s, activations %s\n", vit.layers.size(),
              dip::to_string(vit_all.forward).c_str(), dip::to_string(vit_all.backward()).c_str(),
              dip::to_string(vit_all.activation).c_str());

  // A cost model's answers are input too: dip checks them before planning with them.
  dip::validate(llm_chunk, "llm chunk");

  // A custom cost model is the planner's one template argument; the cluster is the preset's.
  const dip::planner<my_cluster_costs> planner(model, costs, dip::cluster_of(preset),
                                               {.search_ms = 0, .search_rollouts = 32});
  dip::batch_source source = dip::make_batch_source("obelics", model, /*seed=*/1);
  const dip::planned_batch planned = planner.plan(source.next_batch(8));
  std::printf("a DIP plan of 8 OBELICS microbatches on these costs: iteration %s, bubble %.1f%%, %zu stages\n",
              dip::to_string(planned.simulation.makespan).c_str(), 100 * planned.simulation.bubble_ratio,
              planned.plan.graph->size());
  return 0;
}
