"""dip.torch calibration and `python -m dip.torch bench`: layer samples in the runtime's terms,
the fit dip plans with, and the measured-against-simulated report."""

import json
import pathlib
import subprocess
import sys

import pytest
import torch

import dip
from dip.torch import ExecutablePlan, ReferenceModel
from dip.torch.bench import chrome_trace, summarize
from dip.torch.calibrate import Calibration, _Recorded, layer_groups, profile_layers, time_layer
from dip.torch.layers import Linear, RowMeta

DATA = pathlib.Path(__file__).resolve().parents[2].parent / "tests" / "data"
TRACES = {"tiny-vlm": DATA / "vlm_trace.jsonl", "tiny-t2v": DATA / "video_trace.jsonl"}


def _plans(preset: str, pp: int, schedule: str, microbatches: int = 2, **options) -> tuple[list, list]:
    model = dip.Model.preset(preset)
    batch = dip.BatchSource(str(TRACES[preset]), model, 1).next_batch(microbatches)
    plan = dip.Planner(model, pp=pp, threads=1, search_ms=0, **options).plan(batch, schedule)
    return plan, ExecutablePlan(plan.executable())


def test_layer_groups_separate_each_distinct_layer_shape():
    _, plan = _plans("tiny-vlm", 1, "gpipe")
    groups = {(g["module"], tuple(g["layers"])): g["module_wide"] for g in layer_groups(plan.document["model"])}
    # vit: a patch embedding then 4 blocks; llm: an embedding, 4 blocks, the head; the projector.
    assert groups == {("vit", (1, 2, 3, 4)): True, ("vit", (0,)): False, ("projector", (0,)): True,
                      ("llm", (1, 2, 3, 4)): True, ("llm", (0,)): False, ("llm", (5,)): False}


def test_a_linear_layer_keeps_its_input_and_sends_its_output():
    # y = x W^T + b saves x for W's gradient (the weight is not an activation): exactly
    # rows * in floats kept, rows * out floats out, and I and W each run.
    layer = Linear(12, 20)
    x = torch.randn(7, 12, requires_grad=True)
    work = {"sequences": 1, "tokens": 7, "token_pairs": 49, "context_tokens": 0, "context_pairs": 0}
    sample = time_layer(layer, _Recorded(x, RowMeta([7]), work), repeats=2)
    assert sample["activation_bytes"] == 7 * 12 * 4
    assert sample["output_bytes"] == 7 * 20 * 4
    assert sample["work"]["tokens"] == 7
    assert min(sample["forward_ms"], sample["backward_input_ms"], sample["backward_weight_ms"]) > 0


def test_calibration_fits_every_layer_and_plans_with_it():
    _, calibration_plan = _plans("tiny-vlm", 1, "dip", microbatches=6, sub_microbatch_size=2)
    _, whole = _plans("tiny-vlm", 1, "gpipe", microbatches=6)
    groups = profile_layers([calibration_plan, whole], samples_per_layer=5, repeats=1)
    assert all(len(g["samples"]) >= 3 for g in groups), [(g["module"], len(g["samples"])) for g in groups]
    calibration = Calibration.merge("tiny-vlm", [groups, groups], {"latency_us": 50.0, "gbps": 2.0, "samples": []},
                                    {})
    costs = calibration.costs()
    assert sorted(costs.modules) == ["llm", "projector", "vit"]
    model = dip.Model.preset("tiny-vlm")
    # Activation bytes are not timings: the fit reproduces them within 1% (attention keeps
    # segment-length-squared probabilities, the rest is linear in tokens; the basis is chosen on
    # the times and the bytes together, so it need not be the one that fits the bytes exactly).
    for g in groups:
        for sample in g["samples"]:
            fitted = costs.cost(model, g["module"], g["layers"][0], sample["work"])
            assert fitted["activation_bytes"] == pytest.approx(sample["activation_bytes"], rel=1e-2, abs=64)
            assert fitted["output_bytes"] == pytest.approx(sample["output_bytes"], rel=1e-6, abs=1)
    batch = dip.BatchSource(str(TRACES["tiny-vlm"]), model, 2).next_batch(2)
    plan = dip.Planner(model, pp=2, threads=1, search_ms=0, costs=costs, **calibration.link_options()).plan(batch,
                                                                                                          "1f1b")
    assert plan.makespan_ms > 0
    restored = Calibration.from_json(json.loads(json.dumps(calibration.to_json())))
    assert restored.costs().cost(model, "llm", 1, groups[0]["samples"][0]["work"]) == \
        costs.cost(model, "llm", 1, groups[0]["samples"][0]["work"])


