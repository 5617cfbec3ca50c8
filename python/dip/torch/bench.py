"""python -m dip.torch bench: dip's plans measured on torch ranks against what dip predicts.

For a model, a data source and schedules (default: dip, static-dip, optimus, 1f1b, interleaved,
zb1p, gpipe), this
1. calibrates: every rank times the model's layers on calibration batches (calibrate.py) and
   ranks 0 and 1 time messages; dip.ProfiledCosts is fitted on the layers, the link's latency
   and bandwidth on the messages (or --calibration FILE reuses a saved calibration);
2. plans the benchmark's batches (other batches than the calibration's) with every schedule on
   one dip.Planner with that cost model and link;
3. runs each schedule's plans on `pp` processes (one torch thread each), `--warmup` iterations
   then `--iterations` measured ones over the batches, every step starting at a barrier;
4. reports per schedule and batch the measured iteration time (median, min, max over
   iterations; an iteration's time is its slowest rank's) beside the simulated makespan, their
   ratio, each rank's measured peak activation memory beside the predicted one, and dip's
   measured speedup over every other schedule beside the simulated speedup.

--json FILE writes all of it; --trace DIR writes, per schedule, Chrome traces (chrome://tracing,
ui.perfetto.dev) of one measured iteration and of its simulation: per rank, compute, send and
recv spans. Exit status: 0 ok, 2 bad arguments, 3 a rank failed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist

from .calibrate import Calibration, fit_run_scales, measure_link, profile_layers, run_plans
from .launch import LaunchError, launch
from .model import ReferenceModel
from .plan import ExecutablePlan
from .runtime import PipelineRank

DEFAULT_SCHEDULES = ("dip", "static-dip", "optimus", "1f1b", "interleaved", "zb1p", "gpipe")
COMPARED = ("1f1b", "interleaved", "static-dip")  # the speedup targets; every baseline is reported


def _dip():
    import dip  # the planner's bindings; imported late so that --help works without them

    return dip


def _say(message: str) -> None:
    print(f"[dip.torch bench] {message}", file=sys.stderr, flush=True)


# --- calibration --------------------------------------------------------------------------------

def calibration_plans(model, batches: list, sizes: tuple[int, ...], search_ms: float) -> list[dict]:
    """One-rank plans of the calibration batches: dip's split at each sub-microbatch size (so
    that layers are seen at many sizes), and the whole microbatches (gpipe)."""
    dip = _dip()
    documents = []
    for size in sizes:
        planner = dip.Planner(model, pp=1, search_ms=search_ms, threads=1, sub_microbatch_size=size)
        documents += [planner.plan(b, "dip", index=i).executable() for i, b in enumerate(batches)]
    planner = dip.Planner(model, pp=1, threads=1)
    documents += [planner.plan(b, "gpipe", index=i).executable() for i, b in enumerate(batches)]
    return documents


IN_RUN_SCHEDULES = ("1f1b", "zb1p", "dip")  # B, I and W at whole and split sizes


def _load_plans(files: list[str]) -> list[ExecutablePlan]:
    return [ExecutablePlan(json.loads(pathlib.Path(f).read_text())) for f in files]


def _layers_worker(rank: int, world_size: int, layer_files: list[str], options: dict) -> dict:
    say = _say if rank == 0 else None
    groups = profile_layers(_load_plans(layer_files), samples_per_layer=options["samples"],
                            repeats=options["repeats"], seed=options["seed"], progress=say)
    link = measure_link(rank) if world_size > 1 else None
    return {"groups": groups, "link": link}


def _in_run_worker(rank: int, world_size: int, run_files: list[str], options: dict) -> list:
    return run_plans(rank, _load_plans(run_files), seed=options["seed"], timeout_s=options["timeout"],
                     repeats=options["run_repeats"])


def _write(documents: list[dict], out: pathlib.Path, prefix: str) -> list[str]:
    files = []
    for i, document in enumerate(documents):
        path = out / f"{prefix}{i}.json"
        path.write_text(json.dumps(document))
        files.append(str(path))
    return files


def calibrate(args, model, batches: list, out: pathlib.Path) -> Calibration:
    """Layers alone (every rank at once) and the link; then the plans that the layers' prices
    make, timed action by action on fresh rank processes (as fresh as the benchmark's: what a
    process's allocator holds changes a step's time by several percent), for the in-run factors
    and the stage overhead (see calibrate.py)."""
    dip = _dip()
    layer_files = _write(calibration_plans(model, batches, tuple(args.calibration_sizes), args.search_ms), out,
                         "calibration-layers")
    options = {"samples": args.samples_per_layer, "repeats": args.repeats, "seed": args.seed, "timeout": args.timeout,
               "run_repeats": max(1, min(4, args.repeats))}  # in-run steps per plan, round-robin
    ranks = launch(_layers_worker, args.pp, (layer_files, options), timeout_s=args.timeout, threads=args.threads)
    calibration = Calibration.merge(args.model, [r["groups"] for r in ranks], ranks[0]["link"], machine())
    unscaled = calibration.costs(scaled=False)

    # Plans like the benchmark's (the same planner options, the layers' prices): the in-run
    # factors are fitted on the shapes of actions they will correct.
    planner = dip.Planner(model, pp=args.pp, threads=1, search_ms=args.search_ms, chunks=args.chunks,
                          balance="batch", tuning_batches=batches, costs=unscaled, **calibration.link_options())
    run_files = _write([planner.plan(b, s, index=i).executable() for s in IN_RUN_SCHEDULES
                        for i, b in enumerate(batches)], out, "calibration-run")
    _say(f"timing the actions of {len(run_files)} plans in the run")
    actions = launch(_in_run_worker, args.pp, (run_files, options), timeout_s=args.timeout, threads=args.threads)

    def price(module: str, layer: int, work: dict) -> dict:
        return unscaled.cost(model, module, layer, work)

    factors = fit_run_scales(_load_plans(run_files), actions, price)
    calibration.scales = {f"{module}/{part}": factor for (module, part), factor in sorted(factors.items())}
    _say("in-run factors: " + ", ".join(f"{k} {v:.3f}" for k, v in calibration.scales.items()))
    return calibration


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__}


# --- planning -----------------------------------------------------------------------------------

def _activation_bytes(plan) -> list[int]:
    """Predicted activation memory per rank: the simulated peak less the weights' memory."""
    return [int(p - w) for p, w in zip(plan.peak_memory_bytes_per_rank, plan.weight_memory_bytes_per_rank)]


