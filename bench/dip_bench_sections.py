"""The evaluation's sections. Each one lists its jobs (so one progress bar covers the whole run),
runs them through dip_bench_runner.Jobs, writes its CSV/JSON under the output folder and returns
its Markdown. See bench/README.md for what each measures and bench/RESULTS.md for the numbers."""
import glob
import json
import os

from dip_bench_runner import (fmt, geomean, iteration_ms, loglog_slope, markdown_table, schedule_metrics,
                              write_csv, write_json)

CLASSIC = ["gpipe", "1f1b", "interleaved", "zb1p"]
# On the time-balanced partition only (they need the V, two chunks per rank, which Megatron's
# parameter split is not run on here).
V_SHAPED = ["zbv", "dualpipev"]
BALANCED = CLASSIC + V_SHAPED
MODALITY = ["static-dip", "optimus"]
ALL_SCHEDULES = CLASSIC + MODALITY + ["dip"]
# The paper's ablation on VLM-S, iteration seconds (DESIGN.md, "Paper's evaluation").
PAPER_ABLATION_S = [26.13, 22.27, 18.81, 17.61, 16.05]
ABLATION_STEPS = ["mixed 1F1B", "+ modality-aware partition", "+ interleaving", "+ reordering",
                  "+ memory strategies"]
METRIC_COLUMNS = ["mean_iteration_ms", "samples_per_s", "tokens_per_s", "mfu", "bubble_ratio",
                  "lower_bound_gap", "tight_bound_gap", "cap_bound_gap", "peak_memory_gib", "plan_ms"]


def is_t2v(model):
    return "t2v" in os.path.basename(model) or "dit" in os.path.basename(model)


def data_label(data):
    return os.path.basename(data)[:-len(".jsonl")] if data.endswith(".jsonl") else data


class Context:
    """Settings every section reads: programs, output folder, sizes (smaller under --quick)."""

    def __init__(self, args, out):
        self.args, self.out, self.quick = args, out, args.quick
        self.dip_plan, self.search_curve, self.bench_dir = args.dip_plan, args.search_curve, args.bench_dir
        here = os.path.dirname(os.path.abspath(__file__))
        self.models_dir = os.path.join(here, "models")
        self.shared_data = os.path.normpath(os.path.join(here, "..", "..", "shared", "data"))

    def traces(self, prefix):
        """The ../shared/data traces of one kind (vlm-*.jsonl or video-*.jsonl); none without ../shared."""
        return sorted(glob.glob(os.path.join(self.shared_data, prefix + "-*.jsonl")))

    def plan_argv(self, model, data, schedules, partition="megatron", microbatches=16, iterations=1,
                  search_ms="200", extra=()):
        return [self.dip_plan, "--model", model, "--data", data, "--partition", partition,
                "--schedules", ",".join(schedules), "--microbatches", str(microbatches),
                "--iterations", str(iterations), "--search-ms", str(search_ms), "--threads", "1",
                "--seed", "1", "--json", *extra]


# --- 1. the schedule matrix -----------------------------------------------------------------------

