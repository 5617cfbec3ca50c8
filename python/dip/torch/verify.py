"""`python -m dip.torch verify`: train a few steps with fresh dip plans on real torch ranks and
check every step against the sequential model.

    python -m dip.torch verify --model tiny-vlm --pp 2 --schedule dip --data TRACE.jsonl \\
        --microbatches 4 --steps 3 --seed 1

For each step the planner (one dip.Planner for the run, as a trainer holds it) plans the next
batch of the data source with the schedule; the plan's executable form (action-list JSON
version 2) goes to `--pp` rank processes launched on this machine (gloo on CPU), which run it
with dip.torch's runtime, take an SGD step, and report their loss and gradients. A single
process runs the same model on the same batch sequentially (model.py's rules) and takes the
same SGD step. The step's loss and every parameter's gradient must agree within the tolerance:

- float32 (default): |pipelined - sequential| <= 1e-4 x max|sequential| per gradient tensor, and
  the same for the loss. The two runs add the same terms in a different order: a pipeline sums
  a layer's weight gradient over sub-microbatches (images split among encoder sub-microbatches
  become separate matrix products), the sequential run over all items in one product; attention
  over one segment gives the same result whether other segments share its call only up to
  rounding. Each such sum of n terms moves by at most about n x 2^-24 of the sum of magnitudes;
  with a few thousand rows per product that is below 1e-4, and a wrong plan (a missing
  microbatch, a gradient sent to the wrong sub-microbatch, a stale weight) is off by far more
  (tests/ check that injected mistakes fail).
- float64 (`--dtype float64`): 1e-10.
Exits 0 when every step of every schedule is within the tolerance, 1 when one is not, 2 for bad
arguments, 3 when a rank fails (the message names the rank and the action).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import torch

from .launch import LaunchError, default_backend, launch
from .model import ReferenceModel
from .plan import ExecutablePlan
from .runtime import PipelineRank
from .sequential import SequentialModel

TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


def _dip():
    import dip  # the C++ planner's bindings; imported late so `--help` works without them

    return dip


def _rank_worker(rank: int, world_size: int, runs: list[tuple[str, list[str]]], options: dict) -> dict:
    """One rank: for each schedule, a fresh model runs every step's plan, with SGD after each;
    the rank saves its gradients for the check. One launch serves every schedule."""
    dtype = getattr(torch, options["dtype"])
    fault = None
    if options.get("fault") and options["fault"]["rank"] == rank:
        fault = (options["fault"]["kind"], options["fault"]["action"])
    results = {}
    for schedule, plan_files in runs:
        plans = [ExecutablePlan(json.loads(pathlib.Path(f).read_text())) for f in plan_files]
        device = torch.device("cuda", torch.cuda.current_device()) if options["backend"] == "nccl" else None
        model = ReferenceModel(plans[0].document["model"], seed=options["seed"], dtype=dtype, device=device)
        runner = PipelineRank(rank, model, plans[0], device=device, dtype=dtype, timeout_s=options["timeout"],
                              backend=options["backend"], fault=fault)
        steps = []
        for index, plan in enumerate(plans):
            try:
                report = runner.step(plan, index)
            except Exception as error:
                raise type(error)(f"schedule {schedule} step {index}: {error}") from error
            grads = {name: p.grad.detach().cpu().clone() for name, p in runner.named_parameters()}
            path = pathlib.Path(options["out"]) / f"{schedule}-rank{rank}-step{index}.pt"
            torch.save(grads, path)
            with torch.no_grad():
                for _, p in runner.named_parameters():
                    p -= options["lr"] * p.grad
            steps.append({"loss": report.loss, "seconds": report.seconds, "compute_seconds": report.compute_seconds,
                          "peak_activation_bytes": report.peak_activation_bytes,
                          "peak_offloaded_bytes": report.peak_offloaded_bytes, "gradients": str(path)})
        results[schedule] = steps
    return results


def _compare(sequential: dict[str, torch.Tensor], pipelined: dict[str, torch.Tensor]) -> tuple[float, float, str]:
    """Largest absolute error, largest error relative to the tensor's scale, and the worst tensor."""
    missing = sorted(set(sequential) ^ set(pipelined))
    if missing:
        raise ValueError(f"parameters not in both runs: {missing[:5]}")
    worst_abs, worst_rel, worst = 0.0, 0.0, ""
    for name, expected in sequential.items():
        got = pipelined[name].to(expected.dtype)
        error = float((got - expected).abs().max()) if expected.numel() else 0.0
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        relative = error / scale if scale > 0 else (0.0 if error == 0 else float("inf"))
        worst_abs = max(worst_abs, error)
        if relative > worst_rel:
            worst_rel, worst = relative, name
    return worst_abs, worst_rel, worst


