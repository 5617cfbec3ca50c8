"""The evaluation's `measured` section: dip's plans run on torch ranks against what dip predicts.

It runs `python -m dip.torch bench` (python/dip/torch/bench.py) under an interpreter with torch
(--torch-python) once per model, and keeps its JSON and traces. That command calibrates dip's
profiled cost model and the link on this machine, plans batches with every schedule, runs them
on `pp` processes and reports measured iteration times and activation memory beside the
simulated ones. This section tabulates them (measured.csv, Markdown); dip_bench_plots.py draws
measured_vs_simulated.png and measured_gantt.png from the files listed in measured.json.
"""
import json
import os
import shlex
import shutil
import subprocess

from dip_bench_runner import fmt, markdown_table, write_csv, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CSV_COLUMNS = ["model", "schedule", "batch", "measured_median_ms", "measured_min_ms", "measured_max_ms",
               "simulated_ms", "ratio", "memory_ratio_min", "memory_ratio_max"]
# The targets of bench/README.md: the cost model's error on time and activation memory, and how
# far dip's measured speedups may sit from the simulated ones.
TARGET = 0.05
# The baselines whose speedups the target names (bench/README.md); the others are shown too.
TARGET_BASELINES = ("static-dip", "1f1b", "interleaved")
# The data of each model kind: a ../shared/data trace where present, else the command's default.
TRACES = {"vlm": "vlm-coco-captions.jsonl", "t2v": "video-msrvtt.jsonl"}
QUICK_OPTIONS = ["--batches", "1", "--iterations", "1", "--warmup", "0", "--microbatches", "2",
                 "--schedules", "dip,1f1b,static-dip", "--samples-per-layer", "4", "--repeats", "1",
                 "--calibration-sizes", "2", "--calibration-batches", "1", "--search-ms", "20"]


def find_torch_python(option):
    """The interpreter that runs dip.torch: --torch-python, else $DIP_TORCH_PYTHON, else
    ROOT/.venv/bin/python; `none` for none. Returns (path or None, why not)."""
    if option == "none":
        return None, "--torch-python none"
    candidate = option or os.environ.get("DIP_TORCH_PYTHON")
    if not candidate:
        venv = os.path.join(ROOT, ".venv", "bin", "python")
        if not os.path.exists(venv):
            return None, "no --torch-python, no $DIP_TORCH_PYTHON and no .venv/bin/python"
        candidate = venv
    path = shutil.which(candidate) if os.sep not in candidate else candidate
    if not path or not os.access(path, os.X_OK):
        return None, f"{candidate}: not an executable"
    check = subprocess.run([path, "-c", "import torch, dip.torch"], capture_output=True, text=True)
    if check.returncode != 0:
        lines = check.stderr.strip().splitlines()
        return None, f"{candidate} cannot import torch and dip.torch ({lines[-1] if lines else check.returncode})"
    return path, ""


def shown(argv):
    """The command as one would type it at the repository root: paths under it (and beside it,
    ../shared) made relative; $PYTHONPATH in front where set."""
    def relative(arg):
        if os.path.isabs(arg) and (arg == ROOT or arg.startswith(ROOT + os.sep)
                                   or arg.startswith(os.path.dirname(ROOT) + os.sep)):
            return os.path.relpath(arg, ROOT)
        return arg
    path = os.environ.get("PYTHONPATH")  # where dip comes from, when not the interpreter's own
    env = f"PYTHONPATH={':'.join(relative(p) for p in path.split(':'))} " if path else ""
    return env + shlex.join(relative(a) for a in argv)


def counted(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('ch') else 's'}"


def ratio_range(values):
    values = [v for v in values if v is not None and v == v]
    return (min(values), max(values)) if values else (None, None)