class MainComparison:
    """Every preset x data x schedule. Classic schedules run on Megatron's parameter-balanced mixed
    partition (as Megatron-LM does) and again on the best contiguous (time-balanced) partition,
    the strongest classic baseline; static-dip, optimus and dip on the modality-aware one."""

    title = "main comparison"

    def __init__(self, ctx):
        self.ctx = ctx
        a = ctx.args
        self.models = ["vlm-s", "t2v-s"] if ctx.quick else a.models.split(",")
        self.microbatches = 8 if ctx.quick else 16
        self.iterations = 1 if ctx.quick else a.iterations
        self.search_ms = "50" if ctx.quick else a.search_ms
        self.cells = []
        for model in self.models:
            if is_t2v(model):
                data = ["video"] + ([] if ctx.quick else ctx.traces("video"))
            else:
                data = ["obelics"] if ctx.quick else ["laion", "obelics", "scienceqa", "mixed"] + ctx.traces("vlm")
            self.cells += [(model, d) for d in data]

    def job_count(self):
        return 2 * len(self.cells)

    def run(self, jobs):
        ctx, rows, docs = self.ctx, [], {}
        for model, data in self.cells:
            label = f"{model} {data_label(data)}"
            mega = jobs.run(f"main {label} megatron", ctx.plan_argv(model, data, ALL_SCHEDULES, "megatron",
                                                                    self.microbatches, self.iterations, self.search_ms),
                            accept=(0, 1, 3)).json()
            bal = jobs.run(f"main {label} balanced", ctx.plan_argv(model, data, BALANCED, "balanced", self.microbatches,
                                                                   self.iterations, self.search_ms),
                           accept=(0, 1, 3)).json()
            docs[label] = {"megatron": mega, "balanced": bal}
            dip = schedule_metrics(mega, "dip")
            for schedule, partition, doc in ([(s, "megatron", mega) for s in CLASSIC] +
                                             [(s, "balanced", bal) for s in BALANCED] +
                                             [(s, "modality", mega) for s in MODALITY + ["dip"]]):
                m = schedule_metrics(doc, schedule)
                row = {"model": model, "data": data_label(data), "schedule": schedule, "partition": partition, **m}
                if "error" not in m and "error" not in dip:
                    row["dip_speedup"] = m["mean_iteration_ms"] / dip["mean_iteration_ms"]
                rows.append(row)
        self.rows = rows
        write_csv(os.path.join(ctx.out, "main.csv"), rows,
                  ["model", "data", "schedule", "partition", "iterations"] + METRIC_COLUMNS + ["dip_speedup", "error"])
        write_json(os.path.join(ctx.out, "main.json"),
                   {"settings": {"microbatches": self.microbatches, "iterations": self.iterations,
                                 "search_ms": self.search_ms, "threads": 1, "seed": 1},
                    "rows": rows})
        return self.markdown()

    def find(self, model, data, schedule, partition):
        for r in self.rows:
            if (r["model"], r["data"], r["schedule"], r["partition"]) == (model, data, schedule, partition):
                return r
        return {}

    def baselines(self):
        return ([(s, "megatron") for s in CLASSIC] + [(s, "balanced") for s in BALANCED] +
                [(s, "modality") for s in MODALITY])

    def markdown(self):
        ms = lambda r: r.get("mean_iteration_ms")
        text = [f"### Mean iteration time (ms), {self.microbatches} microbatches x {self.iterations} iterations\n",
                "Classic schedules on Megatron's mixed partition; `zbv` and `dualpipev` on the time-balanced "
                "contiguous partition, on the V; `best balanced` is the fastest classic schedule on that partition "
                "(the six, ZB-V and DualPipeV included); `dip vs best baseline` is dip's speedup over the fastest "
                "of every baseline of the cell (same batches).\n"]
        rows = []
        for model, data in self.cells:
            d = data_label(data)
            get = lambda s, p: self.find(model, d, s, p)
            balanced = [ms(get(s, "balanced")) for s in BALANCED if ms(get(s, "balanced"))]
            best_balanced = min(balanced) if balanced else None
            base = [ms(get(s, p)) for s, p in self.baselines() if ms(get(s, p))]
            dip = get("dip", "modality")
            inter = ms(get("interleaved", "megatron"))
            rows.append([model, d] + [fmt(ms(get(s, "megatron"))) for s in CLASSIC] +
                        [fmt(ms(get(s, "balanced"))) for s in V_SHAPED] + [fmt(best_balanced), fmt(ms(get("static-dip", "modality"))), fmt(ms(get("optimus", "modality"))),
                         fmt(ms(dip)), fmt(dip.get("mfu"), "{:.1%}"), fmt(dip.get("lower_bound_gap"), "{:+.1%}"),
                         fmt(dip.get("tight_bound_gap"), "{:+.1%}"), fmt(dip.get("cap_bound_gap"), "{:+.1%}"),
                         fmt(inter / ms(dip) if inter and ms(dip) else None, "{:.2f}x", "-"),
                         fmt(min(base) / ms(dip) if base and ms(dip) else None, "{:.2f}x", "-")])
        text.append(markdown_table(["model", "data", "gpipe", "1f1b", "interleaved", "zb1p", "zbv", "dualpipev",
                                    "best balanced",
                                    "static-dip", "optimus", "dip", "dip MFU", "dip vs bound", "vs tight", "vs cap",
                                    "dip vs interleaved", "dip vs best baseline"], rows))
        text.append("\n`fail`: the schedule does not fit the GPU's memory even with activation recompute/offload "
                    "(or, for interleaved, the microbatch count is not a multiple of PP; for dualpipev, fewer "
                    "microbatches than 2 PP stages).\n")
        # Speedup summary over all cells, per baseline.
        srows = []
        for s, p in self.baselines():
            sp = [r["dip_speedup"] for r in self.rows if r["schedule"] == s and r["partition"] == p and r.get("dip_speedup")]
            fails = sum(1 for r in self.rows if r["schedule"] == s and r["partition"] == p and r.get("error"))
            srows.append([f"{s} ({p})", len(sp), fmt(geomean(sp), "{:.2f}x", "-"), fmt(min(sp) if sp else None, "{:.2f}x", "-"),
                          fmt(max(sp) if sp else None, "{:.2f}x", "-"), fails])
        best = []
        for model, data in self.cells:
            d = data_label(data)
            base = [ms(self.find(model, d, s, p)) for s, p in self.baselines() if ms(self.find(model, d, s, p))]
            dip = ms(self.find(model, d, "dip", "modality"))
            if base and dip:
                best.append(min(base) / dip)
        srows.append(["best baseline of each cell", len(best), fmt(geomean(best), "{:.2f}x", "-"),
                      fmt(min(best) if best else None, "{:.2f}x", "-"), fmt(max(best) if best else None, "{:.2f}x", "-"), "-"])
        text.append("### dip's speedup over each baseline (iteration time ratio, over all cells)\n")
        text.append(markdown_table(["baseline (partition)", "cells", "geomean", "min", "max", "cells where it fails"], srows))
        # Every metric on each model's main data set (the paper's: OBELICS-like for VLMs).
        text.append("\n### Every metric, obelics (VLMs) and video (T2V)\n")
        drows = []
        for model in self.models:
            mine = [data_label(dd) for m, dd in self.cells if m == model]
            d = next((x for x in mine if x in ("obelics", "video")), mine[0])
            for s, p in self.baselines() + [("dip", "modality")]:
                r = self.find(model, d, s, p)
                if not r:
                    continue
                if r.get("error"):
                    drows.append([model, d, f"{s} ({p})", "fail"] + ["-"] * 9)
                    continue
                drows.append([model, d, f"{s} ({p})", fmt(r["mean_iteration_ms"]), fmt(r["samples_per_s"], "{:.2f}"),
                              fmt(r["tokens_per_s"], "{:.0f}"), fmt(r["mfu"], "{:.1%}"), fmt(r["bubble_ratio"], "{:.3f}"),
                              fmt(r["lower_bound_gap"], "{:+.1%}"), fmt(r.get("tight_bound_gap"), "{:+.1%}"),
                              fmt(r.get("cap_bound_gap"), "{:+.1%}"), fmt(r["peak_memory_gib"], "{:.1f}"),
                              fmt(r.get("dip_speedup"), "{:.2f}x", "-")])
        text.append(markdown_table(["model", "data", "schedule (partition)", "iteration ms", "samples/s", "tokens/s",
                                    "MFU", "bubble", "vs own bound", "vs tight", "vs cap", "peak GiB", "dip speedup"],
                                   drows))
        return "\n".join(text)


