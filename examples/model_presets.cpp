// Prints every model preset with its parameter count and what each kind of layer costs under
// the analytic roofline model on the preset's GPU and tensor-parallel degree.
//
//   preset (TP, PP, GPU) --> modules --> layer kinds --> forward / backward-I / backward-W /
//                                                        kept activations, per GPU
//
// The work priced is one uniform microbatch (dip/batch/uniform.hpp): 10 images of 728 px
// (2704 patch tokens each for the encoder, 169 each after the 4x4 merge) with 8192 packed tokens
// for the LLM; for text-to-video, 8 captions of 64 tokens and one 16 s clip (16384 latent tokens).
#include <cstdio>
#include <set>
#include <string>

#include <dip/batch/uniform.hpp>
#include <dip/dip.hpp>

int main() {
  for (const std::string& name : dip::preset_names()) {
    const dip::model_preset preset = dip::find_preset(name);
    const dip::analytic_cost_model costs(dip::find_gpu(preset.gpu), preset.parallel.tp);
    std::printf("%s: %s, %.2fB parameters, TP %d, PP %d, %s\n", preset.name.c_str(), preset.description.c_str(),
                double(preset.model.parameter_count()) / 1e9, preset.parallel.tp, preset.parallel.pp,
                preset.gpu.c_str());
    for (const dip::module_spec& m : preset.model.modules()) {
      const dip::work_unit work = dip::uniform_module_work(preset.model, m);
      std::printf("  %-9s %-9s %-5s %3zu layers  %7.3fB params  work: %.0f tokens in %.0f sequences\n", m.name.c_str(),
                  std::string(dip::to_string(m.role)).c_str(), m.modality.name().c_str(), m.layers.size(),
                  double(dip::parameter_count(m)) / 1e9, work.tokens, work.sequences);
      std::set<std::string> shown;
      for (std::size_t i = 0; i < m.layers.size(); ++i) {
        const std::string kind = dip::kind_name(m.layers[i]);
        if (!shown.insert(kind).second) continue;
        const dip::layer_cost c = costs.cost(m, i, work);
        std::printf("    %-12s %9.1fM params  fwd %8.3f ms  bwd-I %8.3f ms  bwd-W %8.3f ms  "
                    "act %9.1f MiB\n",
                    kind.c_str(), double(dip::parameter_count(m.layers[i])) / 1e6, dip::to_milliseconds(c.forward),
                    dip::to_milliseconds(c.backward_input), dip::to_milliseconds(c.backward_weight),
                    c.activation.base() / (1 << 20));
      }
    }
  }
  return 0;
}
