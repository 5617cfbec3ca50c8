"""dip's pipeline runtime on torch.distributed: one process per pipeline rank walks its actions.

`PipelineRank(rank, model, ...)` holds the layers of the rank's chunks (every module's spans of
the placement) and runs one executable plan per training step with `step(plan, index)`:
- compute F: the chunk's spans in chain order on the stage's sub-microbatch. Inputs arrive as
  messages (or from this rank's previous chunk); each is a leaf that requires grad, so the
  chunk's autograd graph starts at its inputs. A module's first span asks the model for its
  input (`PipelineModel.begin`), with its producers' outputs: from the chain's own earlier
  modules, or gathered, item by item, from the producer chain's sub-microbatches.
- memory strategy of a forward: keep (the graph stays), recompute (the forward runs without a
  graph, keeping only its inputs; the backward reruns it first), offload (saved tensors move to
  host memory and come back in the backward). An `ActivationMeter` counts the bytes kept per
  rank (saved tensors and stage inputs; weights excluded) and their peak.
- compute B: gradients of the inputs (sent back) and of the weights. Split backward, as zero
  bubble does: I computes the input gradients and, on the way, the gradient at the output of
  every module that owns weights (a Linear, a norm, an embedding: forward hooks note those
  outputs); W then runs only each such module's own backward to its weights, so I + W cost what
  B costs. Weights of a module whose output is not one tensor fall back to a backward from the
  chunk's outputs in W. Weight gradients are kept per
  (microbatch, sub-microbatch) and summed in that order at the end of the step, so a plan gives
  the same bits whatever order its schedule ran the stages in.
- send: non-blocking (`isend`, tag = edge id), waited for at the end of the step. recv: posted
  where the plan places it, waited for by the compute that needs it, with a timeout.
A message is one flat buffer holding the edge's tensors (rows and features from the plan);
the receiver splits it. Every message's shapes are checked against the plan on both sides.

Faults: any exception in an action becomes a `RankFailure` naming the rank, the action's index
and its label ("rank 1 action 7 (F3.1@c2): ..."); a receive that waits past `timeout_s` is one.
The launcher (launch.py) ends the other ranks. NCCL pairs sends and receives by order, not by
tag, so on NCCL each receive from a peer is posted in the order that peer sends (receives the
plan places earlier wait for it).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Callable

import torch
import torch.distributed as dist

from .model import MicrobatchData, PipelineModel
from .plan import ExecutablePlan, PlanError, TensorSpec


def weight_owning_modules(layer: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules of `layer` that own trainable weights themselves: where W's backward starts."""
    return [m for m in layer.modules() if any(p is not None and p.requires_grad for p in m._parameters.values())]


class RankFailure(RuntimeError):
    """An action of a rank failed; the message names the rank and the action."""

    def __init__(self, rank: int, action_index: int, label: str, cause: BaseException | str):
        self.rank, self.action_index, self.label = rank, action_index, label
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"rank {rank} action {action_index} ({label}): {detail}")


# --- activation memory --------------------------------------------------------------------------

class ActivationMeter:
    """Bytes of activations a rank keeps for its backward: on the device, and offloaded to host.
    A tensor is counted once per storage however many ops save it; weights are not counted."""

    def __init__(self):
        self.weight_storages: set[int] = set()
        self._device: dict[int, list[int]] = {}  # storage pointer -> [bytes, holders]
        self.device_bytes = 0
        self.host_bytes = 0
        self.peak_device_bytes = 0
        self.peak_host_bytes = 0

    def reset_peaks(self) -> None:
        self.peak_device_bytes = self.device_bytes
        self.peak_host_bytes = self.host_bytes

    def _take(self, tensor: torch.Tensor) -> int | None:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer in self.weight_storages or storage.nbytes() == 0:
            return None
        entry = self._device.setdefault(pointer, [storage.nbytes(), 0])
        if entry[1] == 0:
            self.device_bytes += entry[0]
            self.peak_device_bytes = max(self.peak_device_bytes, self.device_bytes)
        entry[1] += 1
        return pointer

    def _release(self, pointer: int | None) -> None:
        if pointer is None:
            return
        entry = self._device[pointer]
        entry[1] -= 1
        if entry[1] == 0:
            self.device_bytes -= entry[0]
            del self._device[pointer]

    def hold(self, tensor: torch.Tensor) -> "_Held":
        return _Held(self, tensor)

    def offload(self, tensor: torch.Tensor) -> "_Offloaded":
        return _Offloaded(self, tensor)