# --- 2. ablation ----------------------------------------------------------------------------------

class Ablation:
    """The paper's steps. Step 1 is Megatron's 1F1B as trainers run it (recompute where it would not
    fit); steps 2-4 fit by their in-flight limits alone (no recompute or offload); step 5 adds dip's
    per-pair memory strategies. Searches by a fixed rollout budget, so the table is reproducible."""

    title = "ablation"

    def __init__(self, ctx):
        self.ctx = ctx
        # model:data or model:data:cap (GiB per GPU that plans may use; default the GPU's).
        self.pairs = [(p.split(":") + [None])[:3]
                      for p in (["vlm-s:obelics"] if ctx.quick else ctx.args.ablation.split(",")) if p]
        self.microbatches = 8 if ctx.quick else 16
        self.iterations = 1 if ctx.quick else ctx.args.iterations
        self.rollouts = "50" if ctx.quick else ctx.args.ablation_rollouts

    def job_count(self):
        return 5 * len(self.pairs)

    def run(self, jobs):
        ctx, rows = self.ctx, []
        off = ("--memory-strategies", "false", "--fit-memory", "false")
        roll = ("--search-rollouts", self.rollouts)
        for model, data, cap in self.pairs:
            capped = ("--memory-cap-gib", cap) if cap else ()
            label = f"{data} @{cap} GiB" if cap else data
            steps = [("1f1b", "megatron", "200", ()),
                     ("static-dip", "balanced", "200", off + ("--segments-per-rank", "1")),
                     ("dip", "balanced", "0", off),
                     ("dip", "balanced", "0", off + roll),
                     ("dip", "balanced", "0", roll)]
            first = None
            for i, (schedule, partition, search, extra) in enumerate(steps):
                doc = jobs.run(f"ablation {model} {label} step {i + 1}",
                               ctx.plan_argv(model, data, [schedule], partition, self.microbatches, self.iterations,
                                             search, extra + capped), accept=(0, 1, 3)).json()
                m = schedule_metrics(doc, schedule)
                value = m.get("mean_iteration_ms")
                first = first if i else value
                paper = model == "vlm-s" and data == "obelics" and not cap
                rows.append({"model": model, "data": label, "step": i + 1, "name": ABLATION_STEPS[i], "iteration_ms": value,
                             "speedup_vs_step1": first / value if first and value else None,
                             "paper_s": PAPER_ABLATION_S[i] if paper else None,
                             "paper_speedup_vs_step1": PAPER_ABLATION_S[0] / PAPER_ABLATION_S[i] if paper else None,
                             "error": m.get("error")})
        self.rows = rows
        write_csv(os.path.join(ctx.out, "ablation.csv"), rows,
                  ["model", "data", "step", "name", "iteration_ms", "speedup_vs_step1", "paper_s",
                   "paper_speedup_vs_step1", "error"])
        text = [f"### Ablation in the paper's order (mean iteration ms; speedup over step 1; "
                f"{self.microbatches} microbatches x {self.iterations} iterations, {self.rollouts} rollouts)\n"]
        table = []
        for model, data, cap in self.pairs:
            label = f"{data} @{cap} GiB" if cap else data
            r = [x for x in rows if x["model"] == model and x["data"] == label]
            table.append([model, label] + [f"{fmt(x['iteration_ms'])} ({fmt(x['speedup_vs_step1'], '{:.2f}x', '-')})" for x in r])
        text.append(markdown_table(["model", "data"] + ABLATION_STEPS, table))
        text.append("\nRelative steps against the paper (VLM-S; the paper's seconds are for its testbed, ours are "
                    "simulated ms, so only the ratios compare):\n")
        ref = [x for x in rows if x["paper_s"]]
        text.append(markdown_table(["step", "paper s", "paper speedup", "ours ms", "our speedup"],
                                   [[x["name"], x["paper_s"], f"{x['paper_speedup_vs_step1']:.3f}x", fmt(x["iteration_ms"]),
                                     fmt(x["speedup_vs_step1"], "{:.3f}x", "-")] for x in ref]))
        return "\n".join(text)


