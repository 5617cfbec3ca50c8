#!/usr/bin/env python3
"""dip's evaluation suite: every table and plot of bench/RESULTS.md from one command.

  python3 bench/dip_bench.py [--quick] [--out DIR] [--build DIR]

Sections (bench/README.md says what each measures): the schedule matrix (presets x data x
schedules), the ablation in the paper's order, the dynamic workload, the sub-microbatch size,
pipeline depth and search budget sweeps, the planner's cost at scale, the micro-benchmarks, a
1F1B-vs-dip timeline, and, where an interpreter with torch is found (--torch-python), dip's plans
measured on torch ranks against the simulation (`python -m dip.torch bench`). Writes CSV/JSON
per section and results.md (all tables) under --out (default bench/results), then the plots
(PNG) with matplotlib, if importable, into --images (default docs/images for the default --out,
else OUT/images). Exits non-zero when a program fails or a table comes out empty or malformed.
--quick runs every section on fewer models, iterations and microbatches (under 2 minutes on 2
cores; ctest -L bench runs it).
"""
import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dip_bench_runner import Jobs, JobFailed, write_json  # noqa: E402
import dip_bench_sections as sections  # noqa: E402
from dip_bench_measured import Measured, find_torch_python  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(HERE, "results")

SECTIONS = {"main": sections.MainComparison, "ablation": sections.Ablation, "dynamic": sections.DynamicWorkload,
            "sub-microbatch": sections.SubMicrobatchSweep, "pipeline": sections.PipelineSweep,
            "search-curve": sections.SearchCurve, "scale": sections.Scale, "planner-cost": sections.PlannerCost,
            "micro": sections.MicroBenchmarks, "timeline": sections.Timeline, "measured": Measured}
# The sections that run dip-plan; the others need only their own programs (or a torch interpreter).
NEEDS_DIP_PLAN = ("main", "ablation", "dynamic", "sub-microbatch", "pipeline", "scale", "planner-cost", "timeline")

# What a finished run must have produced: each CSV with at least one data row and these columns.
EXPECTED_CSV = {"main": ("main.csv", ["model", "data", "schedule", "mean_iteration_ms", "mfu", "dip_speedup"]),
                "ablation": ("ablation.csv", ["step", "iteration_ms", "speedup_vs_step1"]),
                "dynamic": ("dynamic.csv", ["iteration", "mean_images", "dip", "1f1b"]),
                "sub-microbatch": ("sweep_sub_microbatch.csv", ["requested_b", "b", "mean_iteration_ms"]),
                "pipeline": ("sweep_pipeline.csv", ["pp", "microbatches", "dip_ms"]),
                "search-curve": ("search_curve.csv", ["threads", "budget_ms", "makespan_ms"]),
                "scale": ("scale.csv", ["config", "pp", "microbatches", "plan_ms", "peak_rss_mib"]),
                "planner-cost": ("planner_cost.csv", ["pp", "microbatches", "threads", "plan_ms", "iteration_ms"]),
                "measured": ("measured.csv", ["model", "schedule", "batch", "measured_median_ms", "measured_min_ms",
                                              "measured_max_ms", "simulated_ms", "ratio", "memory_ratio_max"])}