class Measured:
    """small-vlm and small-t2v (tiny-vlm and tiny-t2v under --quick) at PP 2, one torch thread
    per rank, on the ../shared/data traces where present: measured against simulated."""

    title = "measured"

    def __init__(self, ctx):
        self.ctx = ctx
        self.python = ctx.args.torch_python
        self.models = ["tiny-vlm", "tiny-t2v"] if ctx.quick else ["small-vlm", "small-t2v"]
        self.timeout_s = 600 if ctx.quick else None

    def job_count(self):
        return len(self.models)

    def data(self, model):
        path = os.path.join(self.ctx.shared_data, TRACES["t2v" if "t2v" in model else "vlm"])
        return path if os.path.exists(path) else None

    def argv(self, model):
        out = self.ctx.out
        argv = [self.python, "-m", "dip.torch", "bench", "--model", model, "--pp", "2", "--threads", "1",
                "--json", os.path.join(out, f"measured-{model}.json"),
                "--trace", os.path.join(out, f"measured-{model}-traces")]
        if self.data(model):
            argv += ["--data", self.data(model)]
        return argv + (QUICK_OPTIONS if self.ctx.quick else [])

    def run(self, jobs):
        ctx = self.ctx
        self.results, commands, rows = {}, {}, []
        for model in self.models:
            argv = self.argv(model)
            jobs.run(f"measured {model}", argv, timeout_s=self.timeout_s)
            with open(os.path.join(ctx.out, f"measured-{model}.json")) as f:
                self.results[model] = json.load(f)
            commands[model] = shown(argv)
            for schedule, s in self.results[model]["summary"]["schedules"].items():
                for b in s["batches"]:
                    low, high = ratio_range(b["activation_bytes"]["ratio"])
                    rows.append({"model": model, "schedule": schedule, "batch": b["batch"],
                                 "measured_median_ms": b["measured_ms"]["median"],
                                 "measured_min_ms": b["measured_ms"]["min"], "measured_max_ms": b["measured_ms"]["max"],
                                 "simulated_ms": b["simulated_ms"], "ratio": b["ratio"],
                                 "memory_ratio_min": low, "memory_ratio_max": high})
        self.commands = commands
        write_csv(os.path.join(ctx.out, "measured.csv"), rows, CSV_COLUMNS)
        # The plots' index: the JSON of each model and the traces of the Gantt chart (the VLM's).
        write_json(os.path.join(ctx.out, "measured.json"),
                   {"quick": ctx.quick, "models": {m: {"json": f"measured-{m}.json", "traces": f"measured-{m}-traces",
                                                       "command": commands[m]} for m in self.models},
                    "gantt": {"model": self.models[0], "traces": f"measured-{self.models[0]}-traces",
                              "schedules": ["dip", "1f1b"]}})
        return self.markdown()

    def markdown(self):
        text = ["### Measured on torch ranks against dip's simulation (`python -m dip.torch bench`)\n",
                "Each model is calibrated on this machine (dip's profiled cost model fitted on its layers, the "
                "link's latency and bandwidth on messages between the ranks), then every schedule's plans of other "
                "batches run on 2 processes with one torch thread each. Measured: the slowest rank's iteration time "
                "(median [min-max] over iterations); simulated: dip's makespan with the calibrated costs. Targets: "
                f"mean |measured/simulated - 1| <= {TARGET:.0%}, dip's measured speedups within {TARGET:.0%} of the "
                f"simulated ones, predicted activation memory within {TARGET:.0%} of the measured peak.\n"]
        summary_rows = []
        for model, result in self.results.items():
            s = result["summary"]
            speedups = s.get("speedups", {})
            worst = max((abs(v["difference"]) for k, v in speedups.items() if k in TARGET_BASELINES), default=None)
            summary_rows.append([model, fmt(s["mean_abs_time_error"], "{:.1%}"), fmt(s["max_abs_time_error"], "{:.1%}"),
                                 fmt(s.get("mean_abs_memory_error"), "{:.1%}", "-"),
                                 fmt(s.get("max_abs_memory_error"), "{:.1%}", "-"), fmt(worst, "{:.1%}", "-"),
                                 "yes" if self.meets(s) else "no"])
        text.append(markdown_table(["model", "mean \\|time error\\|", "max", "mean \\|memory error\\|", "max",
                                    "worst speedup difference (" + ", ".join(TARGET_BASELINES) + ")",
                                    f"targets ({TARGET:.0%}) met"], summary_rows))
        for model, result in self.results.items():
            text.append("\n" + self.model_markdown(model, result))
        return "\n".join(text)

    @staticmethod
    def meets(summary):
        speedups = [v for k, v in summary.get("speedups", {}).items() if k in TARGET_BASELINES]
        memory = summary.get("mean_abs_memory_error")
        return (summary["mean_abs_time_error"] <= TARGET and all(abs(v["difference"]) <= TARGET for v in speedups)
                and (memory is None or memory <= TARGET))

    def model_markdown(self, model, result):
        s = result["summary"]
        data = os.path.basename(result.get("data") or "") or "default"
        machine = result.get("machine") or {}
        link = result.get("link")
        text = [f"#### {model}: PP {result['pp']}, {counted(result['batches'], 'batch')} x "
                f"{counted(result['microbatches'], 'microbatch')}, {counted(result['iterations'], 'iteration')} "
                f"(+{result['warmup']} warm-up), {counted(result['threads'], 'torch thread')} per rank, data {data}\n",
                "Machine: " + (", ".join(f"{k} {v}" for k, v in machine.items()) or "unknown") +
                (f"; link {link['latency_us']:.1f} us + {link['gbps']:.2f} GB/s" if link else "") +
                f"; {result.get('seconds', 0):.0f} s in all.\n",
                f"Command (from the repository root): `{self.commands[model]}`\n"]
        rows = []
        for schedule, sched in s["schedules"].items():
            for b in sched["batches"]:
                m = b["measured_ms"]
                memory = b["activation_bytes"]
                per_rank = " / ".join(f"{mb / 2**20:.1f}/{pb / 2**20:.1f}" for mb, pb in
                                      zip(memory["measured"], memory["predicted"]))
                rows.append([schedule, b["batch"], f"{m['median']:.1f} [{m['min']:.1f}-{m['max']:.1f}]",
                             f"{b['simulated_ms']:.1f}", f"{b['ratio']:.3f}", per_rank,
                             " ".join(fmt(r, "{:.3f}", "-") if r == r else "-" for r in memory["ratio"])])
        text.append(markdown_table(["schedule", "batch", "measured ms median [min-max]", "simulated ms",
                                    "measured/simulated", "activation MiB measured/predicted per rank",
                                    "memory ratio per rank"], rows))
        text.append(f"\nmean \\|measured/simulated - 1\\| = {s['mean_abs_time_error']:.1%} "
                    f"(max {s['max_abs_time_error']:.1%}); activation memory: mean "
                    f"{fmt(s.get('mean_abs_memory_error'), '{:.1%}', '-')} "
                    f"(max {fmt(s.get('max_abs_memory_error'), '{:.1%}', '-')}).\n")
        speedups = s.get("speedups", {})
        if speedups:
            text.append(f"dip's speedup over each baseline (total time over {counted(result['batches'], 'batch')}):\n")
            text.append(markdown_table(["baseline", "measured", "simulated", "measured/simulated - 1"],
                                       [[other, f"{v['measured']:.3f}x", f"{v['simulated']:.3f}x",
                                         f"{v['difference']:+.1%}"] for other, v in speedups.items()]))
        return "\n".join(text)
