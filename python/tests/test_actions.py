"""Per-rank action lists: complete, paired and ordered in simulated time."""

import collections
import random

import pytest

import dip
from conftest import random_vlm_batch


def plans(toy, vlm_s):
    batch = random_vlm_batch(random.Random(3), 4)
    yield dip.plan(toy, [[{"text_tokens": 4096}]] * 6, "1f1b", pp=4)
    yield dip.plan(toy, [[{"text_tokens": 4096}]] * 6, "zb1p", pp=4)
    for schedule in ("dip", "interleaved", "optimus"):
        yield dip.plan(vlm_s, batch, schedule, search_ms=5)


def test_every_send_has_its_recv_on_the_peer(toy, vlm_s):
    for plan in plans(toy, vlm_s):
        sends = {}
        recvs = {}
        for rank, actions in enumerate(plan.ranks):
            for a in actions:
                if a.kind == "send":
                    assert a.peer != rank and a.edge not in sends
                    sends[a.edge] = (rank, a)
                elif a.kind == "recv":
                    assert a.peer != rank and a.edge not in recvs
                    recvs[a.edge] = (rank, a)
                else:
                    assert a.peer is None and a.edge is None
        assert sends.keys() == recvs.keys(), plan.schedule
        for edge, (sender, send) in sends.items():
            receiver, recv = recvs[edge]
            assert send.peer == receiver and recv.peer == sender
            assert (send.stage, send.chunk, send.microbatch, send.sub) == (recv.stage, recv.chunk, recv.microbatch,
                                                                           recv.sub)
            assert recv.end_ms >= send.end_ms - 1e-9  # the data arrives before the receiver has it


def test_each_stage_is_computed_once_and_ranks_do_not_overlap(toy, vlm_s):
    for plan in plans(toy, vlm_s):
        seen = collections.Counter()
        for actions in plan.ranks:
            clock = 0.0
            for a in actions:
                if a.kind != "compute":
                    continue
                seen[(a.stage, a.chunk, a.microbatch, a.sub)] += 1
                assert a.start_ms >= clock - 1e-9 and a.end_ms >= a.start_ms
                clock = a.end_ms
        assert set(seen.values()) == {1}
        forwards = sum(1 for key in seen if key[0] == "F")
        backwards = sum(1 for key in seen if key[0] in "BI")
        assert forwards == backwards
        assert max(a.end_ms for actions in plan.ranks for a in actions) == pytest.approx(plan.makespan_ms)


def test_action_fields(toy):
    plan = dip.plan(toy, [[{"text_tokens": 8192}]] * 8, "zb1p", pp=4)
    kinds = collections.Counter(a.stage for a in plan.ranks[0] if a.kind == "compute")
    assert kinds == {"F": 8, "I": 8, "W": 8}
    first = plan.ranks[0][0]
    assert (first.kind, first.stage, first.module, first.microbatch, first.strategy) == ("compute", "F", "lm", 0, "keep")
    d = first.to_dict()
    assert d["kind"] == "compute" and d["label"] == first.label and d["peer"] is None
    assert repr(first).startswith("<dip.Action")


def test_memory_strategies_show_up_under_a_tight_cap(vlm_s):
    batch = [[{"text_tokens": 2000, "images": 20}]] * 8
    plan = dip.plan(vlm_s, batch, "1f1b", memory_cap_gib=50)
    strategies = {a.strategy for actions in plan.ranks for a in actions}
    assert strategies - {"keep"}, "a 50 GiB cap needs recompute or offload somewhere"
    assert plan.peak_memory_bytes <= plan.memory_cap_bytes
