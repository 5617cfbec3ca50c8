#!/usr/bin/env python3
"""dip.torch's runtime against torch.distributed.pipelining, on one plan, one model, one batch.

    PYTHONPATH=build/python .venv/bin/python bench/torch_runtime_vs_pipelining.py \\
        [--model bench/models/tiny-lm-bench.json] [--schedules gpipe,1f1b,interleaved,zb1p] \\
        [--microbatches 8] [--tokens 1024] [--iterations 5] [--json FILE] [--quick]

For each schedule both runtimes can run (one chain: gpipe, 1f1b, interleaved, zb1p), dip's
planner plans a batch of identical microbatches (one sample of --tokens text tokens each) of a
plain causal LM made of dip's reference layers (embedding, transformer blocks, LM head). The
plan's executable action list runs on dip.torch.PipelineRank; the same plan's compute order,
exported by dip-plan --export-torch (dip::to_torch_schedule), runs on PyTorch's
_PipelineScheduleRuntime with the same stage split (one PipelineStage per dip chunk, holding the
same layers with the same weights). dip-plan plans the CSV from its own `uniform` batch; the
script checks that its placement and every rank's compute order equal the executable plan's, so
both runtimes run one plan.

Two processes (gloo, one torch thread each), launched once by dip.torch.launch; each rank runs
both runtimes side by side: per schedule one warm-up step of each (PyTorch infers shapes in its
first step), then --iterations steps of each, alternating which goes first. A step is timed on
every rank between two barriers (gradients cleared before). Reported: the median step time of
each runtime and dip/pytorch (the target: at most 1.10); the same ratio of the CPU seconds both
ranks spent in a step (steadier than wall time where other work shares the cores); the largest
relative difference of any parameter's gradient (max |dip - pytorch| / max |pytorch| per
tensor): both add the same fp32 terms, possibly in another order, so they agree to rounding
(bitwise when the microbatch count and tokens are powers of two; the check fails above 1e-4).
Every compute action of the timed steps is timed by kind (F, B, I, W): where a runtime's time
goes (the --json file has it per rank).

Exits 0 when every schedule's gradients agree, 1 when one does not, 2 for bad arguments or a
failed run, 77 without torch. --quick: a tiny model, 4 microbatches, 1 timed step (a smoke test).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb1p")
GRADIENT_TOLERANCE = 1e-4
QUICK_MODEL = {"name": "tiny-lm-quick", "modules": [
    {"name": "lm", "modality": "text", "role": "backbone", "layers": 4,
     "layer": {"kind": "transformer", "hidden": 32, "ffn": 64, "heads": 2, "kv_groups": 2, "gated_mlp": False},
     "embedding": {"vocab": 64}, "head": {"vocab": 64}}]}


# --- the plans ------------------------------------------------------------------------------------

def plan_documents(args, schedule: str, work: pathlib.Path) -> tuple[dict, list[list[str]]]:
    """dip's executable plan of the batch, and dip-plan's torch CSV of the same schedule and
    placement, checked to hold the same compute order."""
    import dip

    model = dip.Model.from_json(args.model)
    planner = dip.Planner(model, pp=args.pp, chunks=args.chunks, partition=args.partition, search_ms=0.0,
                          memory_strategies=False, fit_memory=False)
    batch = [[{"text_tokens": args.tokens}] for _ in range(args.microbatches)]
    document = planner.plan(batch, schedule).executable()
    strategies = {a["strategy"] for r in document["ranks"] for a in r["actions"] if a["op"] == "compute"}
    if strategies != {"keep"}:
        raise RuntimeError(f"{schedule}: the plan recomputes or offloads ({sorted(strategies)}); PyTorch cannot")
    if len(document["placement"]["chains"]) != 1:
        raise RuntimeError(f"{schedule}: the placement has {len(document['placement']['chains'])} chains")

    csv_path = work / f"{schedule}.csv"
    command = [args.dip_plan, "--model", args.model, "--pp", str(args.pp), "--microbatches", str(args.microbatches),
               "--schedules", schedule, "--chunks", str(args.chunks), "--partition", args.partition,
               "--data", "uniform", "--search-ms", "0", "--memory-strategies", "false", "--fit-memory", "false",
               "--export-torch", str(csv_path)]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    rows = [line.strip().split(",") if line.strip() else [] for line in csv_path.read_text().splitlines()]

    expected = compute_order(document)
    if rows != expected:
        for r, (got, want) in enumerate(zip(rows, expected)):
            if got != want:
                raise RuntimeError(f"{schedule}: dip-plan's torch CSV (uniform batch) and the executable plan differ "
                                   f"on rank {r}:\n  csv  {','.join(got)}\n  plan {','.join(want)}")
        raise RuntimeError(f"{schedule}: the CSV has {len(rows)} rows, the plan {len(expected)} ranks")
    return document, rows


def compute_order(document: dict) -> list[list[str]]:
    """Per rank, its compute actions as PyTorch's compute_only cells: <stage><kind><microbatch>,
    the stage being the chunk's position in its chain (what dip::to_torch_schedule writes)."""
    position = {c: p for chain in document["placement"]["chains"] for p, c in enumerate(chain["chunks"])}
    return [[f"{position[a['chunk']]}{a['kind']}{a['microbatch']}" for a in rank["actions"] if a["op"] == "compute"]
            for rank in document["ranks"]]


