"""Plan.executable() and Plan.to_json(): the version-2 action-list document of a plan.

For tiny-vlm and tiny-t2v on 2 and 4 ranks, every schedule's plan of a batch from the test traces:
a batch with each sub-microbatch's items, integer tensors on every message, every send paired
with a recv carrying the same tensors, and as many sub-microbatches per module as the actions run.
"""

import collections
import copy
import importlib.util
import json
import pathlib
import sys

import pytest

import dip
from conftest import DATA

SCHEDULES = ["dip", "static-dip", "1f1b", "zb1p", "interleaved", "gpipe", "optimus", "zbv"]
TRACES = {"tiny-vlm": DATA / "vlm_trace.jsonl", "tiny-t2v": DATA / "video_trace.jsonl"}


@pytest.fixture(scope="module", params=[(name, pp, size) for name in TRACES for pp in (2, 4) for size in (None, 1)],
                ids=lambda p: f"{p[0]}-pp{p[1]}" + ("-one-item-subs" if p[2] else ""))
def planned(request):
    """(model, batch, {schedule: Plan}, size) for one preset and pipeline size; with one image
    (clip) per sub-microbatch of the modality-aware chains (size 1), or the partitioner's choice."""
    name, pp, size = request.param
    model = dip.Model.preset(name)
    batch = dip.BatchSource(str(TRACES[name]), model, 1).next_batch(4)
    planner = dip.Planner(model, pp=pp, search_ms=0, search_rollouts=4, sub_microbatch_size=size)
    return model, batch, {schedule: planner.plan(batch, schedule) for schedule in SCHEDULES}, size


WORK_FIELDS = ("sequences", "tokens", "token_pairs", "context_tokens", "context_pairs")


