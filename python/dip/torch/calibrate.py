"""Calibration: time a model's layers and its pipeline link on this machine, for dip's planner.

dip plans with a cost model: what each layer's forward (F), input backward (I) and weight
backward (W) cost for a unit of work, and how much activation memory and message it leaves.
`profile_layers` measures those in the runtime's own terms and `Calibration.costs()` fits
`dip.ProfiledCosts` with them (least squares on [1, tokens, token_pairs] per layer), so that a
`dip.Planner(..., costs=calibration.costs(), **calibration.link_options())` predicts what
`PipelineRank` will measure.

How layers are measured. One pipeline rank holding every layer (a pp = 1 plan) runs a few
calibration batches, split into sub-microbatches of several sizes; each layer that represents
others (the first of each distinct layer shape in a module: the embedding, one block, the head)
records its inputs on every sub-microbatch together with the work unit the planner priced that
sub-microbatch with (`ExecutablePlan.work`). Each recorded input is then rerun alone, as the
runtime runs it: the forward under the activation meter (so `activation` is the bytes the
runtime keeps), I as the gradient of the layer's inputs and of the outputs of its weight-owning
modules, W as each such module's own backward to its weights. Times are medians over repeats.
The layer of a module's most common shape gives the module-wide samples, the others per-layer
samples.

`measure_link` times messages between two ranks (gloo or NCCL) of increasing size and fits a
latency and a bandwidth. Run `profile_layers` on every rank at once (as `bench` does): the ranks
then share the machine's memory bandwidth and caches as they will in the run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import statistics
import time
from typing import Callable

import torch
import torch.distributed as dist

from .layers import RowMeta
from .model import ReferenceModel
from .plan import ExecutablePlan
from .runtime import ActivationMeter, PipelineRank, _saved_tensor_hooks, weight_owning_modules

WORK_FIELDS = ("sequences", "tokens", "token_pairs", "context_tokens", "context_pairs")


# --- which layers to measure --------------------------------------------------------------------

def layer_groups(model: dict) -> list[dict]:
    """Per module, its layers grouped by shape (identical layer objects in the plan's model):
    [{"module": name, "module_index": m, "layers": [i, ...], "module_wide": bool}, ...]. The
    largest group of a module is its module-wide group (ties: the earliest)."""
    groups = []
    for m, spec in enumerate(model["modules"]):
        by_shape: dict[str, list[int]] = {}
        for i, layer in enumerate(spec["layers"]):
            by_shape.setdefault(json.dumps(layer, sort_keys=True), []).append(i)
        ordered = sorted(by_shape.values(), key=lambda layers: (-len(layers), layers[0]))
        for k, layers in enumerate(ordered):
            groups.append({"module": spec["name"], "module_index": m, "layers": layers, "module_wide": k == 0})
    return groups


# --- recording a layer's inputs -----------------------------------------------------------------

@dataclasses.dataclass
class _Recorded:
    x: torch.Tensor | None
    meta: RowMeta
    work: dict
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None  # a sink module's last layer: its loss


def _detached(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone().requires_grad_(t.requires_grad)


class _RecordingLayer(torch.nn.Module):
    """Runs `layer`, and keeps a copy of its inputs the first time it sees a sub-microbatch."""

    def __init__(self, layer: torch.nn.Module, key: tuple[int, int], recorder: "_Recorder"):
        super().__init__()
        self.layer, self.key, self.recorder = layer, key, recorder

    def forward(self, x, meta: RowMeta):
        self.recorder.record(self.key, x, meta)
        return self.layer(x, meta)


class _Recorder:
    def __init__(self):
        self.stage_work: dict | None = None  # the running stage's work per module
        self.losses: dict[int, Callable] = {}  # the running stage's loss per sink module
        self.seen: set = set()
        self.records: dict[tuple[int, int], list[_Recorded]] = {}

    def record(self, key: tuple[int, int], x, meta: RowMeta) -> None:
        if self.stage_work is None or not torch.is_grad_enabled():
            return
        module = key[0]
        work = self.stage_work[module]
        identity = (key, self.stage_work["where"])
        if identity in self.seen or work["tokens"] <= 0:
            return
        self.seen.add(identity)
        copied = dataclasses.replace(meta, token_ids=_detached(meta.token_ids),
                                     inject_positions=_detached(meta.inject_positions),
                                     inject=_detached(meta.inject), context=_detached(meta.context),
                                     segments=list(meta.segments),
                                     context_segments=None if meta.context_segments is None
                                     else list(meta.context_segments))
        self.records.setdefault(key, []).append(_Recorded(_detached(x), copied, work, self.losses.get(key)))


def record_layer_inputs(plans: list[ExecutablePlan], keys: list[tuple[int, int]], *, seed: int = 0,
                        dtype: torch.dtype = torch.float32) -> dict[tuple[int, int], list[_Recorded]]:
    """Runs each one-rank plan once and returns, per (module, layer) in `keys`, the inputs the
    layer saw on each sub-microbatch with that sub-microbatch's work unit."""
    recorder = _Recorder()
    for plan in plans:
        if len(plan.actions) != 1:
            raise ValueError(f"record_layer_inputs needs one-rank plans (pp = 1), got {len(plan.actions)} ranks")
        model = ReferenceModel(plan.document["model"], seed=seed, dtype=dtype)
        runner = PipelineRank(0, model, plan, dtype=dtype)
        for key in keys:
            runner.layers[key] = _RecordingLayer(runner.layers[key], key, recorder)
        run_chunk = runner._run_chunk

        def recording_chunk(stage_id, leaves, _plan=plan, _run=run_chunk, runner=runner, model=model):
            stage = _plan.stages[stage_id]
            recorder.stage_work = {span.module: _plan.work(stage.microbatch, span.module, stage.sub)
                                   for span in _plan.chunks[stage.chunk].spans}
            recorder.stage_work["where"] = (id(_plan), stage.microbatch, stage.sub)
            # A sink module's last layer is timed with the loss the runtime computes after it.
            mb = runner.microbatches[stage.microbatch]
            recorder.losses = {
                (span.module, span.stop - 1): functools.partial(model.loss, span.module, mb,
                                                                _plan.items(stage.microbatch, span.module, stage.sub)[0])
                for span in _plan.chunks[stage.chunk].spans
                if span.stop == _plan.layer_count(span.module) and _plan.is_sink(span.module)}
            try:
                return _run(stage_id, leaves)
            finally:
                recorder.stage_work = None

        runner._run_chunk = recording_chunk
        runner.step(plan, 0)
    return recorder.records


# --- timing one layer ---------------------------------------------------------------------------

def _fresh_inputs(recorded: _Recorded) -> tuple[torch.Tensor | None, RowMeta, list[torch.Tensor]]:
    """New leaves of a recorded input (so that each run builds its own graph), and those of them
    that the backward differentiates."""
    x = _detached(recorded.x)
    meta = dataclasses.replace(recorded.meta, inject=_detached(recorded.meta.inject),
                               context=_detached(recorded.meta.context))
    return x, meta, [t for t in (x, meta.inject, meta.context) if t is not None and t.requires_grad]


def time_layer(layer: torch.nn.Module, recorded: _Recorded, repeats: int = 5) -> dict:
    """F, I and W of `layer` on a recorded input (medians over `repeats` after one warm-up, in
    ms), the activation bytes its forward keeps and its output bytes: one profile sample."""
    owners = weight_owning_modules(layer)
    noted: dict[torch.nn.Module, list[torch.Tensor]] = {}

    def note(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            noted.setdefault(module, []).append(output)

    handles = [m.register_forward_hook(note) for m in owners]
    forward, backward_input, backward_weight, backward = [], [], [], []
    activation = output_bytes = 0
    try:
        for repeat in range(repeats + 1):
            noted.clear()
            x, meta, inputs = _fresh_inputs(recorded)
            meter = ActivationMeter()
            for p in layer.parameters():
                meter.weight_storages.add(p.untyped_storage().data_ptr())
            held = [meter.hold(t) for t in inputs]
            began = time.perf_counter()
            with _saved_tensor_hooks(meter, "keep"):
                out = layer(x, meta)
                output_bytes = out.numel() * out.element_size()
                if recorded.loss is not None:
                    out = recorded.loss(out)
            forward_s = time.perf_counter() - began
            activation = meter.device_bytes
            grad = torch.ones_like(out) / out.numel()
            outputs = [(m, o) for m, outs in noted.items() for o in outs]
            began = time.perf_counter()
            if inputs:
                got = torch.autograd.grad([out], inputs + [o for _, o in outputs], [grad], retain_graph=True,
                                          allow_unused=True)
                output_grads = got[len(inputs):]
            else:  # nothing to differentiate: W runs the whole backward, as in the runtime
                output_grads = None
            input_s = time.perf_counter() - began
            began = time.perf_counter()
            if output_grads is None:
                torch.autograd.grad([out], list(layer.parameters()), [grad], allow_unused=True)
            else:
                for m in noted:
                    pairs = [(o, g) for (owner, o), g in zip(outputs, output_grads) if owner is m and g is not None]
                    own = [p for p in m._parameters.values() if p is not None and p.requires_grad]
                    if pairs and own:
                        torch.autograd.grad([o for o, _ in pairs], own, [g for _, g in pairs], retain_graph=True,
                                            allow_unused=True)
            weight_s = time.perf_counter() - began
            del held, out, outputs, output_grads
            # The whole backward in one pass, as B runs it (schedules that do not split it).
            noted.clear()
            x, meta, inputs = _fresh_inputs(recorded)
            out = layer(x, meta)
            if recorded.loss is not None:
                out = recorded.loss(out)
            began = time.perf_counter()
            torch.autograd.grad([out], inputs + list(layer.parameters()), [torch.ones_like(out) / out.numel()],
                                allow_unused=True)
            whole_s = time.perf_counter() - began
            del out
            if repeat > 0:  # the first run warms caches and allocators
                forward.append(forward_s)
                backward_input.append(input_s)
                backward_weight.append(weight_s)
                backward.append(whole_s)
    finally:
        for h in handles:
            h.remove()
    # dip prices B as I + W. Run apart, I and W cost a few percent more than B (two passes over
    # the graph, the weight-owning modules' output gradients kept between them): both are scaled
    # so that they add up to B, which most schedules run; a split schedule's I and W then come
    # out that much cheaper than measured.
    split_ms = 1e3 * (statistics.median(backward_input) + statistics.median(backward_weight))
    to_whole = 1e3 * statistics.median(backward) / split_ms if split_ms > 0 else 1.0
    return {"work": {k: float(recorded.work[k]) for k in WORK_FIELDS},
            "forward_ms": 1e3 * statistics.median(forward),
            "backward_input_ms": 1e3 * statistics.median(backward_input) * to_whole,
            "backward_weight_ms": 1e3 * statistics.median(backward_weight) * to_whole,
            "activation_bytes": float(activation), "output_bytes": float(output_bytes)}


def _spread(records: list[_Recorded], count: int) -> list[_Recorded]:
    """At most `count` records of distinct work, evenly spread over their token counts."""
    distinct: dict[tuple, _Recorded] = {}
    for r in records:
        distinct.setdefault(tuple(r.work[k] for k in WORK_FIELDS), r)
    ordered = sorted(distinct.values(), key=lambda r: (r.work["tokens"], r.work["token_pairs"]))
    if len(ordered) <= count:
        return ordered
    step = (len(ordered) - 1) / (count - 1)
    return [ordered[round(i * step)] for i in range(count)]


def profile_layers(plans: list[ExecutablePlan], *, samples_per_layer: int = 16, repeats: int = 5, seed: int = 0,
                   dtype: torch.dtype = torch.float32,
                   progress: Callable[[str], None] | None = None) -> list[dict]:
    """Profile samples of every layer group of the plans' model (see the module docs): a list of
    {"module", "layers", "module_wide", "samples": [...]}, in `layer_groups` order."""
    model = plans[0].document["model"]
    groups = layer_groups(model)
    keys = [(g["module_index"], g["layers"][0]) for g in groups]
    records = record_layer_inputs(plans, keys, seed=seed, dtype=dtype)
    layers = ReferenceModel(model, seed=seed, dtype=dtype)
    out = []
    for g, key in zip(groups, keys):
        chosen = _spread(records.get(key, []), samples_per_layer)
        if progress:
            progress(f"{g['module']} layer {key[1]}: {len(chosen)} sizes")
        layer = layers.layers(key[0], key[1], key[1] + 1)[0]
        out.append({"module": g["module"], "layers": g["layers"], "module_wide": g["module_wide"],
                    "samples": [time_layer(layer, r, repeats) for r in chosen]})
    return out


# --- in the run ---------------------------------------------------------------------------------

def run_plans(rank: int, plans: list[ExecutablePlan], *, warmup: int = 1, repeats: int = 1, seed: int = 0,
              timeout_s: float = 120.0) -> list[list[tuple[int, float]]]:
    """Runs each plan (every rank of it at once: call on every rank) `warmup` + `repeats` times,
    each step from a barrier, the plans in turn (round-robin, so that a slow spell of the
    machine falls on all of them alike); returns per plan this rank's compute actions as (stage,
    seconds busy: the compute and the rank's own work since the previous compute, the median
    over the repeats). Layers timed alone run faster or slower than inside a pipeline (the other
    ranks share the memory bandwidth and caches); `fit_run_scales` corrects for it with these."""
    model = ReferenceModel(plans[0].document["model"], seed=seed)
    runners = [PipelineRank(rank, model, plan, timeout_s=timeout_s) for plan in plans]
    stage_of = [{a.label: a.stage for a in plan.actions[rank] if a.op == "compute"} for plan in plans]
    steps: list[list] = [[] for _ in plans]
    for step in range(warmup + repeats):
        for i, (plan, runner) in enumerate(zip(plans, runners)):
            dist.barrier()
            report = runner.step(plan, 0)
            if step < warmup:
                continue
            # Each compute action is charged the rank's time since the previous one ended, but
            # for the waits for messages: the runtime's own work between actions (sends, posting
            # receives, bookkeeping) is part of what an action costs.
            busy, since, waited = [], 0.0, 0.0
            for category, label, start, end in report.spans:
                if category == "recv":
                    waited += end - start
                elif category == "compute":
                    busy.append((stage_of[i][label], end - since - waited))
                    since, waited = end, 0.0
            steps[i].append(busy)
    return [[(stage, statistics.median(s[j][1] for s in per_plan)) for j, (stage, _) in enumerate(per_plan[0])]
            for per_plan in steps]


PARTS = ("forward", "backward_input", "backward_weight")
KIND_PARTS = {"F": ("forward",), "B": ("backward_input", "backward_weight"), "I": ("backward_input",),
              "W": ("backward_weight",)}  # what each stage kind runs, as dip prices it


OVERHEAD = "(stage)"  # the module name under which _stage_parts counts a stage's per-span overhead
# A layer run inside a pipeline starts cold: its weights were evicted from the caches by the
# actions in between, where the layer timed alone runs with them warm. That costs about the same
# per layer whatever the sub-microbatch's size, so it is corrected by adding ms per layer (the
# "part + PER_LAYER" corrections), not by scaling: small sub-microbatches suffer it the most.
PER_LAYER = " per layer"


def _stage_parts(plan: ExecutablePlan, stage_id: int, price: Callable[[str, int, dict], dict]) -> dict:
    """What the cost model says a compute stage costs, per (module name, part) in ms; under
    (OVERHEAD, part), how many times the stage pays that part's overhead (once per module it
    runs, as dip's profiled cost model charges it)."""
    stage = plan.stages[stage_id]
    forward = plan.forward_of(stage_id) if stage.kind != "F" else stage_id
    # A split backward of a chunk without inputs to differentiate (a chain's first) does all of
    # its work in W (the runtime's I has nothing to compute there).
    has_inputs = any(plan.edges[e].tensors for e in plan.in_edges[forward])
    wanted = KIND_PARTS[stage.kind]
    if not has_inputs and stage.kind in ("I", "W"):
        wanted = () if stage.kind == "I" else KIND_PARTS["B"]
    parts: dict[tuple[str, str], float] = {}
    for span in plan.chunks[stage.chunk].spans:
        work = plan.work(stage.microbatch, span.module, stage.sub)
        if work["tokens"] <= 0:
            continue
        name = plan.modules[span.module]["name"]
        for part in KIND_PARTS[stage.kind]:
            parts[(OVERHEAD, part)] = parts.get((OVERHEAD, part), 0.0) + 1.0
        for layer in range(span.first, span.stop):
            cost = price(name, layer, work)
            for part in wanted:
                parts[(name, part)] = parts.get((name, part), 0.0) + cost[part + "_ms"]
                parts[(name, part + PER_LAYER)] = parts.get((name, part + PER_LAYER), 0.0) + 1.0
    return parts


def _additive(key: tuple[str, str]) -> bool:
    """Whether a correction adds milliseconds (stage overhead, per layer) rather than scales."""
    return key[0] == OVERHEAD or key[1].endswith(PER_LAYER)


def fit_run_scales(plans: list[ExecutablePlan], measured: list[list[list[tuple[int, float]]]],
                   price: Callable[[str, int, dict], dict], ridge: float = 0.05) -> dict[tuple[str, str], float]:
    """The corrections that make the layer-by-layer prices match the compute actions measured
    in the run: per (module, part) a factor, per (module, part + PER_LAYER) the ms each of its
    layers adds per action, per (OVERHEAD, part) the runtime's ms per stage. Least squares on
    relative errors over every measured action (measured[rank][plan] = [(stage, seconds)]),
    factors pulled towards 1 and the added ms towards 0 by `ridge` (a part that few actions see
    keeps about its price alone). Factors are clamped to [0.5, 2], added ms to >= 0."""
    import numpy as np

    rows, targets, keys = [], [], []
    for per_plan in measured:
        for plan, actions in zip(plans, per_plan):
            for stage_id, seconds in actions:
                parts = _stage_parts(plan, stage_id, price)
                if not parts or seconds <= 0:
                    continue
                for key in parts:
                    if key not in keys:
                        keys.append(key)
                rows.append(parts)
                targets.append(1e3 * seconds)
    if not rows:
        return {}
    a = np.zeros((len(rows) + len(keys), len(keys)))
    b = np.zeros(len(rows) + len(keys))
    for i, (parts, target) in enumerate(zip(rows, targets)):
        for key, ms in parts.items():
            a[i, keys.index(key)] = ms / target
        b[i] = 1.0
    weight = (ridge * len(rows)) ** 0.5
    typical_ms = float(np.median(targets))
    for j, key in enumerate(keys):
        if _additive(key):  # towards 0 ms, in units of a typical action
            a[len(rows) + j, j] = weight / typical_ms
        else:
            a[len(rows) + j, j] = weight
            b[len(rows) + j] = weight
    solution = np.linalg.lstsq(a, b, rcond=None)[0]
    return {key: float(max(0.0, value)) if _additive(key) else float(min(2.0, max(0.5, value)))
            for key, value in zip(keys, solution)}


# --- the link -----------------------------------------------------------------------------------

def measure_link(rank: int, *, sizes_bytes: tuple[int, ...] = (4 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20),
                 repeats: int = 5, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> dict | None:
    """Ranks 0 and 1 bounce messages of each size; returns on rank 0 {"latency_us", "gbps",
    "samples": [[bytes, seconds one way], ...]}, None elsewhere. Every rank must call it (the
    others wait at the barrier). One way = half the median round trip."""
    device = device or torch.device("cpu")
    samples = []
    for size in sizes_bytes:
        elements = max(1, size // torch.tensor([], dtype=dtype).element_size())
        buffer = torch.zeros(elements, dtype=dtype, device=device)
        trips = []
        for repeat in range(repeats + 1):
            dist.barrier()
            if rank == 0:
                began = time.perf_counter()
                dist.send(buffer, 1)
                dist.recv(buffer, 1)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if repeat > 0:
                    trips.append(time.perf_counter() - began)
            elif rank == 1:
                dist.recv(buffer, 0)
                dist.send(buffer, 0)
        if rank == 0:
            samples.append([elements * buffer.element_size(), statistics.median(trips) / 2])
    dist.barrier()
    if rank != 0:
        return None
    latency_s, seconds_per_byte = _line([s[0] for s in samples], [s[1] for s in samples])
    return {"latency_us": 1e6 * max(latency_s, 0.0),
            "gbps": 1e-9 / seconds_per_byte if seconds_per_byte > 0 else float("inf"), "samples": samples}


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of ys on xs."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    return mean_y - slope * mean_x, slope


# --- the result ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Calibration:
    """Measured layer samples (`profile_layers`, merged over ranks) and link (`measure_link`)."""
    model: str
    groups: list[dict]
    link: dict | None = None
    machine: dict = dataclasses.field(default_factory=dict)
    # In-run corrections (fit_run_scales): "module/part" -> factor, "module/part per layer" -> ms
    # each layer adds per action, "(stage)/part" -> ms per stage.
    scales: dict[str, float] = dataclasses.field(default_factory=dict)

    @staticmethod
    def merge(model: str, per_rank: list[list[dict]], link: dict | None, machine: dict) -> "Calibration":
        """One calibration from every rank's `profile_layers` (the same samples on each): each
        sample's times and bytes are the median over ranks."""
        groups = []
        for group_on_ranks in zip(*per_rank):
            merged = dict(group_on_ranks[0])
            merged["samples"] = []
            for on_ranks in zip(*(g["samples"] for g in group_on_ranks)):
                sample = dict(on_ranks[0])
                for field in ("forward_ms", "backward_input_ms", "backward_weight_ms", "activation_bytes",
                              "output_bytes"):
                    sample[field] = statistics.median(s[field] for s in on_ranks)
                merged["samples"].append(sample)
            groups.append(merged)
        return Calibration(model, groups, link, machine)

    def costs(self, scaled: bool = True):
        """dip.ProfiledCosts fitted on the samples (times multiplied by `scales`, the in-run
        correction, unless `scaled` is False); `reports` says how well each fit holds. Each
        layer group gets the richest basis its samples determine: per_sequence (this runtime
        runs attention once per run of equal-length sequences, so a packed batch of many short
        sequences costs more than one long one of the same tokens), else quadratic, else linear
        (layers whose samples all have one sequence length)."""
        import dip

        costs = dip.ProfiledCosts()
        self.reports = []
        for g in self.groups:
            if not g["samples"]:
                continue
            if scaled and self.scales:
                g = dict(g, samples=[self._scaled(g["module"], sample) for sample in g["samples"]])
            basis = _choose_basis(g)
            fit = dip.ProfiledCosts()
            report = (fit.add_samples(g["module"], g["samples"], basis) if g["module_wide"]
                      else fit.add_layer_samples(g["module"], g["layers"][0], g["samples"], basis))
            if g["module_wide"]:
                costs.add_samples(g["module"], g["samples"], basis)
            else:
                for layer in g["layers"]:
                    costs.add_layer_samples(g["module"], layer, g["samples"], basis)
            self.reports.append({"module": g["module"], "layers": "all" if g["module_wide"] else g["layers"],
                                 "report": report})
        if scaled:
            costs.set_stage_overhead(*(self.scales.get(f"{OVERHEAD}/{part}", 0.0) for part in PARTS))
        return costs

    def _scaled(self, module: str, sample: dict) -> dict:
        out = dict(sample)
        for part in PARTS:
            out[part + "_ms"] = (sample[part + "_ms"] * self.scales.get(f"{module}/{part}", 1.0)
                                 + self.scales.get(f"{module}/{part}{PER_LAYER}", 0.0))
        return out

    def link_options(self) -> dict:
        """The Planner's keyword arguments for the measured link (empty when not measured)."""
        if not self.link:
            return {}
        return {"p2p_latency_us": self.link["latency_us"], "link_gbps": self.link["gbps"]}

    def to_json(self) -> dict:
        return {"model": self.model, "groups": self.groups, "link": self.link, "machine": self.machine,
                "scales": self.scales}

    @staticmethod
    def from_json(document: dict) -> "Calibration":
        return Calibration(document["model"], document["groups"], document.get("link"), document.get("machine", {}),
                           document.get("scales", {}))

    def save(self, path: str | pathlib.Path) -> None:
        pathlib.Path(path).write_text(json.dumps(self.to_json(), indent=1))

    @staticmethod
    def load(path: str | pathlib.Path) -> "Calibration":
        return Calibration.from_json(json.loads(pathlib.Path(path).read_text()))


BASES = ("per_sequence", "quadratic", "linear")


FEATURES = {"per_sequence": ("1", "tokens", "token_pairs", "sequences"), "quadratic": ("1", "tokens", "token_pairs"),
            "linear": ("1", "tokens")}


def _fit_or_none(samples: list[dict], basis: str):
    import dip

    try:
        return dip.ProfiledCosts().add_samples("layer", samples, basis)
    except dip.Error:
        return None  # the samples do not determine this basis' coefficients


def _predict(report: dict, output: str, work: dict) -> float:
    """A fit's value (SI units: seconds, bytes) for `work`, clamped at 0 as dip prices it."""
    value = sum(c * (1.0 if f == "1" else work[f]) for c, f in zip(report[output]["coefficients"], report["features"]))
    return max(value, 0.0)


def _choose_basis(group: dict) -> str:
    """The basis whose fits predict held-out samples best (leave one out): first on the
    activation bytes, which are exact data that the right basis reproduces (attention keeps
    sequence-length-squared probabilities), then on the three times. A richer basis always fits
    its own samples better, but on nearly collinear features (sequences almost a multiple of
    tokens) it may price a size it did not see wildly; held-out samples tell."""
    samples = group["samples"]
    best, best_score = "linear", (float("inf"), float("inf"))
    for basis in BASES:
        whole = _fit_or_none(samples, basis)
        if whole is None:
            continue
        times, kept = [], []
        for i, held_out in enumerate(samples):
            # Too few samples to leave one out: the basis is judged on its own samples.
            report = _fit_or_none(samples[:i] + samples[i + 1:], basis) or whole
            for part in PARTS:
                measured = held_out[part + "_ms"]
                if measured > 0:
                    times.append(abs(1e3 * _predict(report, part, held_out["work"]) / measured - 1))
            if held_out["activation_bytes"] > 0:
                kept.append(abs(_predict(report, "activation", held_out["work"]) / held_out["activation_bytes"] - 1))
        if not times:
            continue
        # Bytes within 0.1% of each other are a tie, which the times break.
        score = (round(statistics.mean(kept), 3) if kept else 0.0, statistics.mean(times))
        if score < best_score:
            best, best_score = basis, score
    return best