# --- what both runtimes run -----------------------------------------------------------------------

def batch_tensors(document: dict, tokens: int, seed: int):
    """Token ids and labels of every microbatch: (microbatches, tokens) each."""
    import torch

    vocab = document["model"]["modules"][0]["layers"][0]["vocab"]
    generator = torch.Generator().manual_seed(seed)
    microbatches = document["microbatches"]
    ids = torch.randint(vocab, (microbatches, tokens), generator=generator)
    labels = torch.randint(vocab, (microbatches, tokens), generator=generator)
    return ids, labels


class BenchModel:
    """dip.torch.PipelineModel of the causal LM: dip's reference layers (ReferenceModel's
    weights), the bench's token ids and labels, the mean cross-entropy over the batch's tokens
    (each microbatch's share divided by the microbatches, as gradient accumulation does)."""

    def __init__(self, document: dict, ids, labels, seed: int):
        from dip.torch import ReferenceModel

        self.reference = ReferenceModel(document["model"], seed=seed)
        self.ids, self.labels = ids, labels

    def layers(self, module, first, stop):
        return self.reference.layers(module, first, stop)

    def begin(self, module, mb, items, producers):
        from dip.torch.layers import RowMeta

        ids = self.ids[mb.index]
        return None, RowMeta(segments=[ids.shape[0]], causal=True, token_ids=ids)

    def meta(self, module, mb, items, context):
        from dip.torch.layers import RowMeta

        return RowMeta(segments=[self.ids.shape[1]], causal=True)

    def loss(self, module, mb, items, y):
        import torch

        return torch.nn.functional.cross_entropy(y, self.labels[mb.index], reduction="sum") / (y.shape[0] * mb.count)


def torch_stage_module(layers: list, first_is_embedding: bool):
    """One PyTorch pipeline stage: dip layers called as layer(x, meta) on a whole causal sequence;
    the first stage takes the token ids (1, tokens)."""
    import torch
    from dip.torch.layers import RowMeta

    class Stage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(layers)

        def forward(self, x):
            if first_is_embedding:
                ids = x.reshape(-1)
                meta, x = RowMeta(segments=[ids.shape[0]], causal=True, token_ids=ids), None
            else:
                meta = RowMeta(segments=[x.shape[0]], causal=True)
            for layer in self.layers:
                x = layer(x, meta)
            return x

    return Stage()


def _timed(step) -> tuple[float, float]:
    """Wall seconds of `step` between two barriers, and this process's CPU seconds in it."""
    import torch.distributed as dist

    dist.barrier()
    began, cpu = time.perf_counter(), time.process_time()
    step()
    dist.barrier()
    return time.perf_counter() - began, time.process_time() - cpu