def _simulated_spans(plan) -> list[list[tuple[str, str, float, float]]]:
    return [[(a.kind, a.label, a.start_ms / 1e3, a.end_ms / 1e3) for a in actions] for actions in plan.ranks]


def plan_all(args, model, calibration: Calibration, schedules: list[str], batches: list, out: pathlib.Path) -> dict:
    """Per schedule: the plan files and, per batch, the simulated time, activation memory and spans."""
    dip = _dip()
    # The classic schedules' placement is balanced for these batches, not for DESIGN.md's uniform
    # 8192-token microbatch (far from a small model's packed trace): the best static split here.
    planner = dip.Planner(model, pp=args.pp, threads=1, search_ms=args.search_ms, chunks=args.chunks,
                          costs=calibration.costs(), balance="batch", tuning_batches=batches,
                          **calibration.link_options())
    planned = {}
    for schedule in schedules:
        files, simulated = [], []
        for i, batch in enumerate(batches):
            plan = planner.plan(batch, schedule, index=i)
            path = out / f"{schedule}-plan{i}.json"
            path.write_text(json.dumps(plan.executable()))
            files.append(str(path))
            simulated.append({"makespan_ms": plan.makespan_ms, "activation_bytes": _activation_bytes(plan),
                              "spans": _simulated_spans(plan), "bubble_ratio": plan.bubble_ratio})
        planned[schedule] = {"files": files, "simulated": simulated}
    return planned


