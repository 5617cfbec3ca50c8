#!/usr/bin/env python3
"""Iteration time of every schedule on the DESIGN.md models and data, in simulation.

Runs dip-plan (--json) twice per (model, data): once with Megatron's parameter-balanced mixed
partition for the classic schedules, once with the best contiguous (balanced) partition, and the
modality-aware schedules (dip, static-dip, optimus) in the first run. Prints a Markdown table of
mean iteration times and DIP's speedup over Megatron interleaved 1F1B (mixed partition), and
DIP's gap to the lower bound (total work / P).

  python3 bench/schedule_matrix.py [--dip-plan build/tools/dip-plan] [--search-ms 200]
"""
import argparse, json, os, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("--dip-plan", default="build/tools/dip-plan")
ap.add_argument("--search-ms", default="200")
ap.add_argument("--ablation-rollouts", default="300", help="the ablation's search budget in rollouts (reproducible)")
ap.add_argument("--microbatches", default="16")
ap.add_argument("--iterations", default="3")
ap.add_argument("--threads", default="1")
ap.add_argument("--models", default="vlm-s,vlm-m,vlm-l,t2v-s,t2v-l")
ap.add_argument("--ablation", default="vlm-s:obelics,vlm-s:laion,vlm-l:obelics,t2v-s:video",
                help="model:data pairs for the ablation in the paper's order ('' to skip)")
args = ap.parse_args()

shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
vlm_data = ["obelics", "laion"] + [os.path.join(shared, f) for f in ("vlm-coco-captions.jsonl", "vlm-scienceqa.jsonl")
                                   if os.path.exists(os.path.join(shared, f))]
t2v_data = ["video"] + [os.path.join(shared, f) for f in ("video-msrvtt.jsonl",) if os.path.exists(os.path.join(shared, f))]

def run(model, data, partition, schedules, search_ms=None, extra=()):
    cmd = [args.dip_plan, "--model", model, "--data", data, "--partition", partition, "--schedules", schedules, *extra,
           "--microbatches", args.microbatches, "--iterations", args.iterations,
           "--search-ms", search_ms if search_ms is not None else args.search_ms,
           "--threads", args.threads, "--seed", "1", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr}")
    return json.loads(out.stdout)

def ms(doc, name):
    s = doc["summary"].get(name, {})
    return s.get("mean_makespan_ms")

def bound(doc):
    # total work / P: the lower bound over all of a run's iterations (mean)
    vals = [it["lower_bound_ms"] for it in doc["iterations"]]
    return sum(vals) / len(vals)

print("| model | data | megatron interleaved | balanced interleaved | balanced zb1p | optimus | static-dip | dip | dip peak GiB | speedup vs megatron | dip / bound |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
speedups = []
gaps = []
for model in [m for m in args.models.split(",") if m]:
    for data in (t2v_data if model.startswith("t2v") else vlm_data):
        mega = run(model, data, "megatron", "interleaved,dip,static-dip,optimus")
        bal = run(model, data, "balanced", "interleaved,zb1p")
        d = ms(mega, "dip")
        m = ms(mega, "interleaved")
        peak = mega["summary"].get("dip", {}).get("max_peak_memory_bytes")
        # DIP's own bound: the busiest rank, critical path or total work / P of its graph
        dip_bound = None
        if d:
            its = [it["schedules"]["dip"] for it in mega["iterations"] if "makespan_ms" in it["schedules"].get("dip", {})]
            dip_bound = sum(i["lower_bound_ms"] for i in its) / len(its)
        fmt = lambda v: f"{v:.0f}" if v else "fail"
        sp = m / d if (m and d) else None
        gap = d / dip_bound if (d and dip_bound) else None
        if sp: speedups.append(sp)
        if gap: gaps.append(gap)
        cells = [model, os.path.basename(data), fmt(m), fmt(ms(bal, "interleaved")), fmt(ms(bal, "zb1p")),
                 fmt(ms(mega, "optimus")), fmt(ms(mega, "static-dip")), fmt(d),
                 f"{peak / 2**30:.1f}" if peak else "-", f"{sp:.3f}x" if sp else "-", f"{gap:.3f}" if gap else "-"]
        print("| " + " | ".join(cells) + " |")
        if not d:
            print(f"<!-- dip failed on {model} {data}: {mega['summary'].get('dip', {}).get('error', '')} -->")
if speedups:
    print(f"\nmean speedup of dip over megatron interleaved: {sum(speedups)/len(speedups):.3f}x; "
          f"mean dip / lower bound: {sum(gaps)/len(gaps):.3f}")

if args.ablation:
    print("\nAblation in the paper's order (mean iteration ms; each step's speedup over the first):")
    print("| model | data | mixed 1F1B (megatron, recompute to fit) | + modality-aware partition (1 segment per rank, static order) | + interleaving (K segments, dual queue) | + reordering (search) | + memory strategies (dip) |")
    print("|---|---|---|---|---|---|---|")
    for pair in args.ablation.split(","):
        model, data = pair.split(":")
        # Step 1 is Megatron's 1F1B as trainers run it: recompute turned on where it would not
        # fit the GPU. Steps 2-4 fit by their in-flight limits alone (no recompute or offload);
        # step 5 adds dip's per-pair memory strategies.
        off = ("--memory-strategies", "false", "--fit-memory", "false")
        rollouts = ("--search-rollouts", args.ablation_rollouts)
        steps = [ms(run(model, data, "megatron", "1f1b"), "1f1b"),
                 ms(run(model, data, "balanced", "static-dip", None, off + ("--segments-per-rank", "1")), "static-dip"),
                 ms(run(model, data, "balanced", "dip", "0", off), "dip"),
                 ms(run(model, data, "balanced", "dip", "0", off + rollouts), "dip"),
                 ms(run(model, data, "balanced", "dip", "0", rollouts), "dip")]
        cells = [f"{v:.0f} ({steps[0] / v:.2f}x)" if v else "fail" for v in steps]
        print(f"| {model} | {data} | " + " | ".join(cells) + " |")
