"""dip's ZB-V and DualPipeV orders equal the ones PyTorch's own schedule classes generate.

ScheduleZBVZeroBubble and ScheduleDualPipeV compute every rank's order in
_calculate_single_rank_operations from the rank count, the stage count and the microbatch
count alone; the test calls that method on an instance built without a process group (no
stages, no communicator: only the three counts it reads) and compares it, rank by rank, with
the compute actions of dip's plan of the same shape. PyTorch's None slots are dropped, an
OVERLAP_F_B is its forward then its full backward, and a full backward on dip's split graph is
I then W back to back.
"""

import pytest

import dip

schedules = pytest.importorskip("torch.distributed.pipelining.schedules")

TORCH_CLASSES = {"zbv": "ScheduleZBVZeroBubble", "dualpipev": "ScheduleDualPipeV"}


def torch_orders(schedule, ranks, microbatches):
    cls = getattr(schedules, TORCH_CLASSES[schedule])
    bare = object.__new__(cls)  # only the counts _calculate_single_rank_operations reads
    bare.pp_group_size = ranks
    bare._n_microbatches = microbatches
    bare.num_stages = bare._num_stages = 2 * ranks
    letter = {schedules.FORWARD: "F", schedules.BACKWARD_INPUT: "I", schedules.BACKWARD_WEIGHT: "W"}
    orders = []
    for rank in range(ranks):
        cells = []
        for action in bare._calculate_single_rank_operations(rank):
            if action is None:
                continue
            for a in action.sub_actions or (action,):
                if a.computation_type == schedules.FULL_BACKWARD:
                    cells += [f"{a.stage_index}I{a.microbatch_index}", f"{a.stage_index}W{a.microbatch_index}"]
                else:
                    cells.append(f"{a.stage_index}{letter[a.computation_type]}{a.microbatch_index}")
        orders.append(cells)
    return orders


def dip_orders(plan):
    # One chain: a chunk's index is its position on the chain, PyTorch's stage index.
    return [[f"{a.chunk}{a.stage}{a.microbatch}" for a in actions if a.kind == "compute"] for actions in plan.ranks]


@pytest.mark.parametrize("schedule", ["zbv", "dualpipev"])
def test_orders_equal_pytorch(toy, schedule):
    compared = 0
    for ranks in (1, 2, 3, 4):  # the toy model's 8 layers make up to 8 chunks
        smallest = 1 if schedule == "zbv" else 2 * ranks  # ScheduleDualPipeV needs m >= 2p
        for microbatches in range(smallest, 13):
            plan = dip.plan(toy, [[{"text_tokens": 4096}]] * microbatches, schedule, pp=ranks)
            assert dip_orders(plan) == torch_orders(schedule, ranks, microbatches), (ranks, microbatches)
            compared += 1
    assert compared >= 30


def test_dualpipev_refuses_fewer_microbatches_than_stages(toy):
    with pytest.raises(dip.Error) as caught:
        dip.plan(toy, [[{"text_tokens": 4096}]] * 7, "dualpipev", pp=4)
    assert "at least as many microbatches as stages" in str(caught.value)