class ActionClock:
    """Seconds per compute kind (F, B, I, W), by wrapping the methods each runtime calls per
    action on its instances (PipelineRank._compute; PipelineStage.forward_one_chunk,
    backward_one_chunk, backward_weight_one_chunk). dip waits for a message inside its compute
    action (PipelineRank._inputs), PyTorch before it, so dip's waits are timed apart and taken out."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.waited = 0.0

    def add(self, kind: str, seconds: float) -> None:
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def wrap_dip(self, rank) -> None:
        compute, inputs = rank._compute, rank._inputs

        def timed_inputs(edge):
            began = time.perf_counter()
            try:
                return inputs(edge)
            finally:
                self.waited += time.perf_counter() - began

        def timed_compute(stage_id, strategy):
            waited, began = self.waited, time.perf_counter()
            compute(stage_id, strategy)
            self.add(rank.plan.stages[stage_id].kind, time.perf_counter() - began - (self.waited - waited))

        rank._inputs, rank._compute = timed_inputs, timed_compute

    def wrap_pytorch(self, stage) -> None:
        forward, backward, weight = stage.forward_one_chunk, stage.backward_one_chunk, stage.backward_weight_one_chunk

        def timed(kind, method):
            def call(*args, **kwargs):
                began = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    self.add(kind(kwargs), time.perf_counter() - began)
            return call

        stage.forward_one_chunk = timed(lambda kw: "F", forward)
        stage.backward_one_chunk = timed(lambda kw: "B" if kw.get("full_backward", True) else "I", backward)
        stage.backward_weight_one_chunk = timed(lambda kw: "W", weight)

    def report(self) -> dict:
        return {"seconds": self.seconds, "counts": self.counts}


def rank_worker(rank: int, world_size: int, jobs: list[dict], options: dict) -> dict:
    """Runs every schedule's plan on both runtimes on this rank; saves the last step's gradients."""
    import torch
    import torch.distributed as dist
    from torch.distributed.pipelining import PipelineStage
    from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime

    from dip.torch import ExecutablePlan, PipelineRank

    out = {}
    for job in jobs:
        document = json.loads(pathlib.Path(job["plan"]).read_text())
        plan = ExecutablePlan(document)
        ids, labels = batch_tensors(document, options["tokens"], options["seed"])
        model = BenchModel(document, ids, labels, options["seed"])
        module_name = plan.modules[0]["name"]

        # dip.torch: the executable plan.
        dip_rank = PipelineRank(rank, model, plan, timeout_s=options["timeout"])
        dip_params = [p for _, p in dip_rank.named_parameters()]
        dip_losses = []

        def dip_step(index: int) -> None:
            for p in dip_params:
                p.grad = None
            dip_losses.append(dip_rank.step(plan, index).loss)

        # PyTorch: one PipelineStage per chunk of this rank, stage index = position in the chain.
        chain = plan.chains[0]
        stages, names = [], {}
        for position, c in enumerate(chain):
            chunk = plan.chunks[c]
            if chunk.rank != rank:
                continue
            (span,) = chunk.spans
            layers = model.layers(span.module, span.first, span.stop)
            module = torch_stage_module(layers, first_is_embedding=span.first == 0)
            for i, layer in zip(range(span.first, span.stop), layers):
                for n, p in layer.named_parameters():
                    names[id(p)] = f"{module_name}.{i}.{n}"
            stages.append(PipelineStage(module, position, len(chain), torch.device("cpu"), group=dist.group.WORLD))
        holds_first = any(s.stage_index == 0 for s in stages)
        holds_last = any(s.stage_index == len(chain) - 1 for s in stages)
        schedule = _PipelineScheduleRuntime(
            stages, plan.microbatches, scale_grads=True,
            loss_fn=lambda output, target: torch.nn.functional.cross_entropy(output, target.reshape(-1)))
        schedule._load_csv(job["csv"], format="compute_only")
        torch_params = [p for s in stages for p in s.submod.parameters()]
        torch_losses = []

        def torch_step(index: int) -> None:
            for p in torch_params:
                p.grad = None
            losses = [] if holds_last else None
            schedule.step(*((ids,) if holds_first else ()), target=labels if holds_last else None, losses=losses,
                          return_outputs=False)
            if holds_last:
                torch_losses.append(sum(float(l.detach()) for l in losses) / len(losses))

        times = {"dip": [], "pytorch": []}
        cpu = {"dip": [], "pytorch": []}
        _timed(lambda: dip_step(0))    # warm-up
        _timed(lambda: torch_step(0))  # warm-up (PyTorch infers the stages' shapes here)
        # Every compute action of the timed steps is timed by kind (a few microseconds a step).
        clocks = {"dip": ActionClock(), "pytorch": ActionClock()}
        clocks["dip"].wrap_dip(dip_rank)
        for stage in stages:
            clocks["pytorch"].wrap_pytorch(stage)
        for it in range(options["iterations"]):
            order = (("dip", dip_step), ("pytorch", torch_step))
            for name, step in (order if it % 2 == 0 else order[::-1]):
                wall, used = _timed(lambda: step(it + 1))
                times[name].append(wall)
                cpu[name].append(used)

        gradients = {"dip": {n: p.grad.detach().clone() for n, p in dip_rank.named_parameters()},
                     "pytorch": {names[id(p)]: p.grad.detach().clone() for p in torch_params}}
        path = pathlib.Path(options["out"]) / f"{job['schedule']}-rank{rank}.pt"
        torch.save(gradients, path)
        out[job["schedule"]] = {"times": times, "cpu": cpu, "dip_loss": dip_losses[-1],
                                "actions": {k: c.report() for k, c in clocks.items()},
                                "dip_waited_s": clocks["dip"].waited / options["iterations"],
                                "pytorch_loss": torch_losses[-1] if torch_losses else None,
                                "gradients": str(path)}
        del dip_rank, schedule, stages
    return out


# --- the report -----------------------------------------------------------------------------------

def compare_gradients(files: list[str]) -> tuple[float, float, str, int]:
    import torch

    dip_grads, torch_grads = {}, {}
    for f in files:
        saved = torch.load(f)
        dip_grads.update(saved["dip"])
        torch_grads.update(saved["pytorch"])
    if set(dip_grads) != set(torch_grads):
        raise RuntimeError(f"parameters not in both runtimes: {sorted(set(dip_grads) ^ set(torch_grads))[:5]}")
    worst_abs, worst_rel, worst = 0.0, 0.0, ""
    for name, expected in torch_grads.items():
        error = float((dip_grads[name] - expected).abs().max())
        scale = float(expected.abs().max())
        relative = error / scale if scale > 0 else (0.0 if error == 0 else float("inf"))
        worst_abs = max(worst_abs, error)
        if relative >= worst_rel:
            worst_rel, worst = relative, name
    return worst_abs, worst_rel, worst, len(torch_grads)


def machine() -> dict:
    import torch

    cpu = ""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu or platform.processor(), "python": platform.python_version(),
            "torch": torch.__version__, "backend": "gloo", "threads_per_rank": 1}


def markdown(results: list[dict]) -> str:
    lines = ["| schedule | stages (layers@rank) | dip ms (median; min-max) | pytorch ms (median; min-max) "
             "| dip/pytorch | dip/pytorch CPU s | grad max rel err | loss dip / pytorch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        d, t = r["dip_ms"], r["pytorch_ms"]
        lines.append(f"| {r['schedule']} | {r['stages']} | {d['median']:.1f}; {d['min']:.1f}-{d['max']:.1f} "
                     f"| {t['median']:.1f}; {t['min']:.1f}-{t['max']:.1f} | {r['ratio']:.3f} | {r['cpu_ratio']:.3f} "
                     f"| {r['grad_max_rel_error']:.1e} | {r['dip_loss']:.6f} / {r['pytorch_loss']:.6f} |")
    return "\n".join(lines)


def action_markdown(results: list[dict]) -> str:
    """Mean ms per compute action of each kind (both ranks), and compute ms per step per rank."""
    lines = ["| schedule | F ms dip / pytorch | B ms dip / pytorch | I ms dip / pytorch | W ms dip / pytorch "
             "| compute per rank ms dip / pytorch |",
             "|---|---|---|---|---|---|"]
    for r in results:
        cells = []
        for kind in "FBIW":
            d, t = r["action_ms"]["dip"].get(kind), r["action_ms"]["pytorch"].get(kind)
            cells.append("-" if d is None and t is None else
                         f"{d if d is not None else float('nan'):.1f} / {t if t is not None else float('nan'):.1f}")
        busy = r["busy_ms_per_rank"]
        cells.append(f"{' '.join(f'{x:.0f}' for x in busy['dip'])} / {' '.join(f'{x:.0f}' for x in busy['pytorch'])}")
        lines.append(f"| {r['schedule']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(times: list[float]) -> dict:
    ms = [1e3 * t for t in times]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms), "all": ms}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", default=str(HERE / "models" / "tiny-lm-bench.json"),
                   help="a dip model file of one causal LM module (embedding, transformer blocks, head)")
    p.add_argument("--schedules", default=",".join(SCHEDULES), help=f"comma-separated subset of {','.join(SCHEDULES)}")
    p.add_argument("--pp", type=int, default=2, help="pipeline ranks (processes)")
    p.add_argument("--chunks", type=int, default=2, help="chunks per rank of 'interleaved'")
    p.add_argument("--partition", default="balanced", help="placement of the layers (dip's classic partitions)")
    p.add_argument("--microbatches", type=int, default=8)
    p.add_argument("--tokens", type=int, default=1024, help="tokens per microbatch (one causal sequence)")
    p.add_argument("--iterations", type=int, default=5, help="timed steps per runtime and schedule")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a rank may wait for a message")
    p.add_argument("--dip-plan", default=str(ROOT / "build" / "tools" / "dip-plan"), help="the dip-plan program")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    p.add_argument("--quick", action="store_true", help="tiny model, 4 microbatches of 32 tokens, 1 timed step")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import numpy  # noqa: F401 -- torch.distributed.pipelining exchanges shape metadata through it
        import torch
        from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime  # noqa: F401
    except ImportError as error:
        print(f"SKIP: torch (with numpy and torch.distributed.pipelining) is not installed ({error})")
        return 77
    import dip
    from dip.torch import LaunchError, launch

    schedules = args.schedules.split(",")
    unknown = [s for s in schedules if s not in SCHEDULES]
    if unknown or args.microbatches < 1 or args.iterations < 1 or args.pp < 2:
        print(f"torch_runtime_vs_pipelining: bad arguments (schedules {unknown} not among {SCHEDULES}, or "
              "--microbatches/--iterations < 1, or --pp < 2)", file=sys.stderr)
        return 2
    if not os.access(args.dip_plan, os.X_OK):
        print(f"torch_runtime_vs_pipelining: no dip-plan program at {args.dip_plan} (--dip-plan)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="dip-torch-bench-") as tmp:
        work = pathlib.Path(tmp)
        if args.quick:
            args.model = str(work / "tiny-lm-quick.json")
            pathlib.Path(args.model).write_text(json.dumps(QUICK_MODEL))
            args.microbatches, args.tokens, args.iterations = 4, 32, 1
        torch.set_num_threads(1)
        jobs, documents = [], {}
        try:
            for schedule in schedules:
                document, _ = plan_documents(args, schedule, work)
                plan_path = work / f"{schedule}.json"
                plan_path.write_text(json.dumps(document))
                jobs.append({"schedule": schedule, "plan": str(plan_path), "csv": str(work / f"{schedule}.csv")})
                documents[schedule] = document
        except (RuntimeError, dip.Error) as error:
            print(f"torch_runtime_vs_pipelining: {error}", file=sys.stderr)
            return 2

        options = {"tokens": args.tokens, "seed": args.seed, "iterations": args.iterations, "timeout": args.timeout,
                   "out": tmp}
        started, load_before = time.perf_counter(), os.getloadavg()
        try:
            ranks = launch(rank_worker, args.pp, (jobs, options), backend="gloo", timeout_s=args.timeout, threads=1)
        except LaunchError as error:
            print(f"torch_runtime_vs_pipelining: {error}", file=sys.stderr)
            return 2
        wall, load_after = time.perf_counter() - started, os.getloadavg()

        results, ok = [], True
        for schedule in schedules:
            per_rank = [r[schedule] for r in ranks]
            # A step's time: rank 0's, between barriers both ranks passed (so, the slower rank's).
            dip_ms, torch_ms = summary(per_rank[0]["times"]["dip"]), summary(per_rank[0]["times"]["pytorch"])
            abs_err, rel_err, worst, count = compare_gradients([r["gradients"] for r in per_rank])
            dip_loss = sum(r["dip_loss"] for r in per_rank)
            torch_loss = next(r["pytorch_loss"] for r in per_rank if r["pytorch_loss"] is not None)
            # CPU seconds of a step: both ranks' together (robust where other work shares the cores).
            cpu = {name: statistics.median([sum(r["cpu"][name][i] for r in per_rank)
                                            for i in range(len(per_rank[0]["cpu"][name]))])
                   for name in ("dip", "pytorch")}
            action_ms, busy = {}, {}
            for name in ("dip", "pytorch"):
                seconds, counts = {}, {}
                for r in per_rank:
                    for kind, value in r["actions"][name]["seconds"].items():
                        seconds[kind] = seconds.get(kind, 0.0) + value
                        counts[kind] = counts.get(kind, 0) + r["actions"][name]["counts"][kind]
                action_ms[name] = {k: 1e3 * seconds[k] / counts[k] for k in seconds}
                action_ms[name + "_per_rank"] = [
                    {k: 1e3 * v / r["actions"][name]["counts"][k] for k, v in r["actions"][name]["seconds"].items()}
                    for r in per_rank]
                busy[name] = [1e3 * sum(r["actions"][name]["seconds"].values()) / args.iterations for r in per_rank]
            chunks = documents[schedule]["placement"]["chunks"]
            stages = " ".join(f"{s['first_layer']}-{s['last_layer']}@r{c['rank']}"
                              for c in sorted(chunks, key=lambda c: c["position"]) for s in c["spans"])
            agree = rel_err <= GRADIENT_TOLERANCE and abs(dip_loss - torch_loss) <= GRADIENT_TOLERANCE * abs(torch_loss)
            ok &= agree
            results.append({"schedule": schedule, "stages": stages, "dip_ms": dip_ms, "pytorch_ms": torch_ms,
                            "ratio": dip_ms["median"] / torch_ms["median"],
                            "paired_ratio": statistics.median(
                                [a / b for a, b in zip(dip_ms["all"], torch_ms["all"])]),
                            "cpu_s": cpu, "cpu_ratio": cpu["dip"] / cpu["pytorch"],
                            "action_ms": action_ms, "busy_ms_per_rank": busy,
                            "dip_waited_in_compute_ms": [1e3 * r["dip_waited_s"] for r in per_rank],
                            "grad_max_abs_error": abs_err, "grad_max_rel_error": rel_err, "worst_parameter": worst,
                            "parameters": count, "dip_loss": dip_loss, "pytorch_loss": torch_loss,
                            "gradients_agree": agree})

    print(f"dip.torch vs torch.distributed.pipelining: {pathlib.Path(args.model).name}, pp {args.pp}, "
          f"{args.microbatches} microbatches x {args.tokens} tokens, median of {args.iterations} steps after "
          f"1 warm-up, gloo, 1 thread per rank ({wall:.0f} s; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after)")
    print(markdown(results))
    print("\nCompute actions of the timed steps (mean ms per action, both ranks; dip's message waits taken out):")
    print(action_markdown(results))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            "model": json.loads(pathlib.Path(args.model).read_text()) if not args.quick else QUICK_MODEL,
            "pp": args.pp, "chunks": args.chunks, "partition": args.partition, "microbatches": args.microbatches,
            "tokens": args.tokens, "iterations": args.iterations, "warmup": 1, "seed": args.seed,
            "machine": machine(), "wall_s": wall, "load_average_1_5_15": {"before": load_before, "after": load_after},
            "gradient_tolerance": GRADIENT_TOLERANCE, "results": results},
            indent=1))
    if not ok:
        print("torch_runtime_vs_pipelining: the runtimes' gradients or losses differ beyond "
              f"{GRADIENT_TOLERANCE:g} (relative)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
