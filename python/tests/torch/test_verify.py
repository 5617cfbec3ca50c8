"""dip.torch end to end: real rank processes (gloo) run dip's plans and must match the sequential
model, step by step (python -m dip.torch verify). ctest runs these by group (-k); each group is
its own ctest so that they spread over the cores.

Traces come from ../shared/data when it is there, else from the fixtures in tests/data: short
captions with one image each, and short documents with none or one (as in the shared COCO and
ScienceQA traces; tests/data/vlm_trace.jsonl, the readers' edge cases with a 7000-token sample,
made these tests take 6 minutes longer), and the video clips.
"""

import json
import pathlib
import time

import pytest

from dip.torch import verify

REPO = pathlib.Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "data"


def trace(kind: str) -> str:
    shared = {"vlm": SHARED / "vlm-coco-captions.jsonl", "vlm-docs": SHARED / "vlm-scienceqa.jsonl",
              "t2v": SHARED / "video-msrvtt.jsonl"}[kind]
    fixture = {"vlm": "torch_vlm_captions.jsonl", "vlm-docs": "torch_vlm_documents.jsonl",
               "t2v": "video_trace.jsonl"}[kind]
    return str(shared if shared.exists() else REPO / "tests" / "data" / fixture)


def run_verify(tmp_path, *args) -> tuple[int, dict]:
    out = tmp_path / "verify.json"
    status = verify.main([*map(str, args), "--json", str(out)])
    return status, json.loads(out.read_text()) if out.exists() else {}


ALL = "dip,static-dip,optimus,gpipe,1f1b,interleaved,zb1p,zbv,dualpipev"


@pytest.mark.parametrize("model,data", [("tiny-vlm", "vlm"), ("tiny-t2v", "t2v")], ids=["vlm", "t2v"])
@pytest.mark.parametrize("pp", [2, 4], ids=["pp2", "pp4"])
def test_every_schedule_matches_sequential(tmp_path, model, data, pp):
    # DualPipeV needs as many microbatches as stages (2 pp): at PP 4 the 4 microbatches run the
    # other eight (ZB-V's V included).
    schedules = ALL if pp == 2 else ALL.replace(",dualpipev", "")
    status, result = run_verify(tmp_path, "--model", model, "--pp", pp, "--schedule", schedules, "--data",
                                trace(data), "--microbatches", 4, "--steps", 2, "--seed", 1)
    assert status == 0, result
    assert {r["schedule"] for r in result["results"]} == set(schedules.split(","))
    for r in result["results"]:
        assert r["ok"] and len(r["steps"]) == 2
        for step in r["steps"]:
            assert step["max_rel_error"] <= 1e-4 and step["loss_relative_error"] <= 1e-4


def test_dip_splits_encoders_into_sub_microbatches(tmp_path):
    """The multimodal case itself: dip's plan gives the image encoder several sub-microbatches
    (and the LLM one), at most two images each, and still matches."""
    status, result = run_verify(tmp_path, "--model", "tiny-vlm", "--pp", 2, "--schedule", "dip", "--data",
                                trace("vlm-docs"), "--microbatches", 3, "--steps", 2, "--dtype", "float64",
                                "--sub-microbatch-size", 2)
    assert status == 0, result
    subs = result["results"][0]["most_sub_microbatches"]
    assert subs["vit"] > 1 and subs["projector"] == subs["vit"] and subs["llm"] == 1, subs
    assert result["results"][0]["steps"][0]["max_rel_error"] <= 1e-10


def test_memory_cap_makes_dip_recompute_or_offload_and_lowers_the_peak(tmp_path):
    common = ["--model", "tiny-vlm", "--pp", 2, "--schedule", "dip", "--data", trace("vlm"), "--microbatches", 6,
              "--steps", 1]
    status, capped = run_verify(tmp_path, *common, "--memory-cap-fraction", 0.4)
    assert status == 0, capped
    strategies = capped["results"][0]["strategies"]
    assert strategies.get("recompute", 0) + strategies.get("offload", 0) > 0, strategies
    status, kept = run_verify(tmp_path, *common, "--keep-everything")
    assert status == 0, kept
    assert set(kept["results"][0]["strategies"]) == {"keep"}
    capped_peaks = capped["results"][0]["steps"][0]["peak_activation_bytes"]
    kept_peaks = kept["results"][0]["steps"][0]["peak_activation_bytes"]
    assert max(capped_peaks) < max(kept_peaks), (capped_peaks, kept_peaks)


def test_thirty_steps_follow_the_sequential_loss_curve(tmp_path):
    status, result = run_verify(tmp_path, "--model", "tiny-vlm", "--pp", 2, "--schedule", "dip", "--data",
                                trace("vlm"), "--microbatches", 2, "--steps", 30, "--lr", 0.5)
    assert status == 0, result
    steps = result["results"][0]["steps"]
    assert len(steps) == 30
    losses = [s["loss"] for s in steps]
    assert all(abs(s["loss"] - s["sequential_loss"]) <= 1e-4 * abs(s["sequential_loss"]) for s in steps)
    assert losses[-1] < losses[0]  # it trains: same batches' loss falls under SGD


def test_a_wrong_model_is_caught(tmp_path, monkeypatch):
    """The check can fail: a sequential model seeded differently from the ranks disagrees."""
    original = verify.ReferenceModel

    def other_seed(model, seed=0, dtype=None):
        return original(model, seed=seed + 1, dtype=dtype)

    monkeypatch.setattr(verify, "ReferenceModel", other_seed)  # the parent's (sequential) model only
    status, result = run_verify(tmp_path, "--model", "tiny-vlm", "--pp", 2, "--schedule", "1f1b", "--data",
                                trace("vlm"), "--microbatches", 2, "--steps", 1)
    assert status == 1
    assert not result["results"][0]["ok"]


@pytest.mark.parametrize("fault", ["raise:1:3", "drop-send:0:1"])
def test_a_fault_ends_every_rank_with_an_error_naming_rank_and_action(tmp_path, capsys, fault):
    timeout = 3
    started = time.monotonic()
    status, result = run_verify(tmp_path, "--model", "tiny-vlm", "--pp", 2, "--schedule", "1f1b", "--data",
                                trace("vlm"), "--microbatches", 2, "--steps", 1, "--timeout", timeout,
                                "--inject-fault", fault)
    elapsed = time.monotonic() - started
    assert status == 3
    error = result["results"][0]["error"]
    assert "rank 0 action" in error and "rank 1 action" in error, error  # every rank ends, each says where
    kind, rank, action = fault.split(":")
    if kind == "raise":
        assert f"rank {rank} action {action} (" in error and "injected fault" in error
    else:
        assert "no message" in error  # the receiver timed out on the message that never came
    assert elapsed < 60, elapsed  # start-up, planning and the receive timeouts, nothing hangs
