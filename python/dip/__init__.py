"""dip: plan pipeline-parallel schedules for multimodal model training, from Python.

    import dip
    model = dip.Model.preset("vlm-s")
    batch = [[{"text_tokens": 900, "images": 4}, {"text_tokens": 300, "images": 2}]] * 8
    plan = dip.plan(model, batch, schedule="dip", search_ms=50)
    print(plan.makespan_ms, plan.bubble_ratio, plan.peak_memory_bytes)
    for action in plan.ranks[0][:5]:
        print(action.kind, action.stage, action.module, action.microbatch, action.peer)

    planner = dip.Planner(model, search_ms=50)  # one per training run: placements made once
    plan = planner.plan(batch, "dip", index=0)

The planning itself is dip's C++ library (the `_dip` extension next to this file); see
docs/python.md for building, a worked example and the API reference.
"""

from ._dip import (
    Action,
    BatchSource,
    Error,
    Model,
    Plan,
    Planner,
    ProfiledCosts,
    __version__,
    batch_from_source,
    batch_sources,
    gpus,
    plan,
    presets,
    schedules,
)

__all__ = [
    "Action",
    "BatchSource",
    "Error",
    "Model",
    "Plan",
    "Planner",
    "ProfiledCosts",
    "__version__",
    "batch_from_source",
    "batch_sources",
    "gpus",
    "plan",
    "presets",
    "schedules",
]
