// dip::exec::compute_backend_like: what the executor's shared stage runner (stage_runner.hpp) and
// walk (walk.hpp) need from one rank's compute backend. Those two are written once; the arithmetic
// comes from a backend: cpu_compute (cpu_compute.hpp: Eigen, double, bit-exact) or the CUDA
// backend in reference_executor/cuda/ (cuBLAS bf16 GEMMs, device tensors). A backend's messages
// are its own pack type, carried by a transport_like<Transport, pack_type> (transport.hpp).
// A backend is made for one executable batch: it knows each unit's items (exec/data.hpp).
//
// @code
//   static_assert(dip::exec::compute_backend_like<dip::exec::cpu_compute>);
//   template <dip::exec::compute_backend_like Compute> class stage_runner;
// @endcode
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dip/exec/bundle.hpp"
#include "dip/exec/data.hpp"
#include "dip/exec/layers.hpp"
#include "dip/exec/tensor.hpp"
#include "dip/exec/unit_pass.hpp"

namespace dip::exec {

// A sink unit's loss and the gradient of its output, for any backend's tensor.
template <class T>
struct basic_unit_loss {
  double value = 0;
  T gradient;
};

// What the shared walk needs from one rank's compute backend. T = tensor_type: an immutable
// value (copies may share storage; the runner never writes into a tensor it did not make).
// Tapes and weight jobs report their bytes() for the activation-memory figures. Row operations
// (gather, place, scatter_add, reshape) move rows between items (exec/data.hpp).
template <class C>
concept compute_backend_like = requires(C c, const C& cc, std::size_t n, unit_key key,
                                        basic_unit_state<typename C::tensor_type>& state,
                                        const typename C::tensor_type& t, typename C::tensor_type value,
                                        typename C::tensor_type& out, const unit_info& info,
                                        const std::vector<row_range>& ranges, std::vector<typename C::tape_type>* tapes,
                                        std::vector<std::vector<typename C::job_type>>& layer_jobs,
                                        const std::vector<typename C::job_type>& jobs, typename C::tape_type& tape,
                                        const basic_payload<typename C::tensor_type>& p, typename C::pack_type message,
                                        const std::string& where) {
  { c.synthetic(n, key) } -> std::same_as<typename C::tensor_type>;
  { c.zeros(std::int64_t(), std::int64_t()) } -> std::same_as<typename C::tensor_type>;
  { c.gather(t, ranges) } -> std::same_as<typename C::tensor_type>;
  { c.place(value, ranges, t) } -> std::same_as<typename C::tensor_type>;
  { c.scatter_add(value, ranges, t) } -> std::same_as<typename C::tensor_type>;
  { c.reshape(t, std::int64_t()) } -> std::same_as<typename C::tensor_type>;
  c.forward_layers(n, key, n, n, state, info, tapes);
  {
    c.backward_layers(n, key, n, n, *tapes, t, value, out, out, info, layer_jobs)
    } -> std::same_as<typename C::tensor_type>;
  { c.loss(n, key, t) } -> std::same_as<basic_unit_loss<typename C::tensor_type>>;
  { c.weight_gradients(n, n, jobs) } -> std::same_as<std::vector<tensor>>;
  c.offload(tape);
  c.restore(tape);
  { c.pack(p) } -> std::same_as<typename C::pack_type>;
  { c.unpack(std::move(message), where) } -> std::same_as<basic_payload<typename C::tensor_type>>;
  c.finish();
  { byte_size(t) } -> std::convertible_to<std::size_t>;
  { cc.tape_bytes(tape) } -> std::convertible_to<std::size_t>;
  { cc.shape(t) } -> std::same_as<tensor_shape>;
};

}  // namespace dip::exec
