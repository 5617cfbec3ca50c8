"""The sequential run a pipelined one must reproduce: the whole model in one process.

For each microbatch in order, every module runs all its layers on all its items (every image,
clip or caption at once, in module topological order), sink modules add their loss, and one
backward per microbatch accumulates the weight gradients. It asks the model exactly what the
runtime asks it (model.py's `PipelineModel`), with no sub-microbatches and no placement.
"""

from __future__ import annotations

import torch

from .model import MicrobatchData, PipelineModel, all_items


def topological_modules(modules: list[dict]) -> list[int]:
    order, placed = [], set()
    while len(order) < len(modules):
        ready = [m for m in range(len(modules)) if m not in placed and all(p in placed for p in modules[m]["inputs"])]
        if not ready:
            raise ValueError("the model's modules form a cycle")
        order.extend(ready)
        placed.update(ready)
    return order


class SequentialModel:
    """Every layer of every module in one process, run microbatch by microbatch."""

    def __init__(self, model: PipelineModel, modules: list[dict], device: torch.device | None = None):
        self.model = model
        self.modules = modules
        self.device = device or torch.device("cpu")
        self.layers: list[list[torch.nn.Module]] = [
            [layer.to(self.device) for layer in model.layers(m, 0, len(spec["layers"]))]
            for m, spec in enumerate(modules)]
        self.order = topological_modules(modules)
        self.consumers = [[c for c, spec in enumerate(modules) if m in spec["inputs"]] for m in range(len(modules))]

    def named_parameters(self):
        for m, layers in enumerate(self.layers):
            for i, layer in enumerate(layers):
                for name, p in layer.named_parameters():
                    yield f"{self.modules[m]['name']}.{i}.{name}", p

    def step(self, batch: list[dict], index: int) -> float:
        """One training step's forward and backward over `batch` (an executable plan's
        `batch.microbatches`); leaves each parameter's .grad set to the step's gradient."""
        for _, p in self.named_parameters():
            p.grad = None
        total = 0.0
        for j, document in enumerate(batch):
            mb = MicrobatchData(j, index, len(batch), document)
            outputs: dict[int, tuple[list[int], torch.Tensor]] = {}
            loss = None
            for m in self.order:
                items = all_items(self.modules[m], mb)
                producers = {p: outputs[p] for p in self.modules[m]["inputs"]}
                x, meta = self.model.begin(m, mb, items, producers)
                for layer in self.layers[m]:
                    x = layer(x, meta)
                outputs[m] = (items, x)
                if not self.consumers[m]:
                    part = self.model.loss(m, mb, items, x)
                    loss = part if loss is None else loss + part
            if loss is not None:
                loss.backward()
                total += float(loss.detach())
        for _, p in self.named_parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return total