def test_summary_compares_the_slowest_rank_with_the_simulation():
    planned = {s: {"simulated": [{"makespan_ms": ms, "activation_bytes": [100, 200]}]}
               for s, ms in (("dip", 100.0), ("1f1b", 150.0))}
    measured = {"dip": [{"seconds": [[0.10, 0.12, 0.11]], "peak_activation_bytes": [110]},
                        {"seconds": [[0.11, 0.10, 0.13]], "peak_activation_bytes": [190]}],
                "1f1b": [{"seconds": [[0.15, 0.15, 0.15]], "peak_activation_bytes": [100]},
                         {"seconds": [[0.16, 0.16, 0.16]], "peak_activation_bytes": [200]}]}
    summary = summarize(planned, measured)
    dip_batch = summary["schedules"]["dip"]["batches"][0]
    assert dip_batch["measured_ms"]["median"] == pytest.approx(120.0)  # max over ranks: 110, 120, 130
    assert dip_batch["measured_ms"]["min"] == pytest.approx(110.0)
    assert dip_batch["ratio"] == pytest.approx(1.2)
    assert dip_batch["activation_bytes"]["ratio"] == pytest.approx([1.1, 0.95])
    assert summary["speedups"]["1f1b"]["measured"] == pytest.approx(160.0 / 120.0)
    assert summary["speedups"]["1f1b"]["simulated"] == pytest.approx(1.5)
    assert summary["mean_abs_time_error"] == pytest.approx((0.2 + 160.0 / 150.0 - 1) / 2)


def test_chrome_trace_has_a_process_per_rank():
    trace = chrome_trace([[("compute", "F0@c0", 0.0, 0.5)], [("recv", "recv", 0.0, 0.25)]], "dip")
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert [(e["pid"], e["tid"], e["dur"]) for e in spans] == [(0, 0, 0.5e6), (1, 2, 0.25e6)]


def _bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dip.torch", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_bench_measures_every_schedule_against_its_simulation(tmp_path):
    out, traces = tmp_path / "bench.json", tmp_path / "traces"
    run = _bench("--model", "tiny-vlm", "--data", str(TRACES["tiny-vlm"]), "--microbatches", "2", "--batches", "1",
                 "--iterations", "1", "--warmup", "0", "--schedules", "dip,1f1b", "--samples-per-layer", "4",
                 "--repeats", "1", "--calibration-sizes", "2", "--calibration-batches", "1", "--search-ms", "20",
                 "--json", str(out), "--trace", str(traces), "--save-calibration", str(tmp_path / "calibration.json"))
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    summary = result["summary"]
    assert set(summary["schedules"]) == {"dip", "1f1b"}
    for s in summary["schedules"].values():
        (batch,) = s["batches"]
        assert batch["measured_ms"]["median"] > 0 and batch["simulated_ms"] > 0
        assert len(batch["activation_bytes"]["measured"]) == 2 and min(batch["activation_bytes"]["predicted"]) > 0
    assert result["link"]["gbps"] > 0
    assert set(summary["speedups"]) == {"1f1b"}
    for schedule in ("dip", "1f1b"):
        for kind in ("measured", "simulated"):
            events = json.loads((traces / f"{schedule}-{kind}.json").read_text())["traceEvents"]
            assert {e["pid"] for e in events if e["ph"] == "X" and e["cat"] == "compute"} == {0, 1}
    assert "mean |measured/simulated - 1|" in run.stdout
    # A saved calibration is reused as is: no layer is timed again.
    again = _bench("--model", "tiny-vlm", "--data", str(TRACES["tiny-vlm"]), "--microbatches", "2", "--batches", "1",
                   "--iterations", "1", "--warmup", "0", "--schedules", "gpipe", "--calibration",
                   str(tmp_path / "calibration.json"))
    assert again.returncode == 0, again.stderr
    assert "calibrating" not in again.stderr