def executable_plan_class():
    """dip.torch.ExecutablePlan, from its file: plan.py needs only the standard library, while
    importing dip.torch needs torch."""
    path = pathlib.Path(__file__).resolve().parents[1] / "dip" / "torch" / "plan.py"
    spec = importlib.util.spec_from_file_location("dip_torch_plan", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module.ExecutablePlan


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_executable_document(planned, schedule):
    model, batch, plans, _ = planned
    plan = plans[schedule]
    doc = plan.executable()
    assert doc["format"] == "dip.plan" and doc["version"] == 2
    assert doc["schedule"] == schedule and doc["pipeline_ranks"] == plan.pp
    assert [m["name"] for m in doc["model"]["modules"]] == doc["modules"] == [m["name"] for m in model.modules]
    assert [m["item"] for m in doc["model"]["modules"]] == [m["item"] for m in model.modules]

    # The batch: every microbatch, every module's sub-microbatches with integer rows.
    assert doc["batch"] is not None
    microbatches = doc["batch"]["microbatches"]
    assert len(microbatches) == doc["microbatches"] == len(batch)
    for mb in microbatches:
        assert len(mb["subs"]) == len(doc["modules"])
        for subs in mb["subs"]:
            assert subs and all(is_int(s["rows"]) and s["rows"] >= 0 for s in subs)
            for s in subs:  # the work unit dip priced the sub-microbatch with
                assert set(s["work"]) == set(WORK_FIELDS)
                assert all(isinstance(s["work"][f], float) and s["work"][f] >= 0 for f in WORK_FIELDS)
                assert round(s["work"]["tokens"]) == s["rows"]

    # Tensors are integer and non-negative, on every edge.
    for edge in doc["edges"]:
        for t in edge["tensors"]:
            assert t["kind"] in ("state", "context", "output")
            assert is_int(t["rows"]) and is_int(t["features"]) and t["rows"] >= 0 and t["features"] >= 0
            assert all(is_int(i) for i in t["items"])
            assert "tokens" not in t and "hidden" not in edge  # version 1's fractional shapes are gone

    # Every send has one recv of the same edge on its peer, carrying the same tensors as the edge.
    sends, recvs = {}, {}
    for rank in doc["ranks"]:
        for a in rank["actions"]:
            if a["op"] == "send":
                sends[a["edge"]] = (rank["rank"], a)
            elif a["op"] == "recv":
                recvs[a["edge"]] = (rank["rank"], a)
    assert sends.keys() == recvs.keys()
    for e, (sender, send) in sends.items():
        receiver, recv = recvs[e]
        assert send["peer"] == receiver and recv["peer"] == sender
        assert send["tensors"] == recv["tensors"] == doc["edges"][e]["tensors"]
        assert send["tensors"], "a message between ranks carries something"

    # Sub-microbatches per module: as many as the computes of the module's chain run.
    chain_of_module = {}
    for chunk in doc["placement"]["chunks"]:
        for span in chunk["spans"]:
            chain_of_module[doc["modules"].index(span["module"])] = chunk["chain"]
    subs_run = collections.defaultdict(set)  # (microbatch, chain) -> sub indices computed
    for rank in doc["ranks"]:
        for a in rank["actions"]:
            if a["op"] == "compute":
                chain = doc["placement"]["chunks"][a["chunk"]]["chain"]
                subs_run[(a["microbatch"], chain)].add(a["sub"])
    for j, mb in enumerate(microbatches):
        for m, subs in enumerate(mb["subs"]):
            assert subs_run[(j, chain_of_module[m])] == set(range(len(subs))), (j, m)


def test_one_item_sub_microbatches_split_the_modality_chains(planned):
    _, _, plans, size = planned
    if size is None:
        pytest.skip("the partitioner's sub-microbatch size")
    # Some microbatch holds several images (clips): dip runs them one per sub-microbatch, 1F1B whole.
    dip_counts = [len(subs) for mb in plans["dip"].executable()["batch"]["microbatches"] for subs in mb["subs"]]
    classic_counts = [len(subs) for mb in plans["1f1b"].executable()["batch"]["microbatches"] for subs in mb["subs"]]
    assert max(dip_counts) > 1 and max(classic_counts) == 1


def test_to_json_writes_or_returns_the_same_document(planned, tmp_path):
    _, _, plans, _ = planned
    plan = plans["dip"]
    text = plan.to_json()
    assert isinstance(text, str) and json.loads(text) == plan.executable()
    path = tmp_path / "plan.json"
    assert plan.to_json(path) is None
    assert path.read_text() == text
    assert plan.to_json(str(tmp_path / "again.json")) is None
    assert (tmp_path / "again.json").read_text() == text
    with pytest.raises(dip.Error):
        plan.to_json(tmp_path / "no" / "such" / "folder" / "plan.json")


def test_a_caption_conditions_the_dit_sub_microbatch_of_its_clip():
    model = dip.Model.preset("tiny-t2v")
    batch = dip.BatchSource(str(TRACES["tiny-t2v"]), model, 1).next_batch(4)
    doc = dip.Planner(model, pp=2, search_ms=0, sub_microbatch_size=1).plan(batch, "dip").executable()
    names = doc["modules"]
    dit, projector = names.index("dit"), names.index("projector")
    stages = doc["stages"]
    chunks = doc["placement"]["chunks"]
    seen = 0
    for edge in doc["edges"]:
        src, dst = stages[edge["from"]], stages[edge["to"]]
        if src["kind"] != "F" or dst["kind"] != "F" or chunks[src["chunk"]]["chain"] == chunks[dst["chunk"]]["chain"]:
            continue
        mb = doc["batch"]["microbatches"][src["microbatch"]]
        clips = mb["subs"][dit][dst["sub"]]["items"]
        captioned = [i for i, c in enumerate(mb["clips"]) if c["caption_tokens"] > 0]
        wanted = sorted(captioned.index(c) for c in clips if c in captioned)
        held = set(mb["subs"][projector][src["sub"]]["items"])
        (out,) = [t for t in edge["tensors"] if t["module"] == projector]
        assert out["items"] == [c for c in wanted if c in held]
        assert out["rows"] == sum(mb["captions"][c] for c in out["items"])
        seen += 1
    assert seen > 0


def test_executable_plan_gives_each_sub_microbatch_its_work(planned):
    _, _, plans, _ = planned
    ExecutablePlan = executable_plan_class()
    for schedule in ("dip", "1f1b"):
        doc = plans[schedule].executable()
        plan = ExecutablePlan(doc)
        for j, mb in enumerate(doc["batch"]["microbatches"]):
            for m, subs in enumerate(mb["subs"]):
                for u, sub in enumerate(subs):
                    work = plan.work(j, m, u)
                    assert work == sub["work"] and list(work) == list(WORK_FIELDS)
                    assert round(work["tokens"]) == plan.items(j, m, u)[1]
    doc = copy.deepcopy(plans["dip"].executable())
    del doc["batch"]["microbatches"][0]["subs"][0][0]["work"]["token_pairs"]
    plan = ExecutablePlan(doc)
    with pytest.raises(ValueError, match=r"batch.microbatches\[0\].subs\[0\]\[0\].work: missing field 'token_pairs'"):
        plan.work(0, 0, 0)
    del doc["batch"]["microbatches"][0]["subs"][0][0]["work"]
    with pytest.raises(ValueError, match=r"subs\[0\]\[0\]: missing field 'work'"):
        plan.work(0, 0, 0)
