#!/usr/bin/env python3
"""dip-plan's makespans must not move under refactoring.

Runs dip-plan --json on a few presets, data sets and flag sets with fixed seeds and rollout
budgets (--search-ms 0, one thread: reproducible) and compares every schedule's makespan, bubble
ratio and lower bound, per iteration, with the numbers recorded in dip_plan_golden.json (recorded
before the planner API refactor). A schedule that failed must still fail, and one that planned
must still plan.

  dip_plan_golden.py DIP_PLAN [--record]     (--record rewrites the JSON from this build)
"""
import json
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
GOLDEN = HERE / "dip_plan_golden.json"
TOY = str(HERE.parent / "data" / "toy.json")
TRACE = str(HERE.parent / "data" / "vlm_trace.jsonl")
ALL = "dip,static-dip,optimus,interleaved,1f1b,zb1p,gpipe"
FIXED = ["--search-ms", "0", "--search-rollouts", "32", "--threads", "1", "--schedules", ALL]

CASES = {
    "vlm-s-obelics": ["--model", "vlm-s", "--data", "obelics", "--microbatches", "8", "--iterations", "2"],
    "vlm-s-laion-56gib-dip-partition": ["--model", "vlm-s", "--data", "laion", "--microbatches", "8",
                                        "--memory-cap-gib", "56", "--partition", "dip"],
    "vlm-s-trace-k2": ["--model", "vlm-s", "--data", TRACE, "--microbatches", "4", "--segments-per-rank", "2"],
    "vlm-m-mixed": ["--model", "vlm-m", "--data", "mixed", "--microbatches", "8", "--seed", "3"],
    "t2v-s-video": ["--model", "t2v-s", "--data", "video", "--microbatches", "8", "--iterations", "2"],
    "t2v-s-video-no-fit": ["--model", "t2v-s", "--data", "video", "--microbatches", "8", "--fit-memory", "false",
                           "--memory-strategies", "false", "--sub-microbatch-size", "2"],
    "toy-pp4-megatron": ["--model", TOY, "--pp", "4", "--microbatches", "6", "--partition", "megatron",
                         "--tune-segments", "false", "--chunks", "3"],
    "vlm-s-dynamic-h100": ["--model", "vlm-s", "--data", "dynamic", "--gpu", "H100", "--microbatches", "8",
                           "--p2p-latency-us", "20"],
}
FIELDS = ("makespan_ms", "bubble_ratio", "lower_bound_ms")


def run(dip_plan, args):
    out = subprocess.run([dip_plan, *args, *FIXED, "--json"], capture_output=True, text=True)
    if out.returncode not in (0, 1, 3):  # 3: some schedules refused
        sys.exit(f"dip-plan {' '.join(args)} failed ({out.returncode}): {out.stderr}")
    doc = json.loads(out.stdout)
    result = []
    for it in doc["iterations"]:
        per = {}
        for name, s in it["schedules"].items():
            per[name] = {"error": True} if "error" in s else {f: s[f] for f in FIELDS}
        result.append(per)
    return result


def main():
    dip_plan = sys.argv[1]
    results = {name: run(dip_plan, args) for name, args in CASES.items()}
    if "--record" in sys.argv:
        GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"recorded {GOLDEN}")
        return
    golden = json.loads(GOLDEN.read_text())
    failures = []
    for case, iterations in golden.items():
        got = results.get(case)
        for i, expected in enumerate(iterations):
            for schedule, want in expected.items():
                have = got[i].get(schedule) if got and i < len(got) else None
                where = f"{case} iteration {i} {schedule}"
                if have is None:
                    failures.append(f"{where}: missing")
                elif "error" in want or "error" in have:
                    if ("error" in want) != ("error" in have):
                        failures.append(f"{where}: expected {'failure' if 'error' in want else 'a plan'}, got {have}")
                else:
                    for f in FIELDS:
                        if abs(have[f] - want[f]) > 1e-9 * max(1.0, abs(want[f])):
                            failures.append(f"{where}: {f} {have[f]!r}, recorded {want[f]!r}")
    for f in failures:
        print("MOVED:", f)
    if failures:
        sys.exit(f"{len(failures)} results moved")
    print(f"all {sum(len(it) for c in golden.values() for it in c)} schedule results as recorded")


if __name__ == "__main__":
    main()