# --- 3. dynamic workload --------------------------------------------------------------------------

class DynamicWorkload:
    """40 iterations of `--data dynamic` (batch/dynamic.hpp): images per microbatch drawn from
    [low(i), high(i)], rising over iterations 1-5 and falling to text only by 20."""

    title = "dynamic workload"

    def __init__(self, ctx):
        self.ctx = ctx
        self.model = "vlm-s"
        self.iterations = 40 if not ctx.quick else 24  # quick still covers rise, fall and text only
        self.microbatches = 8 if ctx.quick else 16
        self.search_ms = "20" if ctx.quick else ctx.args.search_ms

    def job_count(self):
        return 1

    def run(self, jobs):
        ctx = self.ctx
        doc = jobs.run("dynamic workload", ctx.plan_argv(self.model, "dynamic", ALL_SCHEDULES, "megatron",
                                                         self.microbatches, self.iterations, self.search_ms),
                       accept=(0, 1, 3)).json()
        per = {s: iteration_ms(doc, s) for s in ALL_SCHEDULES}
        rows = []
        for i, it in enumerate(doc["iterations"]):
            images = [mb["images"] for mb in it["microbatches"]]
            row = {"iteration": i + 1, "mean_images": sum(images) / len(images), "min_images": min(images),
                   "max_images": max(images)}
            row.update({s: per[s][i] for s in ALL_SCHEDULES})
            rows.append(row)
        self.rows = rows
        write_csv(os.path.join(ctx.out, "dynamic.csv"), rows,
                  ["iteration", "mean_images", "min_images", "max_images"] + ALL_SCHEDULES)
        phases = [("rise (1-5)", 1, 5), ("fall (6-20)", 6, 20), (f"text only (21-{self.iterations})", 21, self.iterations),
                  ("all", 1, self.iterations)]
        table = []
        for s in ALL_SCHEDULES:
            cells = []
            for _, lo, hi in phases:
                v = [r[s] for r in rows if lo <= r["iteration"] <= hi]
                cells.append(fmt(sum(v) / len(v) if v and all(v) else None))
            total = [r[s] for r in rows]
            dip = [r["dip"] for r in rows]
            sp = sum(total) / sum(dip) if all(total) and all(dip) else None
            table.append([s] + cells + [fmt(sp, "{:.2f}x", "-")])
        return "\n".join([f"### Dynamic workload ({self.model}, {self.microbatches} microbatches, {self.iterations} "
                          "iterations; mean iteration ms per phase)\n",
                          markdown_table(["schedule"] + [p[0] for p in phases] + ["total time / dip's"], table)])


# --- 4. sweeps ------------------------------------------------------------------------------------

class SubMicrobatchSweep:
    """dip on VLM-S with B images per ViT sub-microbatch fixed (dip-plan --sub-microbatch-size),
    against the partitioner's own choice (the smallest B within 95% of peak throughput)."""

    title = "sub-microbatch size sweep"

    def __init__(self, ctx):
        self.ctx = ctx
        self.sizes = [0, 4, 12, 32] if ctx.quick else [0, 4, 8, 12, 16, 20, 24, 28, 32]
        self.microbatches = 8 if ctx.quick else 16
        self.iterations = 1 if ctx.quick else ctx.args.iterations
        self.rollouts = "30" if ctx.quick else "100"

    def job_count(self):
        return len(self.sizes)

    def run(self, jobs):
        ctx, rows = self.ctx, []
        for b in self.sizes:
            extra = ("--search-rollouts", self.rollouts, "--sub-microbatch-size", str(b))
            doc = jobs.run(f"sweep B={b or 'auto'}", ctx.plan_argv("vlm-s", "obelics", ["dip"], "megatron", self.microbatches,
                                                                   self.iterations, "0", extra), accept=(0, 1, 3)).json()
            m = schedule_metrics(doc, "dip")
            vit = next((g for g in doc.get("segments", []) if g["item"] == "image"), {})
            rows.append({"requested_b": b or "auto", "b": vit.get("sub_microbatch_size"),
                         "segments_per_rank": vit.get("segments_per_rank"), **m})
        self.rows = rows
        write_csv(os.path.join(ctx.out, "sweep_sub_microbatch.csv"), rows,
                  ["requested_b", "b", "segments_per_rank"] + METRIC_COLUMNS + ["error"])
        best = min((r for r in rows if r.get("mean_iteration_ms")), key=lambda r: r["mean_iteration_ms"], default={})
        table = [[r["requested_b"], r["b"], r["segments_per_rank"], fmt(r.get("mean_iteration_ms")),
                  fmt(r.get("bubble_ratio"), "{:.3f}", "-"), fmt(r.get("peak_memory_gib"), "{:.1f}", "-"),
                  "best" if r is best else ""] for r in rows]
        return "\n".join([f"### Sub-microbatch size (vlm-s, obelics, dip; B = images per ViT sub-microbatch; "
                          f"{self.microbatches} microbatches x {self.iterations} iterations, {self.rollouts} rollouts)\n",
                          markdown_table(["requested B", "B", "ViT segments per rank", "iteration ms", "bubble",
                                          "peak GiB", ""], table)])


