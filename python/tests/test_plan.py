"""Planning batches: closed forms, bounds, memory caps, and what a Plan reports."""

import random

import pytest

import dip
from conftest import random_t2v_batch, random_vlm_batch


def toy_batch(microbatches=8):
    # One 8192-token sequence per microbatch: the shape of dip-plan's "uniform" text batch, and
    # with constant layer costs the tokens do not change the times anyway.
    return [[{"text_tokens": 8192}] for _ in range(microbatches)]


def test_toy_1f1b_closed_form(toy):
    # As tools/CMakeLists.txt's dip_plan_toy_1f1b: 8 layers of 1 ms / 2 ms on 4 ranks, 8
    # microbatches: (m + p - 1)(F + B) = 11 x 6 = 66 ms, bubble 3/11.
    plan = dip.plan(toy, toy_batch(), "1f1b", pp=4)
    assert plan.makespan_ms == pytest.approx(66.0)
    assert plan.bubble_ratio == pytest.approx(3 / 11)
    assert plan.pp == 4 and len(plan.ranks) == 4
    assert plan.busy_ms == pytest.approx([48.0] * 4)
    assert plan.lower_bound_ms == pytest.approx(48.0)


def test_toy_gpipe_matches_1f1b(toy):
    assert dip.plan(toy, toy_batch(), "gpipe", pp=4).makespan_ms == pytest.approx(66.0)


@pytest.mark.parametrize("schedule", dip.schedules())
def test_every_schedule_plans_a_small_vlm_batch(vlm_s, schedule):
    microbatches = 8 if schedule == "dualpipev" else 4  # DualPipeV: as many microbatches as stages (2 x pp)
    batch = [[{"text_tokens": 600, "images": 3}, {"text_tokens": 200, "images": [{"width": 640, "height": 480}]}]]
    plan = dip.plan(vlm_s, batch * microbatches, schedule, search_ms=10)
    assert plan.schedule == schedule
    assert plan.makespan_ms >= plan.lower_bound_ms * (1 - 1e-9)
    assert plan.peak_memory_bytes == max(plan.peak_memory_bytes_per_rank)
    assert plan.peak_memory_bytes <= plan.memory_cap_bytes  # fitted to the GPU by default
    assert len(plan.microbatches) == microbatches and plan.microbatches[0]["images"] == 4
    assert plan.partition == ("optimus" if schedule == "optimus" else
                              "dip" if schedule in ("dip", "static-dip") else "balanced")


def test_dip_is_never_below_the_bound_nor_over_the_cap(vlm_s):
    cap_gib = 60.0
    for seed in range(30):
        rng = random.Random(seed)
        plan = dip.plan(vlm_s, random_vlm_batch(rng, 4), "dip", memory_cap_gib=cap_gib, search_ms=5, seed=seed)
        assert plan.makespan_ms >= plan.lower_bound_ms * (1 - 1e-9), seed
        assert plan.memory_cap_bytes == int(cap_gib * 2**30)
        assert plan.peak_memory_bytes <= plan.memory_cap_bytes, seed


def test_dip_on_text_to_video_batches(t2v_s):
    for seed in range(6):
        plan = dip.plan(t2v_s, random_t2v_batch(random.Random(seed), 4), "dip", search_ms=5, seed=seed)
        assert plan.lower_bound_ms * (1 - 1e-9) <= plan.makespan_ms
        assert plan.peak_memory_bytes <= plan.memory_cap_bytes
        assert sum(mb["clips"] for mb in plan.microbatches) > 0


def test_cluster_arguments_override_the_model(vlm_s):
    batch = [[{"text_tokens": 1000, "images": 2}]] * 4
    plan = dip.plan(vlm_s, batch, "1f1b", pp=2, tp=8, gpu="h200")
    assert (plan.pp, plan.tp, plan.gpu, len(plan.ranks)) == (2, 8, "H200", 2)
    assert plan.memory_cap_bytes == 141 * 10**9


def test_interleaved_uses_chunks(toy):
    plan = dip.plan(toy, toy_batch(), "interleaved", pp=4, chunks=2)
    chunks = {a.chunk for a in plan.ranks[0] if a.kind == "compute"}
    assert len(chunks) == 2
    assert plan.makespan_ms < 66.0


def test_tuning_batches_and_fixed_segments(vlm_s):
    batch = random_vlm_batch(random.Random(7), 4)
    tuned = dip.plan(vlm_s, batch, "static-dip", tuning_batches=[random_vlm_batch(random.Random(8), 4)])
    fixed = dip.plan(vlm_s, batch, "static-dip", segments_per_rank=1)
    assert tuned.partition == fixed.partition == "dip"
    assert {a.chunk for a in fixed.ranks[0] if a.kind == "compute"} != set()


def test_plan_repr_and_lower_bounds(toy):
    plan = dip.plan(toy, toy_batch(), "1f1b", pp=4)
    assert "1f1b" in repr(plan) and "66.000 ms" in repr(plan)
    bounds = plan.lower_bounds
    classic = ("busiest_rank_ms", "critical_path_ms", "average_work_ms")
    assert plan.lower_bound_ms == pytest.approx(max(bounds[k] for k in classic))
    # Uniform 1F1B: the rank window is (m + p - 1)(F + B), the makespan itself; the classic
    # bound says m (F + B).
    assert plan.lower_bound_ms == pytest.approx(48.0)
    assert plan.memory_free_bound_ms == pytest.approx(max(plan.lower_bound_ms, bounds["rank_window_ms"]))
    assert plan.memory_free_bound_ms == pytest.approx(plan.makespan_ms)
    assert plan.lower_bound_ms <= plan.memory_free_bound_ms <= plan.cap_bound_ms <= plan.makespan_ms * (1 + 1e-9)