class _Held:
    """A tensor kept on the device for the backward."""

    def __init__(self, meter: ActivationMeter, tensor: torch.Tensor):
        # Detached: an op that saves its own output would otherwise hold, through this handle,
        # the tensor whose grad_fn holds the handle, a cycle that only the garbage collector
        # frees (the graphs a split backward keeps alive past I would pile up until it runs).
        self.meter, self.tensor = meter, tensor.detach()
        self.pointer = meter._take(tensor)

    def __del__(self):
        self.meter._release(self.pointer)


class _Offloaded:
    """A tensor copied to host memory until the backward needs it."""

    def __init__(self, meter: ActivationMeter, tensor: torch.Tensor):
        self.meter, self.device = meter, tensor.device
        storage_pointer = tensor.untyped_storage().data_ptr()
        if storage_pointer in meter.weight_storages:
            self.tensor, self.bytes = tensor, 0  # a weight stays where it is
            return
        pin = tensor.device.type == "cuda"
        self.tensor = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=pin)
        self.tensor.copy_(tensor, non_blocking=pin)
        self.bytes = self.tensor.numel() * self.tensor.element_size()
        meter.host_bytes += self.bytes
        meter.peak_host_bytes = max(meter.peak_host_bytes, meter.host_bytes)

    def restore(self) -> torch.Tensor:
        return self.tensor.to(self.device, non_blocking=True) if self.device.type != "cpu" else self.tensor

    def __del__(self):
        self.meter.host_bytes -= self.bytes


def _saved_tensor_hooks(meter: ActivationMeter, strategy: str):
    if strategy == "offload":
        return torch.autograd.graph.saved_tensors_hooks(meter.offload, lambda held: held.restore())
    return torch.autograd.graph.saved_tensors_hooks(meter.hold, lambda held: held.tensor)


# --- messages -----------------------------------------------------------------------------------