@pytest.mark.parametrize("args,message", [(["--schedules", "dip,nope"], "unknown schedule 'nope'"),
                                          (["--iterations", "0"], "--iterations must be >= 1"),
                                          (["--model", "no-such-model"], "no-such-model")])
def test_bench_rejects_bad_arguments(args, message):
    run = _bench(*args, timeout=120)
    assert run.returncode == 2
    assert message in run.stderr


def test_in_run_corrections_recover_known_factors_and_added_milliseconds():
    # Actions priced by a known rule, then "measured" as 1.2x the forward price, 0.9x the
    # backward's, plus 0.4 ms per vit layer per action and 1.5 ms per forward stage: the fit must
    # give those back (ridge almost off).
    from dip.torch.calibrate import OVERHEAD, PER_LAYER, _stage_parts, fit_run_scales

    plans = [_plans("tiny-vlm", 2, s, microbatches=4)[1] for s in ("1f1b", "zb1p", "dip")]

    def price(module, layer, work):
        t = work["tokens"]
        return {"forward_ms": 0.01 * t + 0.5, "backward_input_ms": 0.02 * t + 0.3, "backward_weight_ms": 0.01 * t}

    truth = {"forward": 1.2, "backward_input": 0.9, "backward_weight": 0.9}
    added = {("vit", "forward" + PER_LAYER): 0.4, (OVERHEAD, "forward"): 1.5}

    def seconds(plan, stage):
        parts = _stage_parts(plan, stage, price)
        ms = sum(v * (added.get(k, 0.0) if (k[0] == OVERHEAD or k[1].endswith(PER_LAYER)) else truth[k[1]])
                 for k, v in parts.items())
        return ms / 1e3

    measured = [[[(s.id, seconds(p, s.id)) for s in p.stages if s.rank == rank] for p in plans] for rank in (0, 1)]
    fitted = fit_run_scales(plans, measured, price, ridge=1e-9)
    # Where the actions determine a correction it comes back exactly (I and W of a chain's first
    # chunk only ever run together, so there only their sum is determined); and the corrected
    # prices reproduce every action.
    assert fitted[(OVERHEAD, "forward")] == pytest.approx(1.5, abs=1e-3)
    assert fitted[("vit", "forward" + PER_LAYER)] == pytest.approx(0.4, abs=1e-3)
    assert fitted[("llm", "forward")] == pytest.approx(1.2, rel=1e-3)
    for plan, per_rank in zip(plans, zip(*measured)):
        for actions in per_rank:
            for stage, measured_s in actions:
                parts = _stage_parts(plan, stage, price)
                ms = sum(v * fitted[k] for k, v in parts.items())
                assert ms == pytest.approx(1e3 * measured_s, rel=1e-3, abs=1e-3), plan.describe(stage)


@pytest.mark.parametrize("preset,source,kind", [("tiny-vlm", "obelics", "images"), ("tiny-t2v", "video", "clips")])
def test_bench_defaults_to_the_model_familys_source(preset, source, kind):
    from dip.torch import bench

    args = bench.parser().parse_args(["--model", preset, "--batches", "1", "--microbatches", "2",
                                      "--calibration-batches", "1"])
    runs, calibration = bench._batches(args, dip.Model.preset(preset))
    assert args.data == source
    assert all(kind in sample for batch in runs + calibration for mb in batch for sample in mb)
