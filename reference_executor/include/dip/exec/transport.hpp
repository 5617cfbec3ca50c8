// dip::exec::transport_like: how ranks exchange the messages of a plan, with NCCL's P2P rules.
//
// - send(peer, tag, pack) is non-blocking: it returns once the message is handed over.
// - recv(peer, tag, expected) blocks until the *next* message from `peer` arrives and checks
//   that it is the one expected: messages between a (sender, receiver) pair are matched in the
//   order they were posted, as NCCL matches them; a wrong tag or shape is a dip::error naming
//   both ranks. An empty `expected` skips the shape check.
// - group_start()/group_end() bracket consecutive communication calls (one ncclGroupStart/End).
// - abort() wakes every blocked call, which then throws: how one failing rank stops the others.
// The rank a transport object stands for is fixed when it is made (one per rank).
// `Pack` is what a message is: a tensor_pack on the CPU (tensor 0 the bundle's header), the
// compute backend's pack type elsewhere (the CUDA backend's holds device buffers). A transport
// may fill a received pack only at group_end(): the executor reads it after the group.
//
// @code
//   cpu_fabric fabric(2, std::chrono::seconds(10));
//   cpu_transport t0 = fabric.endpoint(0), t1 = fabric.endpoint(1);
//   t0.send(1, 7, {tensor::Ones(2, 3)});
//   tensor_pack got = t1.recv(0, 7, {{2, 3}});
// @endcode
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <utility>

#include "dip/exec/tensor.hpp"

namespace dip::exec {

template <class T, class Pack = tensor_pack>
concept transport_like = requires(T t, int peer, std::uint64_t tag, Pack pack, std::span<const tensor_shape> expected) {
  { t.rank() } -> std::convertible_to<int>;
  t.send(peer, tag, std::move(pack));
  { t.recv(peer, tag, expected) } -> std::same_as<Pack>;
  t.group_start();
  t.group_end();
  t.abort();
};

}  // namespace dip::exec