class PipelineSweep:
    """Pipeline depth x microbatch count on one model: dip against the classic schedules."""

    title = "pipeline size sweep"
    schedules = ["1f1b", "interleaved", "zb1p", "dip"]

    def __init__(self, ctx):
        self.ctx = ctx
        self.model = "vlm-s" if ctx.quick else "vlm-l"
        self.pps = [4, 8] if ctx.quick else [4, 8, 16]
        self.microbatch_counts = [8] if ctx.quick else [8, 16, 32]
        self.search_ms = "20" if ctx.quick else ctx.args.search_ms

    def job_count(self):
        return len(self.pps) * len(self.microbatch_counts)

    def run(self, jobs):
        ctx, rows = self.ctx, []
        for pp in self.pps:
            for mb in self.microbatch_counts:
                doc = jobs.run(f"sweep pp={pp} mb={mb}", ctx.plan_argv(self.model, "obelics", self.schedules, "megatron", mb,
                                                                      1, self.search_ms, ("--pp", str(pp))),
                               accept=(0, 1, 3)).json()
                row = {"model": self.model, "pp": pp, "microbatches": mb}
                dip = schedule_metrics(doc, "dip")
                for s in self.schedules:
                    m = schedule_metrics(doc, s)
                    row[s + "_ms"] = m.get("mean_iteration_ms")
                    row[s + "_bubble"] = m.get("bubble_ratio")
                    if s != "dip" and m.get("mean_iteration_ms") and dip.get("mean_iteration_ms"):
                        row["dip_speedup_vs_" + s] = m["mean_iteration_ms"] / dip["mean_iteration_ms"]
                row["dip_mfu"] = dip.get("mfu")
                rows.append(row)
        self.rows = rows
        cols = ["model", "pp", "microbatches"] + [s + "_ms" for s in self.schedules] + \
               [s + "_bubble" for s in self.schedules] + ["dip_speedup_vs_" + s for s in self.schedules[:-1]] + ["dip_mfu"]
        write_csv(os.path.join(ctx.out, "sweep_pipeline.csv"), rows, cols)
        table = [[r["pp"], r["microbatches"]] + [fmt(r[s + "_ms"]) for s in self.schedules] +
                 [fmt(r.get("dip_speedup_vs_" + s), "{:.2f}x", "-") for s in self.schedules[:-1]] +
                 [fmt(r["dip_bubble"], "{:.3f}", "-"), fmt(r["dip_mfu"], "{:.1%}", "-")] for r in rows]
        return "\n".join([f"### Pipeline depth and microbatches ({self.model}, obelics, Megatron partition for the "
                          f"classic schedules; mean iteration ms)\n",
                          markdown_table(["PP", "microbatches"] + self.schedules +
                                         ["dip vs " + s for s in self.schedules[:-1]] + ["dip bubble", "dip MFU"], table)])


class SearchCurve:
    """bench/search_curve.cpp: the segment search's quality against its time budget, 1 and 2 threads."""

    title = "search budget vs quality"

    def __init__(self, ctx):
        self.ctx = ctx

    def job_count(self):
        return 1

    def run(self, jobs):
        ctx = self.ctx
        path = os.path.join(ctx.out, "search_curve.csv")
        argv = [ctx.search_curve, "--csv", path, "--threads", "1", "2"]
        argv += ["--batches", "1", "--budgets", "10", "30", "100", "300"] if ctx.quick else ["--batches", ctx.args.curve_batches]
        out = jobs.run("search curve", argv)
        table = "\n".join(l for l in out.stdout.splitlines() if l.startswith("|"))
        head = next((l for l in out.stdout.splitlines() if l.startswith("VLM-L")), "")
        return "\n".join(["### Search budget vs quality (`dip-search-curve`)\n", head + "\n", table])