# Exit status of a run whose explicitly requested `measured` section finds no torch: ctest's skip
# (cmake/DipTorchTests.cmake), a failure everywhere else.
NO_TORCH = 77


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every section, smaller (CI)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="folder for CSV/JSON/results.md (default bench/results)")
    ap.add_argument("--images", default=None, help="folder for the PNG plots (default docs/images, or OUT/images "
                                                    "when --out is given)")
    ap.add_argument("--no-plots", action="store_true", help="skip the plots")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="the CMake build folder to take programs from")
    ap.add_argument("--dip-plan", default=None, help="dip-plan program (default BUILD/tools/dip-plan)")
    ap.add_argument("--search-curve", default=None, help="dip-search-curve program (default BUILD/bench/dip-search-curve)")
    ap.add_argument("--bench-dir", default=None, help="folder of the dip-bench-* programs (default BUILD/bench)")
    ap.add_argument("--sections", default=None, help="comma-separated subset of: " + ", ".join(SECTIONS) +
                    " (default: all; `measured` only where a torch interpreter is found)")
    ap.add_argument("--torch-python", default=None, metavar="PATH",
                    help="interpreter with torch and dip.torch for the measured section (default $DIP_TORCH_PYTHON, "
                         "else .venv/bin/python; `none`: no measured section)")
    ap.add_argument("--models", default="vlm-s,vlm-m,vlm-l,t2v-s,t2v-l")
    ap.add_argument("--iterations", type=int, default=3, help="iterations (batches) per cell of the main table")
    ap.add_argument("--search-ms", default="200", help="dip's search budget per batch in the time-budgeted runs")
    ap.add_argument("--ablation", default="vlm-s:obelics,vlm-s:obelics:56,vlm-s:laion,vlm-l:obelics,t2v-s:video",
                    help="model:data pairs of the ablation, each optionally :cap (GiB per GPU plans may use)")
    ap.add_argument("--ablation-rollouts", default="300", help="the ablation's search budget in rollouts (reproducible)")
    ap.add_argument("--curve-batches", default="3", help="batches the search curve averages over")
    args = ap.parse_args()
    args.dip_plan = args.dip_plan or os.path.join(args.build, "tools", "dip-plan")
    args.search_curve = args.search_curve or os.path.join(args.build, "bench", "dip-search-curve")
    args.bench_dir = args.bench_dir or os.path.join(args.build, "bench")
    if args.images is None:
        same = os.path.abspath(args.out) == os.path.abspath(DEFAULT_OUT)
        args.images = os.path.join(ROOT, "docs", "images") if same else os.path.join(args.out, "images")
    return args