# --- running ------------------------------------------------------------------------------------

def _run_worker(rank: int, world_size: int, runs: list[tuple[str, list[str]]], options: dict) -> dict:
    """Every schedule's runner (a fresh model each) is built first; then each iteration runs every
    schedule over the batches in turn, so that a slow spell of the machine (these are shared)
    falls on all schedules alike rather than on whichever ran then."""
    runners = {}
    for schedule, files in runs:
        plans = [ExecutablePlan(json.loads(pathlib.Path(f).read_text())) for f in files]
        model = ReferenceModel(plans[0].document["model"], seed=options["seed"])
        runners[schedule] = (plans, PipelineRank(rank, model, plans[0], timeout_s=options["timeout"]))
    results = {schedule: {"seconds": [[] for _ in plans], "peak_activation_bytes": [0 for _ in plans], "spans": None}
               for schedule, (plans, _) in runners.items()}
    total = options["warmup"] + options["iterations"]
    for iteration in range(total):
        for schedule, (plans, runner) in runners.items():
            result = results[schedule]
            for b, plan in enumerate(plans):
                dist.barrier()
                report = runner.step(plan, b)
                if iteration >= options["warmup"]:
                    result["seconds"][b].append(report.seconds)
                    result["peak_activation_bytes"][b] = max(result["peak_activation_bytes"][b],
                                                             report.peak_activation_bytes)
                    if result["spans"] is None:
                        result["spans"] = report.spans
        if rank == 0:
            _say(f"iteration {iteration + 1}/{total} ({'warm-up' if iteration < options['warmup'] else 'measured'})")
    return results


def run_all(args, planned: dict) -> dict:
    runs = [(schedule, p["files"]) for schedule, p in planned.items()]
    options = {"seed": args.seed, "timeout": args.timeout, "warmup": args.warmup, "iterations": args.iterations}
    ranks = launch(_run_worker, args.pp, (runs, options), timeout_s=args.timeout, threads=args.threads)
    return {schedule: [r[schedule] for r in ranks] for schedule in planned}


# --- the report ---------------------------------------------------------------------------------

def summarize(planned: dict, measured: dict) -> dict:
    """Per schedule and batch: measured (slowest rank per iteration) against simulated."""
    schedules = {}
    for schedule, p in planned.items():
        per_rank = measured[schedule]
        batches = []
        for b, simulated in enumerate(p["simulated"]):
            iterations = [max(r["seconds"][b][i] for r in per_rank) * 1e3 for i in range(len(per_rank[0]["seconds"][b]))]
            median = statistics.median(iterations)
            memory = [r["peak_activation_bytes"][b] for r in per_rank]
            batches.append({
                "batch": b, "measured_ms": {"median": median, "min": min(iterations), "max": max(iterations)},
                "simulated_ms": simulated["makespan_ms"], "ratio": median / simulated["makespan_ms"],
                "activation_bytes": {"measured": memory, "predicted": simulated["activation_bytes"],
                                     "ratio": [m / p if p > 0 else float("nan")
                                               for m, p in zip(memory, simulated["activation_bytes"])]}})
        schedules[schedule] = {
            "batches": batches,
            "measured_ms": sum(b["measured_ms"]["median"] for b in batches),
            "simulated_ms": sum(b["simulated_ms"] for b in batches),
        }
    ratios = [b["ratio"] for s in schedules.values() for b in s["batches"]]
    memory_ratios = [r for s in schedules.values() for b in s["batches"] for r in b["activation_bytes"]["ratio"]
                     if r == r]
    summary = {"schedules": schedules,
               "mean_abs_time_error": statistics.mean(abs(r - 1) for r in ratios),
               "max_abs_time_error": max(abs(r - 1) for r in ratios),
               "mean_abs_memory_error": statistics.mean(abs(r - 1) for r in memory_ratios) if memory_ratios else None,
               "max_abs_memory_error": max(abs(r - 1) for r in memory_ratios) if memory_ratios else None}
    if "dip" in schedules:
        dip_s = schedules["dip"]
        summary["speedups"] = {
            other: {"measured": s["measured_ms"] / dip_s["measured_ms"],
                    "simulated": s["simulated_ms"] / dip_s["simulated_ms"],
                    "difference": (s["measured_ms"] / dip_s["measured_ms"]) / (s["simulated_ms"] / dip_s["simulated_ms"])
                    - 1}
            for other, s in schedules.items() if other != "dip"}
    return summary