def plan_steps(args, schedule: str, batches: list) -> list[dict]:
    """The executable plans of every step, from one planner (placements fixed for the run)."""
    dip = _dip()
    model = _load_model(args.model)
    cap = args.memory_cap_gib
    planner_args = dict(pp=args.pp, search_ms=args.search_ms, search_rollouts=args.search_rollouts,
                        seed=args.seed, threads=1, chunks=args.chunks, memory_strategies=not args.keep_everything,
                        fit_memory=not args.keep_everything, sub_microbatch_size=args.sub_microbatch_size)
    if args.memory_cap_fraction is not None:
        # A cap between the weights and the uncapped plan's peak: it makes the plan recompute
        # or offload some activations (tiny models never come near a real GPU's memory).
        free = dip.Planner(model, **planner_args).plan(batches[0], schedule, index=0)
        peaks = free.peak_memory_bytes_per_rank
        weights = free.weight_memory_bytes_per_rank
        worst = max(range(len(peaks)), key=lambda r: peaks[r] - weights[r])
        cap = (weights[worst] + args.memory_cap_fraction * (peaks[worst] - weights[worst])) / 2**30
    planner = dip.Planner(model, memory_cap_gib=cap, **planner_args)
    return [planner.plan(batch, schedule, index=i).executable() for i, batch in enumerate(batches)]


def _load_model(name: str):
    dip = _dip()
    if name in dip.presets():
        return dip.Model.preset(name)
    return dip.Model.from_json(name)


def _plan_summary(documents: list[dict]) -> tuple[dict, dict]:
    """How many forwards keep, recompute or offload; the most sub-microbatches per module."""
    strategies, most_subs = {}, {}
    for document in documents:
        for rank in document["ranks"]:
            for action in rank["actions"]:
                if action["op"] == "compute" and action["kind"] == "F":
                    strategies[action["strategy"]] = strategies.get(action["strategy"], 0) + 1
        names = [m["name"] for m in document["model"]["modules"]]
        for mb in document["batch"]["microbatches"]:
            for name, subs in zip(names, mb["subs"]):
                most_subs[name] = max(most_subs.get(name, 0), len(subs))
    return strategies, most_subs


def sequential_steps(args, documents: list[dict]) -> list[tuple[float, dict[str, torch.Tensor]]]:
    """The sequential model's loss and gradients at every step (with the same SGD steps)."""
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(1)
    reference = SequentialModel(ReferenceModel(documents[0]["model"], seed=args.seed, dtype=dtype),
                                documents[0]["model"]["modules"])
    out = []
    for index, document in enumerate(documents):
        loss = reference.step(document["batch"]["microbatches"], index)
        out.append((loss, {name: p.grad.detach().clone() for name, p in reference.named_parameters()}))
        with torch.no_grad():
            for _, p in reference.named_parameters():
                p -= args.lr * p.grad
    return out


def check_schedule(args, schedule: str, documents: list[dict], rank_steps: list[list[dict]],
                   expected: list[tuple[float, dict[str, torch.Tensor]]], seconds: float) -> dict:
    strategies, most_subs = _plan_summary(documents)
    tolerance = args.tolerance if args.tolerance is not None else TOLERANCE[args.dtype]
    steps, ok = [], True
    for index in range(len(documents)):
        expected_loss, expected_grads = expected[index]
        got = {}
        for r in rank_steps:
            got.update(torch.load(r[index]["gradients"]))
        loss = sum(r[index]["loss"] for r in rank_steps)
        abs_error, rel_error, worst = _compare(expected_grads, got)
        loss_error = abs(loss - expected_loss) / max(abs(expected_loss), 1e-30)
        step_ok = rel_error <= tolerance and loss_error <= tolerance
        ok &= step_ok
        steps.append({"step": index, "loss": loss, "sequential_loss": expected_loss, "loss_relative_error": loss_error,
                      "max_abs_error": abs_error, "max_rel_error": rel_error, "worst_parameter": worst,
                      "ok": step_ok, "seconds": max(r[index]["seconds"] for r in rank_steps),
                      "peak_activation_bytes": [r[index]["peak_activation_bytes"] for r in rank_steps],
                      "peak_offloaded_bytes": [r[index]["peak_offloaded_bytes"] for r in rank_steps]})
    return {"schedule": schedule, "ok": ok, "tolerance": tolerance, "strategies": strategies,
            "most_sub_microbatches": most_subs, "steps": steps, "seconds": seconds}