def machine():
    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def validate(out, chosen):
    """Problems with the written tables: a missing or empty CSV, missing columns, no dip row."""
    problems = []
    for name, (file, columns) in EXPECTED_CSV.items():
        if name not in chosen:
            continue
        path = os.path.join(out, file)
        if not os.path.exists(path):
            problems.append(f"{file}: missing")
            continue
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            problems.append(f"{file}: no rows")
            continue
        missing = [c for c in columns if c not in rows[0]]
        if missing:
            problems.append(f"{file}: missing columns {missing}")
    if "main" in chosen and os.path.exists(os.path.join(out, "main.csv")):
        with open(os.path.join(out, "main.csv"), newline="") as f:
            dip = [r for r in csv.DictReader(f) if r["schedule"] == "dip" and r["mean_iteration_ms"]]
        if not dip:
            problems.append("main.csv: dip has no iteration time in any cell")
    with open(os.path.join(out, "results.md")) as f:
        text = f.read()
    if "measured" in chosen and os.path.exists(os.path.join(out, "measured.csv")):
        with open(os.path.join(out, "measured.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        if not any(r["schedule"] == "dip" for r in rows):
            problems.append("measured.csv: no dip row")
        if any(not r["measured_median_ms"] or not r["simulated_ms"] for r in rows):
            problems.append("measured.csv: a row without a measured or simulated time")
    if text.count("|---") < len([c for c in chosen if c != "timeline"]):
        problems.append("results.md: fewer tables than sections")
    return problems


def plot(args, out):
    """Runs dip_bench_plots.py with an interpreter that has matplotlib (this one, else the
    system's /usr/bin/python3, where Debian's python3-matplotlib lives); skips without one."""
    script = os.path.join(HERE, "dip_bench_plots.py")
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        if not os.path.exists(python):
            continue
        if subprocess.run([python, "-c", "import matplotlib"], capture_output=True).returncode != 0:
            continue
        result = subprocess.run([python, script, "--results", out, "--images", args.images])
        return result.returncode == 0
    print("dip-bench: matplotlib not found (Debian: python3-matplotlib); plots skipped", file=sys.stderr)
    return True


def main():
    args = parse_args()
    chosen = [s for s in args.sections.split(",") if s] if args.sections is not None else list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        sys.exit(f"dip-bench: unknown sections {unknown} (known: {', '.join(SECTIONS)})")
    if "measured" in chosen:
        args.torch_python, why = find_torch_python(args.torch_python)
        if not args.torch_python and args.sections is not None:
            print(f"dip-bench: the measured section needs an interpreter with torch and dip.torch: {why}. Pass "
                  "--torch-python PATH (scripts/test.sh makes .venv/bin/python one).", file=sys.stderr)
            return NO_TORCH
        if not args.torch_python:
            print(f"dip-bench: measured section skipped ({why})", file=sys.stderr)
            chosen.remove("measured")
    programs = ((args.dip_plan,) if any(s in NEEDS_DIP_PLAN for s in chosen) else ()) + \
        ((args.search_curve,) if "search-curve" in chosen else ())
    for program in programs:
        if not os.access(program, os.X_OK):
            sys.exit(f"dip-bench: {program} not found; build it: cmake --build {args.build} --target "
                     f"{os.path.basename(program)}  (or pass --build/--dip-plan/--search-curve)")
    os.makedirs(args.out, exist_ok=True)
    ctx = sections.Context(args, args.out)
    runs = [SECTIONS[name](ctx) for name in chosen]
    jobs = Jobs(sum(r.job_count() for r in runs))
    start = time.perf_counter()
    texts, timings = [], {}
    try:
        for name, r in zip(chosen, runs):
            t0 = time.perf_counter()
            jobs.section = name
            texts.append(r.run(jobs))
            timings[name] = round(time.perf_counter() - t0, 1)
    except JobFailed as e:
        jobs.progress.finish()
        print(f"dip-bench: {e}", file=sys.stderr)
        return 1
    jobs.progress.finish()
    wall = time.perf_counter() - start
    info = machine()
    command = "python3 bench/dip_bench.py" + (" --quick" if args.quick else "")
    # Each section's tables go to section_<name>.md, and results.md joins every section file
    # present, so that a run of some --sections updates those and keeps the others.
    for name, text in zip(chosen, texts):
        if text:  # the timeline section has files for the plot but no table
            with open(os.path.join(args.out, f"section_{name}.md"), "w") as f:
                f.write(text + "\n")
    meta_path = os.path.join(args.out, "meta.json")
    meta = {}
    if os.path.exists(meta_path) and set(chosen) != set(SECTIONS):
        with open(meta_path) as f:
            meta = json.load(f)
    meta.update({"command": command, "argv": sys.argv, "machine": info, "wall_s": round(wall, 1),
                 "section_wall_s": {**meta.get("section_wall_s", {}), **timings},
                 "jobs": [j for j in meta.get("jobs", []) if j.get("section") not in chosen] + jobs.log})
    write_json(meta_path, meta)
    header = [f"# dip evaluation results{' (quick mode)' if args.quick else ''}\n",
              f"Generated by `{command}` on {info['date']}: {info['nproc']} CPUs ({info['cpu']}), "
              f"{wall:.0f} s wall for the sections run ({', '.join(chosen)}). Simulated with the analytic cost "
              "model (the measured section: the profiled one, calibrated on this machine); see bench/RESULTS.md "
              "for the reading.\n"]
    parts = []
    for name in SECTIONS:
        path = os.path.join(args.out, f"section_{name}.md")
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            if text:
                parts.append(text + "\n")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(header + parts))
    problems = validate(args.out, chosen)
    for p in problems:
        print(f"dip-bench: malformed output: {p}", file=sys.stderr)
    plotted = True
    if not args.no_plots:
        plotted = plot(args, args.out)
    print(f"dip-bench: wrote {args.out}/results.md ({wall:.0f} s)" + ("" if args.no_plots else f", plots in {args.images}"),
          file=sys.stderr)
    return 1 if problems or not plotted else 0


if __name__ == "__main__":
    sys.exit(main())
