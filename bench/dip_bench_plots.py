#!/usr/bin/env python3
"""The evaluation's plots, drawn from the CSV/JSON that dip_bench.py writes (matplotlib, Agg
backend, PNG at 100 dpi so each stays well under 200 KB). Plots whose input is missing are
skipped, so a partial run (--sections) still plots what it has.

  python3 bench/dip_bench_plots.py --results bench/results --images docs/images
"""
import argparse
import csv
import json
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCHEDULE_COLOURS = {"gpipe": "#9e9e9e", "1f1b": "#6d8fb3", "interleaved": "#2f5d8a", "zb1p": "#7b5ea7",
                    "static-dip": "#e3a33b", "optimus": "#c46b2b", "dip": "#2e8b57"}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def save(fig, images, name):
    path = os.path.join(images, name)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"dip-bench plots: {path} ({os.path.getsize(path) // 1024} KB)", file=sys.stderr)


def main_comparison(results, images):
    """Throughput of each schedule relative to Megatron interleaved 1F1B, geometric mean over each
    model's data sets (a failed schedule contributes nothing to its bar)."""
    rows = read_csv(os.path.join(results, "main.csv"))
    models = list(dict.fromkeys(r["model"] for r in rows))
    schedules = [("gpipe", "megatron"), ("1f1b", "megatron"), ("interleaved", "megatron"), ("zb1p", "megatron"),
                 ("interleaved", "balanced"), ("static-dip", "modality"), ("optimus", "modality"), ("dip", "modality")]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / len(schedules)
    for k, (s, p) in enumerate(schedules):
        heights = []
        for m in models:
            ratios = []
            for data in dict.fromkeys(r["data"] for r in rows if r["model"] == m):
                get = lambda sched, part: next((number(r["mean_iteration_ms"]) for r in rows if r["model"] == m and
                                                r["data"] == data and r["schedule"] == sched and r["partition"] == part), None)
                base, value = get("interleaved", "megatron"), get(s, p)
                if base and value:
                    ratios.append(base / value)
            heights.append(math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else 0)
        label = s if p != "balanced" else f"{s} (balanced)"
        colour = SCHEDULE_COLOURS[s] if p != "balanced" else "#8fb8de"
        ax.bar([i + (k - len(schedules) / 2 + 0.5) * width for i in range(len(models))], heights, width,
               label=label, color=colour)
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("throughput / Megatron interleaved")
    ax.set_title("Simulated throughput relative to Megatron interleaved 1F1B (geomean over data sets)")
    ax.legend(ncol=8, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    save(fig, images, "main_comparison.png")


def ablation(results, images):
    rows = [r for r in read_csv(os.path.join(results, "ablation.csv")) if r["paper_s"]]
    if not rows:
        return
    names = [r["name"] for r in rows]
    ours = [number(r["speedup_vs_step1"]) or 0 for r in rows]
    paper = [number(r["paper_speedup_vs_step1"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], paper, 0.4, label="paper (VLM-S, seconds on H800)", color="#9e9e9e")
    ax.bar([x + 0.2 for x in xs], ours, 0.4, label=f"dip, simulated ({rows[0]['model']}, {rows[0]['data']})",
           color=SCHEDULE_COLOURS["dip"])
    for x, v in zip(xs, ours):
        ax.text(x + 0.2, v, f"{v:.2f}x", ha="center", va="bottom", fontsize=8)
    for x, v in zip(xs, paper):
        ax.text(x - 0.2, v, f"{v:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [n.replace("+ ", "+\n") for n in names], fontsize=8)
    ax.set_ylim(0, max(ours + paper) * 1.12)
    ax.set_ylabel("speedup over step 1")
    ax.set_title("Ablation: each step's speedup over mixed 1F1B")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    save(fig, images, "ablation.png")


def dynamic(results, images):
    rows = read_csv(os.path.join(results, "dynamic.csv"))
    its = [int(r["iteration"]) for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4))
    for s in SCHEDULE_COLOURS:
        if s in rows[0]:
            ys = [number(r[s]) for r in rows]
            ax.plot(its, [y / 1000 if y else float("nan") for y in ys], label=s, color=SCHEDULE_COLOURS[s],
                    linewidth=2.2 if s == "dip" else 1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("iteration time (s, simulated)")
    images_ax = ax.twinx()
    images_ax.fill_between(its, [number(r["min_images"]) for r in rows], [number(r["max_images"]) for r in rows],
                           color="#cccccc", alpha=0.35, step="mid", label="images per microbatch (min-max)")
    images_ax.set_ylabel("images per microbatch")
    ax.set_zorder(images_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(fontsize=8, ncol=4, loc="upper right")
    ax.set_title("Dynamic workload: images per microbatch rise, fall, then text only")
    save(fig, images, "dynamic_workload.png")


def search_curve(results, images):
    rows = read_csv(os.path.join(results, "search_curve.csv"))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for threads in sorted(set(r["threads"] for r in rows), key=int):
        budgets = sorted(set(float(r["budget_ms"]) for r in rows if r["threads"] == threads))
        mean = []
        for b in budgets:
            ratios = [float(r["makespan_ms"]) / float(r["reference_ms"]) for r in rows
                      if r["threads"] == threads and float(r["budget_ms"]) == b]
            mean.append(sum(ratios) / len(ratios))
        ax.plot(budgets, mean, marker="o", label=f"{threads} thread(s)")
    ax.set_xscale("log")
    ax.axhline(1.01, color="grey", linestyle="--", linewidth=0.8, label="1% over the longest search")
    ax.set_xlabel("search budget per batch (ms)")
    ax.set_ylabel("iteration time / longest search's")
    ax.set_title("Segment search: quality against time budget (VLM-L)")
    ax.legend(fontsize=8)
    save(fig, images, "search_curve.png")


def scale(results, images):
    rows = read_csv(os.path.join(results, "scale.csv"))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key in dict.fromkeys((r["config"], r["pp"]) for r in rows):
        r = [x for x in rows if (x["config"], x["pp"]) == key and number(x["plan_ms"])]
        ax.plot([int(x["microbatches"]) for x in r], [float(x["plan_ms"]) for x in r], marker="o",
                label=f"{key[0]}, PP {key[1]}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("microbatches per batch")
    ax.set_ylabel("dip planning time per batch (ms)")
    ax.set_title("Planner cost at scale (log-log)")
    ax.legend(fontsize=8)
    save(fig, images, "scale.png")


def timeline(results, images):
    """Gantt chart of the first iteration: one row per rank, 1F1B above dip, same batch. Colour:
    module (encoder or LLM), light for forward, dark for backward."""
    with open(os.path.join(results, "timeline_trace.json")) as f:
        events = json.load(f)["traceEvents"]
    with open(os.path.join(results, "timeline_placements.json")) as f:
        placements = json.load(f)
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
    order = [pid for pid in sorted(names) if names[pid] in ("1f1b", "dip")]
    shades = {"encoder": ("#f2c38b", "#d9822b"), "llm": ("#9cc3e6", "#2f5d8a"), "mixed": ("#c9b3e0", "#7b5ea7")}
    end = max(e["ts"] + e["dur"] for e in events if e.get("ph") == "X") / 1e6
    fig, axes = plt.subplots(len(order), 1, figsize=(11, 1.2 + 0.45 * 4 * len(order)), sharex=True)
    for ax, pid in zip(axes if len(order) > 1 else [axes], order):
        schedule = names[pid]
        modules = {}
        for rank in placements.get(schedule, []):
            for c in rank["chunks"]:  # the vision encoder and its projector count as one: the encoder
                modules.setdefault(c["chunk"], set()).add("llm" if c["module"] == "llm" else "encoder")
        ranks = sorted({e["tid"] // 2 for e in events if e.get("pid") == pid and e.get("ph") == "X"})
        for e in events:
            if e.get("pid") != pid or e.get("ph") != "X" or e["tid"] % 2:
                continue
            chunk = int(re.search(r"@c(\d+)", e["name"]).group(1))
            mods = modules.get(chunk, {"mixed"})
            module = next(iter(mods)) if len(mods) == 1 else "mixed"
            light, dark = shades.get(module, shades["mixed"])
            colour = light if e["cat"] == "F" else dark
            ax.barh(e["tid"] // 2, e["dur"] / 1e6, left=e["ts"] / 1e6, height=0.8, color=colour, linewidth=0)
        makespan = placements.get("makespan_ms", {}).get(schedule)
        ax.set_yticks(ranks, [f"rank {r}" for r in ranks], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{schedule}: {makespan / 1000:.2f} s" if makespan else schedule, fontsize=9, loc="left")
        ax.set_xlim(0, end)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("#f2c38b", "#d9822b", "#9cc3e6", "#2f5d8a", "#c9b3e0", "#7b5ea7")]
    fig.legend(handles, ["encoder F", "encoder B", "LLM F", "LLM B", "encoder+LLM chunk F", "encoder+LLM chunk B"],
               ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0))
    axes_list = axes if len(order) > 1 else [axes]
    axes_list[-1].set_xlabel("time (s, simulated)")
    fig.suptitle("First iteration of vlm-s on OBELICS, 8 microbatches: 1F1B (Megatron partition) vs dip", fontsize=10)
    save(fig, images, "timeline.png")


def _measured_index(results):
    with open(os.path.join(results, "measured.json")) as f:
        return json.load(f)


def measured_vs_simulated(results, images):
    """Per model, each schedule's time over the benchmark's batches: measured (sum of the
    per-batch medians; whiskers: sums of the minima and maxima) beside dip's simulation."""
    index = _measured_index(results)
    models = list(index["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        with open(os.path.join(results, index["models"][model]["json"])) as f:
            result = json.load(f)
        schedules = result["summary"]["schedules"]
        names = list(schedules)
        xs = range(len(names))
        for x, name in zip(xs, names):
            batches = schedules[name]["batches"]
            median = sum(b["measured_ms"]["median"] for b in batches)
            low = sum(b["measured_ms"]["min"] for b in batches)
            high = sum(b["measured_ms"]["max"] for b in batches)
            simulated = sum(b["simulated_ms"] for b in batches)
            colour = SCHEDULE_COLOURS.get(name, "#9e9e9e")
            ax.bar(x - 0.2, median, 0.4, color=colour, yerr=[[median - low], [high - median]], capsize=3,
                   error_kw={"linewidth": 0.8}, label="measured (median, min-max)" if x == 0 else None)
            ax.bar(x + 0.2, simulated, 0.4, color=colour, alpha=0.35, hatch="//", edgecolor=colour,
                   label="simulated" if x == 0 else None)
            ax.text(x, max(high, simulated) * 1.02, f"{median / simulated:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), names, fontsize=8, rotation=20)
        ax.set_ylabel("ms, one batch" if result["batches"] == 1 else f"ms, sum over {result['batches']} batches")
        error = result["summary"]["mean_abs_time_error"]
        ax.set_title(f"{model}, PP {result['pp']}: mean |measured/simulated - 1| = {error:.1%}", fontsize=9)
        ax.margins(y=0.12)
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle("dip.torch on CPU ranks: measured iteration time against dip's simulation (labels: ratio)",
                 fontsize=10)
    fig.tight_layout()
    save(fig, images, "measured_vs_simulated.png")


STAGE_COLOURS = {"F": "#9cc3e6", "B": "#2f5d8a", "I": "#d9822b", "W": "#7b5ea7"}


def _trace_spans(path):
    """{rank: [(tid, name, start ms, duration ms)]} of a Chrome trace's complete events."""
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    spans = {}
    for e in events:
        if e.get("ph") == "X":
            spans.setdefault(e["pid"], []).append((e.get("tid", 0), e["name"], e["ts"] / 1e3, e["dur"] / 1e3))
    return spans


def measured_gantt(results, images):
    """One measured iteration (the first batch) of dip and of 1F1B: per rank the compute spans
    coloured by stage kind (F, B, I, W), the waits for messages hatched grey and the sends as
    thin red bars; the dashed
    line is the simulated makespan of the same plan."""
    index = _measured_index(results)
    gantt = index["gantt"]
    folder = os.path.join(results, gantt["traces"])
    schedules = [s for s in gantt["schedules"] if os.path.exists(os.path.join(folder, f"{s}-measured.json"))]
    if not schedules:
        return
    measured = {s: _trace_spans(os.path.join(folder, f"{s}-measured.json")) for s in schedules}
    simulated = {}
    for s in schedules:
        path = os.path.join(folder, f"{s}-simulated.json")
        if os.path.exists(path):
            spans = [x for rank in _trace_spans(path).values() for x in rank]
            simulated[s] = max((start + dur for _, _, start, dur in spans), default=None)
    ranks = sorted({r for spans in measured.values() for r in spans})
    end = max([start + dur for spans in measured.values() for rank in spans.values() for _, _, start, dur in rank] +
              [v for v in simulated.values() if v])
    fig, axes = plt.subplots(len(schedules), 1, figsize=(11, 1.0 + 0.55 * len(ranks) * len(schedules)), sharex=True,
                             squeeze=False)
    for ax, schedule in zip(axes[:, 0], schedules):
        spans = measured[schedule]
        for rank, rank_spans in spans.items():
            for tid, name, start, dur in rank_spans:
                if tid == 2:  # waiting for a message
                    ax.barh(rank, dur, left=start, height=0.35, color="#d0d0d0", hatch="////", edgecolor="#8c8c8c",
                            linewidth=0)
                elif tid == 1:  # sending one
                    ax.barh(rank, dur, left=start, height=0.2, color="#e07b7b", linewidth=0)
                elif tid == 0:
                    ax.barh(rank, dur, left=start, height=0.8, color=STAGE_COLOURS.get(name[:1], "#9e9e9e"),
                            edgecolor="white", linewidth=0.3)
        took = max((start + dur for rank in spans.values() for _, _, start, dur in rank), default=0)
        title = f"{schedule}: measured {took:.0f} ms"
        if simulated.get(schedule):
            ax.axvline(simulated[schedule], color="black", linestyle="--", linewidth=0.8)
            title += f", simulated {simulated[schedule]:.0f} ms (dashed)"
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_yticks(ranks, [f"rank {r}" for r in ranks], fontsize=8)
        ax.set_ylim(len(ranks) - 0.5, -0.5)
        ax.set_xlim(0, end * 1.02)
    axes[-1, 0].set_xlabel("time since the step began (ms, measured)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in STAGE_COLOURS.values()]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="#d0d0d0", hatch="////", edgecolor="#8c8c8c"))
    handles.append(plt.Rectangle((0, 0), 1, 1, color="#e07b7b"))
    fig.legend(handles, ["forward", "backward", "input gradient (I)", "weight gradient (W)", "waiting for a message",
                         "sending one"], ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"One measured iteration of {gantt['model']} on torch ranks: " + " vs ".join(schedules), fontsize=10)
    fig.tight_layout()
    save(fig, images, "measured_gantt.png")


def measured(results, images):
    measured_vs_simulated(results, images)
    measured_gantt(results, images)


PLOTS = {"main.csv": main_comparison, "ablation.csv": ablation, "dynamic.csv": dynamic,
         "search_curve.csv": search_curve, "scale.csv": scale, "timeline_trace.json": timeline, "measured.json": measured}


def main():
    ap = argparse.ArgumentParser(description="draw dip-bench's plots")
    ap.add_argument("--results", required=True)
    ap.add_argument("--images", required=True)
    args = ap.parse_args()
    os.makedirs(args.images, exist_ok=True)
    for source, draw in PLOTS.items():
        if os.path.exists(os.path.join(args.results, source)):
            draw(args.results, args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