def _flatten(tensors: list[torch.Tensor], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    parts = [t.detach().reshape(-1).to(dtype) for t in tensors]
    total = sum(p.numel() for p in parts)
    if total == 0:  # every message is a real transfer, so sends and receives always pair up
        return torch.zeros(1, dtype=dtype, device=device)
    return torch.cat(parts)


def _unflatten(buffer: torch.Tensor, specs: tuple[TensorSpec, ...]) -> list[torch.Tensor]:
    out, at = [], 0
    for spec in specs:
        n = spec.rows * spec.features
        out.append(buffer[at:at + n].view(spec.rows, spec.features))
        at += n
    return out


def _message_elements(specs: tuple[TensorSpec, ...]) -> int:
    return max(1, sum(s.rows * s.features for s in specs))


@dataclasses.dataclass
class _Pending:
    work: object
    buffer: torch.Tensor
    edge: int


# --- per-stage records --------------------------------------------------------------------------

@dataclasses.dataclass
class _ForwardRecord:
    """What a forward leaves for its backward."""
    strategy: str
    leaves: dict[int, list[torch.Tensor]]        # forward in-edge -> its input tensors (leaves)
    held: list[object]                           # meter handles of the leaves
    outputs: dict[int, list[torch.Tensor]] | None  # forward out-edge -> its output tensors (graph)
    loss: torch.Tensor | None
    rerun: Callable[[], tuple[dict[int, list[torch.Tensor]], torch.Tensor | None]]
    roots: list[torch.Tensor] | None = None     # after I: what W differentiates
    root_grads: list[torch.Tensor | None] | None = None
    captured: dict | None = None  # split backward: weight-owning module -> its outputs in this forward
    output_grads: dict | None = None  # after I: module -> gradients of those outputs


@dataclasses.dataclass
class StepReport:
    loss: float                 # this rank's share of the step's loss (sinks only)
    seconds: float              # wall time of the step on this rank
    peak_activation_bytes: int  # device activations kept for backward, peak over the step
    peak_offloaded_bytes: int   # host copies, peak
    compute_seconds: float      # time spent in compute actions (waits for their messages excluded)
    # What the rank did when, seconds from the step's start: (category, label, start, end) with
    # category "compute" (the action's label, from after its messages arrived), "recv" (waiting
    # for a message a compute needs) or "send" (handing a message to the transport).
    spans: list[tuple[str, str, float, float]] = dataclasses.field(default_factory=list)


class PipelineRank:
    """One pipeline rank: its layers, its transport, and the walk over its actions."""

    def __init__(self, rank: int, model: PipelineModel, plan: ExecutablePlan, *, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32, timeout_s: float = 60.0, backend: str = "gloo",
                 fault: tuple[str, int] | None = None):
        self.rank = rank
        self.model = model
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self.order_receives = backend == "nccl"
        self.fault = fault  # ("raise" | "drop-send", action index): fault injection for tests
        self.layers: dict[tuple[int, int], torch.nn.Module] = {}
        self.names: dict[tuple[int, int], str] = {}
        self.owned = self._spans(plan)
        for module, first, stop in self.owned:
            for i, layer in enumerate(model.layers(module, first, stop), start=first):
                self.layers[(module, i)] = layer.to(self.device)
                self.names[(module, i)] = f"{plan.modules[module]['name']}.{i}"
        self.meter = ActivationMeter()
        for layer in self.layers.values():
            for p in layer.parameters():
                self.meter.weight_storages.add(p.untyped_storage().data_ptr())
        # Split backward: the outputs of every module that owns weights, per forward (see W).
        self._capture: dict | None = None
        for layer in self.layers.values():
            for module in weight_owning_modules(layer):
                module.register_forward_hook(self._note_output)

    def _note_output(self, module, inputs, output) -> None:
        if self._capture is not None and isinstance(output, torch.Tensor) and output.requires_grad:
            self._capture.setdefault(module, []).append(output)

    def _run_capturing(self, run, split: bool):
        """run(), noting weight-owning modules' outputs when the backward will be split."""
        if not split:
            return run() + (None,)
        self._capture = {}
        try:
            outputs, loss = run()
            return outputs, loss, self._capture
        finally:
            self._capture = None

    def _spans(self, plan: ExecutablePlan) -> set[tuple[int, int, int]]:
        return {(s.module, s.first, s.stop) for c in plan.rank_chunks(self.rank) for s in c.spans}

    def named_parameters(self):
        for key, layer in sorted(self.layers.items()):
            for name, p in layer.named_parameters():
                yield f"{self.names[key]}.{name}", p

    # --- one step ---------------------------------------------------------------------------

    def step(self, plan: ExecutablePlan, index: int) -> StepReport:
        """Runs rank `self.rank`'s actions of `plan` (training step `index`): leaves each
        parameter's .grad set to this step's gradient."""
        if self._spans(plan) != self.owned:
            raise PlanError(f"rank {self.rank}: step {index}'s plan places other layers on this rank than the "
                            "first plan did; dip.torch keeps each rank's layers for the run (plan every batch on "
                            "one dip.Planner, whose placements are fixed for the run)")
        self.plan = plan
        self.microbatches = [MicrobatchData(j, index, plan.microbatches, mb) for j, mb in enumerate(plan.batch)]
        self.records: dict[int, _ForwardRecord] = {}
        self.mailbox: dict[int, list[torch.Tensor]] = {}
        self.outbox: dict[int, list[torch.Tensor]] = {}
        self.pending: dict[int, _Pending] = {}
        self.sends: list[tuple[object, torch.Tensor, int, int]] = []
        self.weight_grads: dict[str, list[tuple[tuple[int, int], torch.Tensor]]] = {}
        self.loss = 0.0
        self.meter.reset_peaks()
        compute_seconds = 0.0
        start = time.perf_counter()
        self._step_start = start
        self.spans: list[tuple[str, str, float, float]] = []
        actions = plan.actions[self.rank]
        if self.order_receives:
            self._plan_receive_order(plan)
        for action in actions:
            try:
                if self.fault and self.fault[1] == action.index and self.fault[0] == "raise":
                    raise RuntimeError("injected fault")
                if action.op == "compute":
                    self._waited_until = began = time.perf_counter()
                    self._compute(action.stage, action.strategy)
                    began = max(began, self._waited_until)  # the compute starts once its messages are in
                    ended = time.perf_counter()
                    compute_seconds += ended - began
                    self.spans.append(("compute", action.label, began - start, ended - start))
                elif action.op == "send":
                    began = time.perf_counter()
                    self._send(action.edge, action.peer, drop=bool(self.fault) and self.fault == ("drop-send", action.index))
                    self.spans.append(("send", action.label, began - start, time.perf_counter() - start))
                else:
                    self._post_receive(action.edge, action.peer)
            except RankFailure:
                raise
            except Exception as error:  # noqa: BLE001 -- every failure is reported with its action
                raise RankFailure(self.rank, action.index, action.label, error) from error
        for work, _, edge, peer in self.sends:
            try:
                work.wait(timeout=self.timeout)
            except Exception as error:  # noqa: BLE001
                raise RankFailure(self.rank, len(actions), f"completing send of edge {edge} to rank {peer}",
                                  error) from error
        if self.records:
            left = ", ".join(plan.describe(s) for s in sorted(self.records))
            raise RankFailure(self.rank, len(actions), "end of step", f"forwards without a backward: {left}")
        self._reduce_weight_gradients()
        return StepReport(self.loss, time.perf_counter() - start, self.meter.peak_device_bytes,
                          self.meter.peak_host_bytes, compute_seconds, self.spans)

    # --- communication -----------------------------------------------------------------------

    def _send(self, edge: int, peer: int, drop: bool = False) -> None:
        tensors = self.outbox.pop(edge)
        specs = self.plan.edges[edge].tensors
        buffer = _flatten(tensors, self.dtype, self.device)
        if buffer.numel() != _message_elements(specs):
            raise PlanError(f"edge {edge}: message of {buffer.numel()} elements, the plan says "
                            f"{_message_elements(specs)}")
        if drop:
            return  # fault injection: the message never leaves
        self.sends.append((dist.isend(buffer, peer, tag=edge), buffer, edge, peer))

    def _post_receive(self, edge: int, peer: int) -> None:
        if edge in self.pending or edge in self.mailbox:
            return  # posted earlier, in the peer's send order (NCCL)
        if self.order_receives:
            # Post every earlier message from this peer first, in the order it sends them.
            for earlier in self.receive_order[peer]:
                if earlier in self.pending or earlier in self.mailbox:
                    continue
                self._irecv(earlier, peer)
                if earlier == edge:
                    return
        self._irecv(edge, peer)

    def _irecv(self, edge: int, peer: int) -> None:
        buffer = torch.empty(_message_elements(self.plan.edges[edge].tensors), dtype=self.dtype, device=self.device)
        self.pending[edge] = _Pending(dist.irecv(buffer, peer, tag=edge), buffer, edge)

    def _plan_receive_order(self, plan: ExecutablePlan) -> None:
        self.receive_order: dict[int, list[int]] = {}
        for sender, actions in enumerate(plan.actions):
            for a in actions:
                if a.op == "send" and a.peer == self.rank:
                    self.receive_order.setdefault(sender, []).append(a.edge)

    def _inputs(self, edge: int) -> list[torch.Tensor]:
        """The tensors of in-edge `edge`: local, or a posted receive waited for."""
        if edge in self.mailbox:
            return self.mailbox.pop(edge)
        if edge not in self.pending:
            source = self.plan.stages[self.plan.edges[edge].source]
            raise PlanError(f"needs message {edge} ({self.plan.describe(source.id)} on rank {source.rank}), "
                            "which was neither received nor computed here before")
        pending = self.pending.pop(edge)
        began = time.perf_counter()
        try:
            pending.work.wait(timeout=self.timeout)
            self._waited_until = ended = time.perf_counter()
            source = self.plan.stages[self.plan.edges[edge].source]
            self.spans.append(("recv", f"recv {self.plan.describe(source.id)} from rank {source.rank}",
                               began - self._step_start, ended - self._step_start))
        except Exception as error:  # noqa: BLE001
            source = self.plan.stages[self.plan.edges[edge].source]
            raise TimeoutError(f"no message {edge} from rank {source.rank} ({self.plan.describe(source.id)}) within "
                               f"{self.timeout.total_seconds():g} s: {error}") from error
        return _unflatten(pending.buffer, self.plan.edges[edge].tensors)

    def _deliver(self, edge: int, tensors: list[torch.Tensor]) -> None:
        """Hands an out-edge's tensors to its consumer: this rank's mailbox, or the send."""
        target = self.plan.stages[self.plan.edges[edge].target]
        detached = [t.detach() for t in tensors]
        if target.rank == self.rank:
            self.mailbox[edge] = detached
        else:
            self.outbox[edge] = detached

    # --- compute ----------------------------------------------------------------------------

    def _compute(self, stage_id: int, strategy: str) -> None:
        kind = self.plan.stages[stage_id].kind
        if kind == "F":
            self._forward(stage_id, strategy)
        elif kind == "B":
            self._backward(stage_id, inputs=True, weights=True)
        elif kind == "I":
            self._backward(stage_id, inputs=True, weights=False)
        else:
            self._backward(stage_id, inputs=False, weights=True)

    def _forward(self, stage_id: int, strategy: str) -> None:
        plan = self.plan
        leaves: dict[int, list[torch.Tensor]] = {}
        for e in plan.in_edges[stage_id]:
            if not plan.edges[e].tensors:
                continue
            received = self._inputs(e)
            self._check(e, received)
            leaves[e] = [t.detach().requires_grad_(t.is_floating_point()) for t in received]
        held = [self.meter.hold(t) for ts in leaves.values() for t in ts]

        def run() -> tuple[dict[int, list[torch.Tensor]], torch.Tensor | None]:
            return self._run_chunk(stage_id, leaves)

        if strategy == "recompute":
            with torch.no_grad():
                outputs, loss = run()
            record = _ForwardRecord(strategy, leaves, held, None, None, run)
        elif strategy in ("keep", "offload"):
            with _saved_tensor_hooks(self.meter, strategy):
                outputs, loss, captured = self._run_capturing(run, self.plan.split_backward)
            record = _ForwardRecord(strategy, leaves, held, outputs, loss, run, captured=captured)
        else:
            raise PlanError(f"unknown memory strategy '{strategy}'")
        if loss is not None:
            self.loss += float(loss.detach())
        for e, tensors in outputs.items():
            self._deliver(e, tensors)
        self.records[stage_id] = record

    def _check(self, edge: int, tensors: list[torch.Tensor]) -> None:
        specs = self.plan.edges[edge].tensors
        shapes = [tuple(t.shape) for t in tensors]
        expected = [(s.rows, s.features) for s in specs]
        if shapes != expected:
            raise PlanError(f"edge {edge}: tensors of shapes {shapes}, the plan says {expected}")

    def _run_chunk(self, stage_id: int,
                   leaves: dict[int, list[torch.Tensor]]) -> tuple[dict[int, list[torch.Tensor]], torch.Tensor | None]:
        """The chunk's spans on the stage's sub-microbatch: returns the tensors of each out-edge
        and the loss (when the chunk ends a sink module)."""
        plan = self.plan
        stage = plan.stages[stage_id]
        chunk = plan.chunks[stage.chunk]
        mb = self.microbatches[stage.microbatch]
        j = stage.microbatch

        env: dict[tuple[str, int], tuple[list[int], torch.Tensor]] = {}
        gathered: dict[int, list[tuple[tuple[int, ...], torch.Tensor]]] = {}
        for e, tensors in leaves.items():
            source_chain = plan.chunks[plan.stages[plan.edges[e].source].chunk].chain
            for spec, t in zip(plan.edges[e].tensors, tensors):
                if source_chain == chunk.chain:
                    env[(spec.kind, spec.module)] = (list(spec.items), t)
                else:
                    gathered.setdefault(spec.module, []).append((spec.items, t))
        from_other_chains = {p: self._merge_items(p, j, pieces) for p, pieces in gathered.items()}

        loss = None
        for span in chunk.spans:
            m = span.module
            items, rows = plan.items(j, m, stage.sub)
            if span.first == 0:
                producers = {}
                for p in plan.modules[m]["inputs"]:
                    if ("output", p) in env:
                        producers[p] = env[("output", p)]
                    elif p in from_other_chains:
                        producers[p] = from_other_chains[p]
                    else:
                        raise PlanError(f"module '{plan.modules[m]['name']}' starts on chunk {chunk.id} without the "
                                        f"output of its producer '{plan.modules[p]['name']}'")
                x, meta = self.model.begin(m, mb, items, producers)
            else:
                if ("state", m) not in env:
                    raise PlanError(f"chunk {chunk.id} continues module '{plan.modules[m]['name']}' without its state")
                x = env.pop(("state", m))[1]
                context = env.get(("context", m), (None, None))[1]
                meta = self.model.meta(m, mb, items, context)
            for i in range(span.first, span.stop):
                x = self.layers[(m, i)](x, meta)
            if x.shape[0] != rows:
                raise PlanError(f"module '{plan.modules[m]['name']}' microbatch {j} sub {stage.sub}: {x.shape[0]} rows, "
                                f"the plan says {rows}")
            if span.stop == plan.layer_count(m):
                env[("output", m)] = (items, x)
                if plan.is_sink(m):
                    part = self.model.loss(m, mb, items, x)
                    loss = part if loss is None else loss + part
            else:
                env[("state", m)] = (items, x)
                if meta.context is not None:
                    env[("context", m)] = (sorted(self._context_items(m, mb, items)), meta.context)

        outputs: dict[int, list[torch.Tensor]] = {}
        for e in plan.out_edges[stage_id]:
            specs = plan.edges[e].tensors
            if not specs:
                continue
            target_chain = plan.chunks[plan.stages[plan.edges[e].target].chunk].chain
            tensors = []
            for spec in specs:
                key = (spec.kind, spec.module)
                if key not in env:
                    raise PlanError(f"edge {e} carries the {spec.kind} of module "
                                    f"'{plan.modules[spec.module]['name']}', which chunk {chunk.id} does not have")
                src_items, t = env[key]
                if target_chain != chunk.chain and list(spec.items) != list(src_items):
                    t = self._select_items(spec.module, j, src_items, t, spec.items)
                if tuple(t.shape) != (spec.rows, spec.features):
                    raise PlanError(f"edge {e}: the {spec.kind} of '{plan.modules[spec.module]['name']}' has shape "
                                    f"{tuple(t.shape)}, the plan says ({spec.rows}, {spec.features})")
                tensors.append(t)
            outputs[e] = tensors
        return outputs, loss

    def _context_items(self, module: int, mb: MicrobatchData, items: list[int]) -> list[int]:
        caption_of = mb.caption_of_clips()
        return [caption_of[i] for i in items if caption_of[i] is not None]

    def _item_offsets(self, module: int, j: int, items) -> list[tuple[int, int]]:
        out, at = [], 0
        for item in items:
            n = self.plan.item_rows(module, j, item)
            out.append((at, n))
            at += n
        return out

    def _select_items(self, module: int, j: int, src_items: list[int], t: torch.Tensor, wanted) -> torch.Tensor:
        offsets = dict(zip(src_items, self._item_offsets(module, j, src_items)))
        pieces = []
        for item in wanted:
            if item not in offsets:
                raise PlanError(f"module '{self.plan.modules[module]['name']}' microbatch {j}: item {item} is not in "
                                f"this sub-microbatch ({src_items})")
            at, n = offsets[item]
            pieces.append(t[at:at + n])
        return torch.cat(pieces) if pieces else t[:0]

    def _merge_items(self, module: int, j: int, pieces) -> tuple[list[int], torch.Tensor]:
        """A producer's rows gathered from several sub-microbatches, put in item order."""
        rows_of: dict[int, torch.Tensor] = {}
        for items, t in pieces:
            for item, (at, n) in zip(items, self._item_offsets(module, j, items)):
                rows_of[item] = t[at:at + n]
        items = sorted(rows_of)
        return items, (torch.cat([rows_of[i] for i in items]) if items else pieces[0][1][:0])

    # --- backward ---------------------------------------------------------------------------

    def _backward(self, stage_id: int, inputs: bool, weights: bool) -> None:
        plan = self.plan
        stage = plan.stages[stage_id]
        forward = plan.forward_of(stage_id)
        record = self.records.get(forward)
        if record is None:
            raise PlanError(f"{plan.describe(stage_id)} before its forward {plan.describe(forward)}")
        params = [p for s in plan.chunks[stage.chunk].spans for i in range(s.first, s.stop)
                  for p in self.layers[(s.module, i)].parameters()]
        names = [f"{self.names[(s.module, i)]}.{n}" for s in plan.chunks[stage.chunk].spans
                 for i in range(s.first, s.stop) for n, _ in self.layers[(s.module, i)].named_parameters()]

        if record.roots is None:  # B, or I: gather the gradients arriving and the loss
            if record.outputs is None:  # recompute: rerun the forward, now with a graph
                with _saved_tensor_hooks(self.meter, "keep"):
                    record.outputs, record.loss, record.captured = self._run_capturing(record.rerun,
                                                                                       plan.split_backward)
            roots, grads = [], []
            for e in plan.in_edges[stage_id]:
                source = plan.edges[e].source
                if source == forward:  # the loss at the end of a sink chain
                    if record.loss is None:
                        raise PlanError(f"{plan.describe(stage_id)}: the chunk computes no loss")
                    roots.append(record.loss)
                    grads.append(None)
                elif plan.stages[source].kind in ("B", "I"):
                    fe = plan.forward_edge_of(e)
                    arrived = self._inputs(e)
                    self._check(fe, arrived)
                    roots.extend(record.outputs[fe])
                    grads.extend(arrived)
            record.roots, record.root_grads = roots, grads
        roots, grads = record.roots, record.root_grads

        if inputs:
            back_edges = [e for e in plan.out_edges[stage_id]
                          if plan.stages[plan.edges[e].target].kind in ("B", "I") and plan.edges[e].tensors]
            leaf_lists = [record.leaves[plan.forward_edge_of(e)] for e in back_edges]
            flat = [t for ts in leaf_lists for t in ts if t.requires_grad]
            # I also asks for the gradients at the weight-owning modules' outputs, for W.
            # (Without inputs to differentiate, as on a chain's first chunk, I has nothing to send
            # and W runs the whole backward instead, as zero bubble does there.)
            noted = [(m, out) for m, outs in (record.captured or {}).items() for out in outs] \
                if not weights and flat else []
            wanted = flat + (params if weights else [out for _, out in noted])
            if wanted and roots:
                got = torch.autograd.grad(roots, wanted, grads, retain_graph=not weights, allow_unused=True)
            else:
                got = [None] * len(wanted)
            leaf_grads = dict(zip(map(id, flat), got[:len(flat)]))
            for e, ts in zip(back_edges, leaf_lists):
                self._deliver(e, [leaf_grads.get(id(t)) if leaf_grads.get(id(t)) is not None else torch.zeros_like(t)
                                  for t in ts])
            if weights:
                self._stash(stage, names, params, got[len(flat):])
            else:
                record.output_grads = {}
                for (m, out), g in zip(noted, got[len(flat):]):
                    if g is not None:
                        record.output_grads.setdefault(m, ([], []))
                        record.output_grads[m][0].append(out)
                        record.output_grads[m][1].append(g)
        else:  # W after I
            self._stash(stage, names, params, self._weight_gradients(record, params))
        if weights:
            del self.records[forward]  # frees the graph, the held inputs and any offloaded copies

    def _weight_gradients(self, record: _ForwardRecord, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """W: each weight-owning module's own backward from the output gradients I left; the
        rest (weights whose module's output was not noted) by a backward from the roots."""
        found: dict[int, torch.Tensor] = {}
        for module, (outputs, output_grads) in (record.output_grads or {}).items():
            own = [p for p in module._parameters.values() if p is not None and p.requires_grad]
            for p, g in zip(own, torch.autograd.grad(outputs, own, output_grads, retain_graph=True,
                                                      allow_unused=True)):
                if g is not None:
                    found[id(p)] = g if id(p) not in found else found[id(p)] + g
        covered = {id(p) for module in (record.output_grads or {}) for p in module._parameters.values()
                   if p is not None}
        rest = [p for p in params if id(p) not in covered]
        if rest and record.roots:
            for p, g in zip(rest, torch.autograd.grad(record.roots, rest, record.root_grads, retain_graph=True,
                                                      allow_unused=True)):
                if g is not None:
                    found[id(p)] = g
        return [found.get(id(p)) for p in params]

    def _stash(self, stage, names, params, grads) -> None:
        for name, p, g in zip(names, params, grads):
            g = torch.zeros_like(p) if g is None else g
            self.weight_grads.setdefault(name, []).append(((stage.microbatch, stage.sub), g.detach()))

    def _reduce_weight_gradients(self) -> None:
        for name, p in self.named_parameters():
            parts = sorted(self.weight_grads.get(name, []), key=lambda part: part[0])
            total = torch.zeros_like(p)
            for _, g in parts:
                total += g
            p.grad = total