# --- scale ----------------------------------------------------------------------------------------

class Scale:
    """The paper's simulated large configurations (bench/models/*.json): the planner's own cost
    (dip's planning ms per batch, the process's wall time and peak RSS) as pipeline depth and
    microbatch count grow, with the growth exponent fitted on log-log axes."""

    title = "scale"

    def __init__(self, ctx):
        self.ctx = ctx
        m = ctx.models_dir
        if ctx.quick:
            self.configs = [("vit22b-gpt175b", os.path.join(m, "vit22b-gpt175b.json"), "obelics", [8]),
                            ("qwen2-72b-dit30b", os.path.join(m, "qwen2-72b-dit30b.json"), "video", [4, 8])]
            self.microbatch_counts = [4, 8]
        else:
            # The paper's PP 8 and 16 (VLM) and 4 and 8 (T2V), plus one deeper pipeline each so
            # that the growth with PP rests on three points.
            self.configs = [("vit22b-gpt175b", os.path.join(m, "vit22b-gpt175b.json"), "obelics", [8, 16, 32]),
                            ("qwen2-72b-dit30b", os.path.join(m, "qwen2-72b-dit30b.json"), "video", [4, 8, 16])]
            self.microbatch_counts = [8, 16, 32, 64]
        self.rollouts = "8" if ctx.quick else "32"

    def job_count(self):
        return sum(len(pps) for _, _, _, pps in self.configs) * len(self.microbatch_counts)

    def run(self, jobs):
        ctx, rows = self.ctx, []
        for name, path, data, pps in self.configs:
            for pp in pps:
                for mb in self.microbatch_counts:
                    out = jobs.run(f"scale {name} pp={pp} mb={mb}",
                                   ctx.plan_argv(path, data, ["dip"], "megatron", mb, 1, "0",
                                                 ("--pp", str(pp), "--search-rollouts", self.rollouts)), accept=(0, 1, 3))
                    m = schedule_metrics(out.json(), "dip")
                    rows.append({"config": name, "pp": pp, "microbatches": mb, "plan_ms": m.get("plan_ms"),
                                 "wall_s": out.wall_s, "cpu_s": out.cpu_s, "peak_rss_mib": out.maxrss_mib,
                                 "iteration_ms": m.get("mean_iteration_ms"), "mfu": m.get("mfu"), "error": m.get("error")})
        fits = []
        for name, _, _, pps in self.configs:
            for pp in pps:
                r = [x for x in rows if x["config"] == name and x["pp"] == pp]
                fits.append({"config": name, "over": "microbatches", "at": f"pp {pp}",
                             "plan_ms_exponent": loglog_slope([x["microbatches"] for x in r], [x["plan_ms"] for x in r]),
                             "rss_exponent": loglog_slope([x["microbatches"] for x in r], [x["peak_rss_mib"] for x in r])})
            if len(pps) > 1:
                for mb in self.microbatch_counts:
                    r = [x for x in rows if x["config"] == name and x["microbatches"] == mb]
                    fits.append({"config": name, "over": "pp", "at": f"{mb} microbatches",
                                 "plan_ms_exponent": loglog_slope([x["pp"] for x in r], [x["plan_ms"] for x in r]),
                                 "rss_exponent": loglog_slope([x["pp"] for x in r], [x["peak_rss_mib"] for x in r])})
        self.rows, self.fits = rows, fits
        write_csv(os.path.join(ctx.out, "scale.csv"), rows,
                  ["config", "pp", "microbatches", "plan_ms", "wall_s", "cpu_s", "peak_rss_mib", "iteration_ms", "mfu", "error"])
        write_json(os.path.join(ctx.out, "scale_fits.json"), fits)
        table = [[x["config"], x["pp"], x["microbatches"], fmt(x["plan_ms"]), fmt(x["wall_s"], "{:.1f}"),
                  fmt(x["peak_rss_mib"], "{:.1f}"), fmt(x["iteration_ms"]), fmt(x["mfu"], "{:.1%}", "-")] for x in rows]
        ftable = [[f["config"], f["over"], f["at"], fmt(f["plan_ms_exponent"], "{:.2f}", "-"),
                   fmt(f["rss_exponent"], "{:.2f}", "-")] for f in fits]
        return "\n".join([f"### Scale: the planner's cost (dip, H100, TP 8; {self.rollouts} search rollouts per batch, "
                          "one batch; plan ms = dip's per-batch planning, wall and RSS = the whole dip-plan process "
                          "including segment tuning)\n",
                          markdown_table(["config", "PP", "microbatches", "plan ms", "wall s", "peak RSS MiB",
                                          "iteration ms", "MFU"], table),
                          "\nGrowth exponents k (cost ~ x^k, least squares on log-log):\n",
                          markdown_table(["config", "grows with", "at", "plan ms exponent", "peak RSS exponent"], ftable)])


