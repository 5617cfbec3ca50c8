"""dip.torch in one process: a one-rank plan through PipelineRank equals the sequential model,
and ModuleLayersModel runs a user's own modules as a dip model's layers."""

import pathlib

import pytest
import torch

import dip
from dip.torch import ExecutablePlan, ModuleLayersModel, PipelineRank, ReferenceModel, SequentialModel

REPO = pathlib.Path(__file__).resolve().parents[3]


def one_rank_plan(preset: str, trace: str, schedule: str = "dip") -> dict:
    model = dip.Model.preset(preset)
    batch = dip.BatchSource(str(REPO / "tests" / "data" / trace), model, 1).next_batch(3)
    return dip.Planner(model, pp=1, search_ms=0, search_rollouts=4).plan(batch, schedule).executable()


def sequential_grads(model, document) -> tuple[float, dict]:
    reference = SequentialModel(model, document["model"]["modules"])
    loss = reference.step(document["batch"]["microbatches"], 0)
    return loss, {name: p.grad.clone() for name, p in reference.named_parameters()}


@pytest.mark.parametrize("preset,trace", [("tiny-vlm", "vlm_trace.jsonl"), ("tiny-t2v", "video_trace.jsonl")])
def test_one_rank_runtime_equals_the_sequential_model(preset, trace):
    document = one_rank_plan(preset, trace)
    plan = ExecutablePlan(document)
    rank = PipelineRank(0, ReferenceModel(document["model"], seed=3), plan)
    report = rank.step(plan, 0)
    loss, expected = sequential_grads(ReferenceModel(document["model"], seed=3), document)
    assert report.loss == pytest.approx(loss, rel=1e-5)
    got = dict(rank.named_parameters())
    assert set(got) == set(expected)
    for name, g in expected.items():
        assert torch.allclose(got[name].grad, g, rtol=1e-4, atol=1e-7), name
    assert report.peak_activation_bytes > 0


def test_module_layers_model_runs_your_modules():
    document = one_rank_plan("tiny-vlm", "vlm_trace.jsonl", "1f1b")
    reference = ReferenceModel(document["model"], seed=5)
    # Your modules: here the reference layers themselves, so the run must equal the reference's.
    layers = {m["name"]: reference.layers(i, 0, len(m["layers"])) for i, m in enumerate(document["model"]["modules"])}
    ours = ModuleLayersModel(document["model"], layers, seed=5)
    loss, grads = sequential_grads(ours, document)
    expected_loss, expected = sequential_grads(ReferenceModel(document["model"], seed=5), document)
    assert loss == expected_loss
    assert all(torch.equal(grads[n], expected[n]) for n in expected)

    # Your loss replaces the reference one: a loss of zero leaves zero gradients.
    silent = ModuleLayersModel(document["model"], layers, loss=lambda name, mb, items, y: (y * 0).sum(), seed=5)
    _, zero = sequential_grads(silent, document)
    assert all(float(g.abs().max()) == 0.0 for g in zero.values())


def test_module_layers_model_names_what_is_missing():
    document = one_rank_plan("tiny-vlm", "vlm_trace.jsonl", "1f1b")
    reference = ReferenceModel(document["model"])
    layers = {m["name"]: reference.layers(i, 0, len(m["layers"])) for i, m in enumerate(document["model"]["modules"])}
    with pytest.raises(ValueError, match="no layers for module 'vit'"):
        ModuleLayersModel(document["model"], {k: v for k, v in layers.items() if k != "vit"})
    with pytest.raises(ValueError, match=r"layers\['llm'\]: 1 modules"):
        ModuleLayersModel(document["model"], {**layers, "llm": layers["llm"][:1]})
    with pytest.raises(ValueError, match="no module 'decoder'"):
        ModuleLayersModel(document["model"], {**layers, "decoder": []})
