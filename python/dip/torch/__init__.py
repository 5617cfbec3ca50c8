"""dip.torch: run dip's plans in PyTorch, one process per pipeline rank over torch.distributed.

    import dip, dip.torch
    planner = dip.Planner(dip.Model.preset("tiny-vlm"), pp=2)
    plan = dip.torch.ExecutablePlan(planner.plan(batch, "dip").executable())
    # on each rank (torch.distributed initialised, e.g. by torchrun or dip.torch.launch):
    model = dip.torch.ReferenceModel(plan.document["model"])      # or your own PipelineModel
    rank = dip.torch.PipelineRank(torch.distributed.get_rank(), model, plan)
    report = rank.step(plan, index=0)   # forward, backward, messages; .grad set on the rank's layers
    optimizer.step()

`python -m dip.torch verify ...` checks plans against the sequential model (verify.py);
`python -m dip.torch bench ...` calibrates dip's cost model on this machine (calibrate.py) and
measures plans against their simulation (bench.py);
docs/pytorch.md is the guide. Modules: plan.py (the executable plan), model.py (what a module
computes: PipelineModel, ReferenceModel), layers.py (reference layers of dip's layer kinds),
runtime.py (a rank's walk over its actions), sequential.py (the reference run), launch.py
(processes on this machine).
"""

from .calibrate import Calibration
from .launch import LaunchError, init_from_environment, launch
from .layers import DipLayer, RowMeta
from .model import MicrobatchData, ModuleLayersModel, PipelineModel, ReferenceModel
from .plan import ExecutablePlan, PlanError
from .runtime import ActivationMeter, PipelineRank, RankFailure, StepReport
from .sequential import SequentialModel

__all__ = [
    "ActivationMeter",
    "Calibration",
    "DipLayer",
    "ExecutablePlan",
    "LaunchError",
    "MicrobatchData",
    "ModuleLayersModel",
    "PipelineModel",
    "PipelineRank",
    "PlanError",
    "RankFailure",
    "ReferenceModel",
    "RowMeta",
    "SequentialModel",
    "StepReport",
    "init_from_environment",
    "launch",
]