class PlannerCost:
    """Whether dip's plan for the next batch is ready before the current batch ends, at the
    paper's large VLM configuration (bench/models/vit22b-gpt175b.json, TP 8, obelics): planning
    ms per batch (dip-plan's default 200 ms search, segment tuning excluded) against the batch's
    simulated iteration ms, on 1 and 2 planner threads, with the growth exponent in the
    microbatch count and the speedup of 2 threads over 1. A time-budgeted search takes its 200 ms
    on any thread count (two threads spend them on twice the rollouts), so the speedup is also
    measured for the same work: a fixed rollout count instead of a time budget."""

    title = "planner-cost"
    model = "vit22b-gpt175b"

    def __init__(self, ctx):
        self.ctx = ctx
        self.path = os.path.join(ctx.models_dir, self.model + ".json")
        self.pps = [8] if ctx.quick else [8, 16]
        self.microbatch_counts = [8, 16] if ctx.quick else [16, 32, 64, 128]
        self.threads = [1, 2]
        self.search_ms = "50" if ctx.quick else "200"
        self.rollouts = "8" if ctx.quick else "32"  # the same-work runs' search

    def job_count(self):
        return 2 * len(self.pps) * len(self.microbatch_counts) * len(self.threads)

    def plan_ms(self, jobs, label, pp, mb, threads, search):
        argv = self.ctx.plan_argv(self.path, "obelics", ["dip"], "balanced", mb, 1, self.search_ms, ("--pp", str(pp)))
        argv[argv.index("--threads") + 1] = str(threads)
        if search == "rollouts":
            argv[argv.index("--search-ms") + 1] = "0"
            argv += ["--search-rollouts", self.rollouts]
        out = jobs.run(f"planner-cost {label} pp={pp} mb={mb} threads={threads}", argv, accept=(0, 1, 3))
        return schedule_metrics(out.json(), "dip")

    def run(self, jobs):
        ctx, rows = self.ctx, []
        for pp in self.pps:
            for mb in self.microbatch_counts:
                for threads in self.threads:
                    m = self.plan_ms(jobs, "budget", pp, mb, threads, "time")
                    same = self.plan_ms(jobs, "rollouts", pp, mb, threads, "rollouts")
                    plan_ms, iteration = m.get("plan_ms"), m.get("mean_iteration_ms")
                    rows.append({"pp": pp, "microbatches": mb, "threads": threads, "plan_ms": plan_ms,
                                 "iteration_ms": iteration,
                                 "plan_share": plan_ms / iteration if plan_ms and iteration else None,
                                 "same_work_plan_ms": same.get("plan_ms"),
                                 "error": m.get("error") or same.get("error")})
        fits, speedups = [], []
        for pp in self.pps:
            for threads in self.threads:
                r = [x for x in rows if x["pp"] == pp and x["threads"] == threads]
                fits.append({"pp": pp, "threads": threads,
                             "plan_ms_exponent": loglog_slope([x["microbatches"] for x in r], [x["plan_ms"] for x in r])})
            for mb in self.microbatch_counts:
                one, two = ([x for x in rows if x["pp"] == pp and x["microbatches"] == mb and x["threads"] == t]
                            for t in (1, 2))
                if one and two and one[0]["plan_ms"] and two[0]["plan_ms"]:
                    a, b = one[0]["same_work_plan_ms"], two[0]["same_work_plan_ms"]
                    speedups.append({"pp": pp, "microbatches": mb, "one_thread_ms": one[0]["plan_ms"],
                                     "speedup": one[0]["plan_ms"] / two[0]["plan_ms"],
                                     "same_work_one_thread_ms": a,
                                     "same_work_speedup": a / b if a and b else None})
        self.rows, self.fits = rows, fits
        write_csv(os.path.join(ctx.out, "planner_cost.csv"), rows,
                  ["pp", "microbatches", "threads", "plan_ms", "iteration_ms", "plan_share", "same_work_plan_ms", "error"])
        write_json(os.path.join(ctx.out, "planner_cost_fits.json"), {"growth": fits, "two_threads": speedups,
                                                                     "same_work_rollouts": int(self.rollouts)})
        table = [[x["pp"], x["microbatches"], x["threads"], fmt(x["plan_ms"]), fmt(x["iteration_ms"]),
                  fmt(x["plan_share"], "{:.1%}", "-")] for x in rows]
        ftable = [[f["pp"], f["threads"], fmt(f["plan_ms_exponent"], "{:.2f}", "-")] for f in fits]
        stable = [[x["pp"], x["microbatches"], fmt(x["one_thread_ms"]), fmt(x["speedup"], "{:.2f}x"),
                   fmt(x["same_work_one_thread_ms"]), fmt(x["same_work_speedup"], "{:.2f}x", "-")] for x in speedups]
        return "\n".join([f"### Planner cost: {self.model}, TP 8, obelics, balanced partition, a {self.search_ms} ms "
                          "search per batch (dip-plan's default: 200); plan ms = dip's planning of one batch (segment tuning excluded), iteration ms "
                          "= that batch's simulated iteration\n",
                          markdown_table(["PP", "microbatches", "threads", "plan ms", "iteration ms",
                                          "plan / iteration"], table),
                          "\nGrowth in the microbatch count (plan ms ~ m^k, least squares on log-log):\n",
                          markdown_table(["PP", "threads", "k"], ftable),
                          f"\nTwo planner threads against one: with the {self.search_ms} ms search (the same on both: two "
                          f"threads spend it on more rollouts), and for the same work ({self.rollouts} search rollouts, "
                          "`--search-ms 0 --search-rollouts`):\n",
                          markdown_table(["PP", "microbatches", "1-thread plan ms", "speedup",
                                          "same work: 1-thread plan ms", "same work: speedup"], stable)])