def chrome_trace(spans_per_rank: list[list[tuple[str, str, float, float]]], name: str) -> dict:
    """Chrome trace events: a process per rank, a thread per category (compute, send, recv)."""
    events = []
    threads = {"compute": 0, "send": 1, "recv": 2}
    for rank, spans in enumerate(spans_per_rank):
        events.append({"name": "process_name", "ph": "M", "pid": rank, "args": {"name": f"{name} rank {rank}"}})
        for category, tid in threads.items():
            events.append({"name": "thread_name", "ph": "M", "pid": rank, "tid": tid, "args": {"name": category}})
        for category, label, start, end in spans:
            events.append({"name": label, "cat": category, "ph": "X", "pid": rank, "tid": threads.get(category, 0),
                           "ts": start * 1e6, "dur": max(0.0, end - start) * 1e6})
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_traces(directory: pathlib.Path, planned: dict, measured: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for schedule in planned:
        measured_spans = [r["spans"] or [] for r in measured[schedule]]
        (directory / f"{schedule}-measured.json").write_text(json.dumps(chrome_trace(measured_spans, f"{schedule} measured")))
        simulated = planned[schedule]["simulated"][0]["spans"]
        (directory / f"{schedule}-simulated.json").write_text(json.dumps(chrome_trace(simulated, f"{schedule} simulated")))


def print_report(result: dict, out=sys.stdout) -> None:
    summary = result["summary"]
    print(f"model {result['model']}, pp {result['pp']}, {result['batches']} batches x {result['microbatches']} "
          f"microbatches, {result['iterations']} iterations (+{result['warmup']} warm-up)", file=out)
    if result.get("link"):
        print(f"link: {result['link']['latency_us']:.1f} us + {result['link']['gbps']:.2f} GB/s", file=out)
    print(f"{'schedule':<12} {'measured ms':>12} {'min':>9} {'max':>9} {'simulated':>10} {'ratio':>7}  "
          f"{'act. memory measured/predicted per rank'}", file=out)
    for schedule, s in summary["schedules"].items():
        for b in s["batches"]:
            memory = " ".join(f"{r:.3f}" for r in b["activation_bytes"]["ratio"])
            print(f"{schedule:<12} {b['measured_ms']['median']:>12.1f} {b['measured_ms']['min']:>9.1f} "
                  f"{b['measured_ms']['max']:>9.1f} {b['simulated_ms']:>10.1f} {b['ratio']:>7.3f}  {memory}", file=out)
    print(f"mean |measured/simulated - 1| = {summary['mean_abs_time_error']:.3f} "
          f"(max {summary['max_abs_time_error']:.3f}); activation memory: mean "
          f"{summary['mean_abs_memory_error'] or 0:.3f} (max {summary['max_abs_memory_error'] or 0:.3f})", file=out)
    for other, s in summary.get("speedups", {}).items():
        print(f"dip over {other:<12} measured {s['measured']:.3f}x  simulated {s['simulated']:.3f}x  "
              f"({100 * s['difference']:+.1f}%)", file=out)


# --- command line -------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dip.torch bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="small-vlm", help="a model preset (small-vlm, small-t2v, tiny-vlm, ...)")
    p.add_argument("--data", default=None,
                   help="a trace (.jsonl) or a batch source name (default: obelics for VLMs, video for T2V)")
    p.add_argument("--pp", type=int, default=2, help="pipeline ranks (processes)")
    p.add_argument("--schedules", default=",".join(DEFAULT_SCHEDULES), help="comma-separated, or 'all'")
    p.add_argument("--microbatches", type=int, default=4)
    p.add_argument("--batches", type=int, default=2, help="batches to plan and run")
    p.add_argument("--iterations", type=int, default=5, help="measured iterations over the batches")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured iterations first")
    p.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--chunks", type=int, default=2, help="chunks per rank of 'interleaved'")
    p.add_argument("--search-ms", type=float, default=200.0, help="dip's search per batch")
    p.add_argument("--calibration", default=None, metavar="FILE", help="reuse a saved calibration")
    p.add_argument("--save-calibration", default=None, metavar="FILE", help="save the calibration as JSON")
    p.add_argument("--calibration-batches", type=int, default=2)
    p.add_argument("--calibration-sizes", default="1,4,12",
                   help="sub-microbatch sizes of the calibration plans (whole microbatches too)")
    p.add_argument("--samples-per-layer", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of each layer sample")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a receive may wait before the rank fails")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON ('-': stdout)")
    p.add_argument("--trace", default=None, metavar="DIR", help="write measured and simulated Chrome traces")
    return p


def _batches(args, model) -> tuple[list, list]:
    dip = _dip()
    data = args.data or ("video" if model.kind == "text-to-video" else "obelics")
    if os.path.exists(data):
        data = str(pathlib.Path(data).resolve())
    source = dip.BatchSource(data, model, args.seed)
    runs = [source.next_batch(args.microbatches) for _ in range(args.batches)]
    calibration = [source.next_batch(args.microbatches) for _ in range(args.calibration_batches)]
    args.data = data
    return runs, calibration


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    dip = _dip()
    try:
        model = dip.Model.preset(args.model) if args.model in dip.presets() else dip.Model.from_json(args.model)
        known = list(dip.Planner(model, pp=args.pp).schedules)
        schedules = known if args.schedules == "all" else [s for s in args.schedules.split(",") if s]
        for s in schedules:
            if s not in known:
                raise ValueError(f"--schedules: unknown schedule '{s}' (known: {', '.join(known)})")
        for name in ("pp", "microbatches", "batches", "iterations", "threads", "samples_per_layer", "repeats"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if args.warmup < 0:
            raise ValueError("--warmup must be >= 0")
        args.calibration_sizes = [int(s) for s in args.calibration_sizes.split(",") if s]
        if any(s < 1 for s in args.calibration_sizes):
            raise ValueError("--calibration-sizes must be >= 1")
        batches, calibration_batches = _batches(args, model)
    except (ValueError, dip.Error) as error:
        print(f"dip.torch bench: {error}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dip-torch-bench-") as tmp:
        out = pathlib.Path(tmp)
        try:
            if args.calibration:
                calibration = Calibration.load(args.calibration)
            else:
                _say(f"calibrating {args.model} on {args.pp} ranks")
                calibration = calibrate(args, model, calibration_batches, out)
            if args.save_calibration:
                calibration.save(args.save_calibration)
            _say(f"planning {len(schedules)} schedules x {len(batches)} batches")
            planned = plan_all(args, model, calibration, schedules, batches, out)
            _say("running")
            measured = run_all(args, planned)
        except LaunchError as error:
            print(f"dip.torch bench: {error}", file=sys.stderr)
            return 3
        except dip.Error as error:
            print(f"dip.torch bench: {error}", file=sys.stderr)
            return 2
    result = {"model": args.model, "data": args.data, "pp": args.pp, "microbatches": args.microbatches,
              "batches": args.batches, "iterations": args.iterations, "warmup": args.warmup, "threads": args.threads,
              "machine": calibration.machine or machine(), "link": calibration.link,
              "fits": getattr(calibration, "reports", []), "summary": summarize(planned, measured),
              "seconds": time.perf_counter() - started}
    print_report(result)
    if args.trace:
        write_traces(pathlib.Path(args.trace), planned, measured)
    if args.json:
        text = json.dumps(result, indent=1)
        if args.json == "-":
            print(text)
        else:
            pathlib.Path(args.json).write_text(text)
    return 0