def verify(args, schedules: list[str], batches: list, out: pathlib.Path) -> tuple[list[dict], int]:
    """Plans every schedule, runs them all in one launch of the ranks, checks each against the
    sequential model. Returns the per-schedule results and the exit status."""
    dip = _dip()
    results, status, planned = [], 0, {}
    for schedule in schedules:
        try:
            documents = plan_steps(args, schedule, batches)
        except dip.Error as error:
            print(f"dip.torch verify: {schedule}: planning failed: {error}", file=sys.stderr)
            results.append({"schedule": schedule, "ok": False, "error": str(error)})
            status = 1
            continue
        files = []
        for i, document in enumerate(documents):
            path = out / f"{schedule}-plan{i}.json"
            path.write_text(json.dumps(document))
            files.append(str(path))
        planned[schedule] = (documents, files)
    if not planned:
        return results, status

    options = {"dtype": args.dtype, "seed": args.seed, "lr": args.lr, "timeout": args.timeout, "out": str(out),
               "fault": args.fault, "backend": args.backend or default_backend()}
    runs = [(schedule, files) for schedule, (_, files) in planned.items()]
    started = time.perf_counter()
    try:
        ranks = launch(_rank_worker, args.pp, (runs, options), backend=args.backend, timeout_s=args.timeout)
    except LaunchError as error:
        print(f"dip.torch verify: {error}", file=sys.stderr)
        results.extend({"schedule": s, "ok": False, "error": str(error)} for s in planned)
        return results, 3
    seconds = time.perf_counter() - started

    expected = sequential_steps(args, next(iter(planned.values()))[0])
    for schedule, (documents, _) in planned.items():
        result = check_schedule(args, schedule, documents, [r[schedule] for r in ranks], expected, seconds)
        results.append(result)
        _print(args, result)
        if not result["ok"]:
            status = max(status, 1)
    return results, status


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dip.torch verify", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-vlm", help="a model preset (tiny-vlm, tiny-t2v, ...) or a model file")
    p.add_argument("--pp", type=int, default=2, help="pipeline ranks (processes)")
    p.add_argument("--schedule", default="dip",
                   help="a schedule name, a comma-separated list, or 'all' (every schedule dip has)")
    p.add_argument("--data", default="obelics", help="a trace (.jsonl) or a batch source name (dip.batch_sources())")
    p.add_argument("--microbatches", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.05, help="SGD step after each iteration (both runs)")
    p.add_argument("--dtype", choices=sorted(TOLERANCE), default="float32")
    p.add_argument("--tolerance", type=float, default=None, help="override the dtype's tolerance")
    p.add_argument("--chunks", type=int, default=2, help="chunks per rank of 'interleaved'")
    p.add_argument("--search-ms", type=float, default=0.0)
    p.add_argument("--search-rollouts", type=int, default=16)
    p.add_argument("--sub-microbatch-size", type=int, default=None,
                   help="items per encoder sub-microbatch (default: the partitioner's)")
    p.add_argument("--memory-cap-gib", type=float, default=None, help="memory per rank the plan must fit")
    p.add_argument("--memory-cap-fraction", type=float, default=None,
                   help="cap at weights + this fraction of the uncapped plan's activations (forces recompute/offload)")
    p.add_argument("--keep-everything", action="store_true", help="plan without memory strategies (keep all)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds a receive may wait before the rank fails")
    p.add_argument("--backend", choices=["gloo", "nccl"], default=None, help="default: nccl with a GPU, else gloo")
    p.add_argument("--inject-fault", default=None, metavar="KIND:RANK:ACTION",
                   help="for tests: 'raise:1:5' makes rank 1 raise at its action 5; 'drop-send:0:3' makes rank 0's "
                        "action 3 (a send) never leave")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON ('-': stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    dip = _dip()
    try:
        model = _load_model(args.model)
        known = list(dip.Planner(model, pp=args.pp).schedules)
        schedules = known if args.schedule == "all" else args.schedule.split(",")
        for s in schedules:
            if s not in known:
                raise ValueError(f"--schedule: unknown schedule '{s}' (known: {', '.join(known)})")
        if args.pp < 1 or args.microbatches < 1 or args.steps < 1:
            raise ValueError("--pp, --microbatches and --steps must be >= 1")
        args.fault = None
        if args.inject_fault:
            kind, rank, action = args.inject_fault.split(":")
            if kind not in ("raise", "drop-send"):
                raise ValueError(f"--inject-fault: unknown kind '{kind}' (raise, drop-send)")
            args.fault = {"kind": kind, "rank": int(rank), "action": int(action)}
        data = args.data if not os.path.exists(args.data) else str(pathlib.Path(args.data).resolve())
        source = dip.BatchSource(data, model, args.seed)
        batches = [source.next_batch(args.microbatches) for _ in range(args.steps)]
    except (ValueError, dip.Error) as error:
        print(f"dip.torch verify: {error}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="dip-torch-verify-") as out:
        results, status = verify(args, schedules, batches, pathlib.Path(out))
    if args.json:
        text = json.dumps({"model": args.model, "pp": args.pp, "dtype": args.dtype, "results": results}, indent=1)
        if args.json == "-":
            print(text)
        else:
            pathlib.Path(args.json).write_text(text)
    return status


def _print(args, result: dict) -> None:
    strategies = ", ".join(f"{k} {v}" for k, v in sorted(result["strategies"].items()))
    subs = ", ".join(f"{k} {v}" for k, v in result["most_sub_microbatches"].items())
    print(f"{result['schedule']}: {args.model}, pp {args.pp}, {args.microbatches} microbatches, {args.dtype} "
          f"(tolerance {result['tolerance']:g}); forwards: {strategies}; most sub-microbatches: {subs}")
    for s in result["steps"]:
        peaks = " ".join(f"{b / 1024:.0f}" for b in s["peak_activation_bytes"])
        print(f"  step {s['step']}: loss {s['loss']:.6f} (sequential {s['sequential_loss']:.6f}), "
              f"max abs err {s['max_abs_error']:.2e}, max rel err {s['max_rel_error']:.2e} "
              f"[{s['worst_parameter']}], peak activations KiB/rank {peaks} -> {'ok' if s['ok'] else 'FAIL'}")