# --- micro-benchmarks -----------------------------------------------------------------------------

class MicroBenchmarks:
    """The Google Benchmark programs (bench/bench_*.cpp -> dip-bench-*) that are built; the rates
    they report as counters (kIsRate) and items_per_second."""

    title = "micro-benchmarks"
    # Quick mode: the cheapest case of each program.
    quick_filters = {"segment_search": "search/10/1", "dual_queue": "interleave/8", "simulator": "simulate_large_plan/split:0/timeline:0",
                     "partition": "min_max_cut/32|modality_partition/vlm_s", "bin_packing": "/8$",
                     "memory_solver": "solve/pairs:1000/in_flight:8/cap_pct:20", "cost_models": "analytic_layer/1"}

    def __init__(self, ctx):
        self.ctx = ctx
        self.programs = sorted(glob.glob(os.path.join(ctx.bench_dir, "dip-bench-*"))) if ctx.bench_dir else []
        self.programs = [p for p in self.programs if os.path.isfile(p) and os.access(p, os.X_OK)]

    def job_count(self):
        return len(self.programs)

    def run(self, jobs):
        ctx, rows = self.ctx, []
        for program in self.programs:
            name = os.path.basename(program)[len("dip-bench-"):]
            path = os.path.join(ctx.out, f"micro_{name}.json")
            argv = [program, f"--benchmark_out={path}", "--benchmark_out_format=json",
                    "--benchmark_min_time=" + ("0.01" if ctx.quick else "0.2")]
            if ctx.quick:
                argv.append("--benchmark_filter=" + self.quick_filters.get(name, "."))
            jobs.run(f"micro {name}", argv)
            try:
                with open(path) as f:
                    benchmarks = json.load(f).get("benchmarks", [])
            except (OSError, json.JSONDecodeError):  # no benchmark matched the filter: nothing written
                benchmarks = []
            for b in benchmarks:
                rates = {k: v for k, v in b.items() if k.endswith("_per_s") or k.endswith("_per_second")}
                for k, v in rates.items():
                    rows.append({"program": name, "benchmark": b["name"], "rate": k, "value": v,
                                 "real_time": b.get("real_time"), "time_unit": b.get("time_unit")})
        self.rows = rows
        write_csv(os.path.join(ctx.out, "micro.csv"), rows, ["program", "benchmark", "rate", "value", "real_time", "time_unit"])
        table = [[r["program"], r["benchmark"], r["rate"], f"{r['value']:.4g}", f"{r['real_time']:.4g} {r['time_unit']}"]
                 for r in rows]
        if not self.programs:
            return "### Micro-benchmarks\n\nskipped: no dip-bench-* programs found (Google Benchmark not installed?)"
        return "\n".join(["### Micro-benchmarks (Google Benchmark; rates per second)\n",
                          markdown_table(["program", "benchmark", "rate", "per second", "time per iteration"], table)])


class Timeline:
    """The first iteration of vlm-s on obelics under 1F1B and dip as Chrome traces (dip-plan
    --trace), for the Gantt chart; the placements come from the same run's JSON."""

    title = "timeline"

    def __init__(self, ctx):
        self.ctx = ctx

    def job_count(self):
        return 2

    def run(self, jobs):
        ctx = self.ctx
        trace = os.path.join(ctx.out, "timeline_trace.json")
        args = ("vlm-s", "obelics")
        extra = ("--search-rollouts", "50")
        dip_first = jobs.run("timeline dip", ctx.plan_argv(*args, ["dip", "1f1b"], "megatron", 8, 1, "0",
                                                           extra + ("--trace", trace)), accept=(0, 1, 3)).json()
        f1b_first = jobs.run("timeline 1f1b placement", ctx.plan_argv(*args, ["1f1b"], "megatron", 8, 1, "0", extra),
                             accept=(0, 1, 3)).json()
        write_json(os.path.join(ctx.out, "timeline_placements.json"),
                   {"dip": dip_first["placement"], "1f1b": f1b_first["placement"],
                    "makespan_ms": {s: dip_first["summary"][s].get("mean_makespan_ms") for s in ("dip", "1f1b")}})
        return ""
