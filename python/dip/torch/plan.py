"""An executable dip plan as the PyTorch runtime reads it: version 2 of dip's action-list JSON.

`ExecutablePlan(document)` takes the dict of `dip.Plan.executable()` (or `json.load` of a file
written by `dip-plan --export` / `dip.Plan.to_json`) and indexes what a rank needs to walk its
actions: the model's modules and layers, the placement (which layers of which module each
chunk holds), every stage and edge with the exact tensors a message carries, the items
(images, clips, captions, the packed sequence) of every sub-microbatch, and each rank's action
list. docs/plan-format.md is the format's reference; this module checks what the runtime relies
on and raises `PlanError` naming the field otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any

SUPPORTED_VERSION = 2


class PlanError(ValueError):
    """The document is not an executable dip plan (wrong format or version, no batch, ...)."""


@dataclasses.dataclass(frozen=True)
class Span:
    module: int  # module id
    first: int   # first layer
    stop: int    # one past the last layer


@dataclasses.dataclass(frozen=True)
class Chunk:
    id: int
    rank: int
    chain: int
    position: int
    spans: tuple[Span, ...]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One tensor of a message: a module's hidden `state`, its cross-attention `context`, or its
    finished `output`, for the listed items (indices into the microbatch's images, clips or
    captions; [0] for the packed sequence)."""
    module: int
    kind: str
    rows: int
    features: int
    items: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Stage:
    id: int
    kind: str  # F, B, I or W
    chunk: int
    microbatch: int
    sub: int
    rank: int


@dataclasses.dataclass(frozen=True)
class Edge:
    id: int
    source: int  # stage ids
    target: int
    tensors: tuple[TensorSpec, ...]


@dataclasses.dataclass(frozen=True)
class Action:
    index: int   # position in the rank's list
    op: str      # compute, send or recv
    stage: int   # compute: the stage; send/recv: the edge's producer
    edge: int    # send/recv only (else -1)
    peer: int    # send/recv only (else -1)
    strategy: str  # compute: keep, recompute or offload
    label: str


def _field(obj: dict, name: str, where: str) -> Any:
    if name not in obj:
        raise PlanError(f"{where}: missing field '{name}'")
    return obj[name]


class ExecutablePlan:
    """Version 2 of dip's action-list JSON, indexed for execution."""

    def __init__(self, document: dict):
        if _field(document, "format", "plan") != "dip.plan":
            raise PlanError("plan: 'format' is not 'dip.plan'")
        version = _field(document, "version", "plan")
        if version != SUPPORTED_VERSION:
            raise PlanError(f"plan: version {version}; dip.torch runs version {SUPPORTED_VERSION} "
                            "(export with a dip of this release)")
        self.document = document
        self.schedule: str = document["schedule"]
        self.iteration: int = document["iteration"]
        self.ranks: int = _field(document, "pipeline_ranks", "plan")
        self.microbatches: int = _field(document, "microbatches", "plan")
        self.split_backward: bool = _field(document, "split_backward", "plan")

        model = _field(document, "model", "plan")
        self.model_name: str = model["name"]
        self.modules: list[dict] = list(model["modules"])
        self.module_ids = {m["name"]: i for i, m in enumerate(self.modules)}
        self.consumers: list[list[int]] = [[] for _ in self.modules]
        for i, m in enumerate(self.modules):
            for p in m["inputs"]:
                self.consumers[p].append(i)

        placement = _field(document, "placement", "plan")
        self.chunks: list[Chunk] = []
        for c, chunk in enumerate(placement["chunks"]):
            spans = tuple(Span(self.module_ids[s["module"]], s["first_layer"], s["last_layer"] + 1)
                          for s in chunk["spans"])
            self.chunks.append(Chunk(c, chunk["rank"], chunk["chain"], chunk["position"], spans))
        self.chains: list[list[int]] = [list(chain["chunks"]) for chain in placement["chains"]]
        self.chain_inputs: list[list[int]] = [list(chain["inputs"]) for chain in placement["chains"]]
        self._place_modules()

        batch = document.get("batch")
        if batch is None:
            raise PlanError("plan: 'batch' is null: the plan was exported without its batch's items, so no "
                            "runtime can tell which images, clips or captions a sub-microbatch holds "
                            "(export it from dip.Planner.plan or dip-plan --data)")
        self.batch: list[dict] = list(batch["microbatches"])
        if len(self.batch) != self.microbatches:
            raise PlanError(f"plan: batch has {len(self.batch)} microbatches, the plan {self.microbatches}")

        self.stages: list[Stage] = [
            Stage(i, s["kind"], s["chunk"], s["microbatch"], s["sub"], s["rank"])
            for i, s in enumerate(document["stages"])]
        self.stage_index: dict[tuple[str, int, int, int], int] = {
            (s.kind, s.chunk, s.microbatch, s.sub): s.id for s in self.stages}
        self.edges: list[Edge] = []
        self.in_edges: list[list[int]] = [[] for _ in self.stages]
        self.out_edges: list[list[int]] = [[] for _ in self.stages]
        self.edge_between: dict[tuple[int, int], int] = {}
        for e, edge in enumerate(document["edges"]):
            tensors = tuple(TensorSpec(t["module"], t["kind"], t["rows"], t["features"], tuple(t["items"]))
                            for t in edge["tensors"])
            self.edges.append(Edge(e, edge["from"], edge["to"], tensors))
            self.out_edges[edge["from"]].append(e)
            self.in_edges[edge["to"]].append(e)
            self.edge_between[(edge["from"], edge["to"])] = e

        self.actions: list[list[Action]] = []
        for r, rank in enumerate(document["ranks"]):
            if rank["rank"] != r:
                raise PlanError(f"plan: ranks[{r}] is rank {rank['rank']}")
            listed = []
            for i, a in enumerate(rank["actions"]):
                op = a["op"]
                if op == "compute":
                    stage = self.stages[a["stage"]]
                    listed.append(Action(i, op, stage.id, -1, -1, a["strategy"], self.describe(stage.id)))
                elif op in ("send", "recv"):
                    edge = self.edges[a["edge"]]
                    arrow = f"{self.describe(edge.source)} -> {self.describe(edge.target)}"
                    label = f"{op} {arrow} {'to' if op == 'send' else 'from'} rank {a['peer']}"
                    listed.append(Action(i, op, edge.source, edge.id, a["peer"], "keep", label))
                else:
                    raise PlanError(f"plan: ranks[{r}].actions[{i}]: unknown op '{op}'")
            self.actions.append(listed)
        if len(self.actions) != self.ranks:
            raise PlanError(f"plan: {len(self.actions)} rank lists for {self.ranks} ranks")

    # --- placement facts ----------------------------------------------------------------------

    def _place_modules(self) -> None:
        """Where each module's layers lie: its chain and the positions of its first and last
        chunk (the runtime, like dip's C++ executor, needs each module in one chain)."""
        n = len(self.modules)
        self.module_chain = [-1] * n
        self.first_position = [-1] * n
        self.last_position = [-1] * n
        next_layer = [0] * n
        for k, chain in enumerate(self.chains):
            for position, c in enumerate(chain):
                for span in self.chunks[c].spans:
                    m = span.module
                    name = self.modules[m]["name"]
                    if self.module_chain[m] not in (-1, k):
                        raise PlanError(f"placement chunk {c}: module '{name}' is spread over two chains")
                    if span.first != next_layer[m]:
                        raise PlanError(f"placement chunk {c}: module '{name}' layers start at {span.first}, "
                                        f"expected {next_layer[m]} (chain order)")
                    self.module_chain[m] = k
                    if span.first == 0:
                        self.first_position[m] = position
                    self.last_position[m] = position
                    next_layer[m] = span.stop
        for m, module in enumerate(self.modules):
            if next_layer[m] != len(module["layers"]):
                raise PlanError(f"placement: does not hold every layer of module '{module['name']}'")

    def layer_count(self, module: int) -> int:
        return len(self.modules[module]["layers"])

    def is_sink(self, module: int) -> bool:
        """A module feeding no other computes a loss."""
        return not self.consumers[module]

    def rank_chunks(self, rank: int) -> list[Chunk]:
        return [c for c in self.chunks if c.rank == rank]

    # --- stages -------------------------------------------------------------------------------

    def describe(self, stage_id: int) -> str:
        """'F3.1@c2': forward of microbatch 3, sub-microbatch 1, on chunk 2 (as dip prints it)."""
        s = self.stages[stage_id]
        chain = self.chunks[s.chunk].chain
        split = self.sub_count(s.microbatch, chain) > 1
        return f"{s.kind}{s.microbatch}{'.' + str(s.sub) if split else ''}@c{s.chunk}"

    def sub_count(self, microbatch: int, chain: int) -> int:
        for m, k in enumerate(self.module_chain):
            if k == chain:
                return len(self.batch[microbatch]["subs"][m])
        return 1

    def items(self, microbatch: int, module: int, sub: int) -> tuple[list[int], int]:
        """The items and rows module `module` works on in sub-microbatch `sub` of `microbatch`."""
        entry = self.batch[microbatch]["subs"][module][sub]
        return list(entry["items"]), int(entry["rows"])

    WORK_FIELDS = ("sequences", "tokens", "token_pairs", "context_tokens", "context_pairs")

    def work(self, microbatch: int, module: int, sub: int) -> dict:
        """The work unit (dip::work_unit) dip priced module `module`'s stages of sub-microbatch
        `sub` of `microbatch` with: {"sequences", "tokens", "token_pairs", "context_tokens",
        "context_pairs"}, floats. Raises PlanError naming the field if the plan lacks it."""
        where = f"plan: batch.microbatches[{microbatch}].subs[{module}][{sub}]"
        entry = self.batch[microbatch]["subs"][module][sub]
        work = _field(entry, "work", where)
        if not isinstance(work, dict):
            raise PlanError(f"{where}.work: expected an object, got {type(work).__name__}")
        out = {}
        for name in self.WORK_FIELDS:
            value = _field(work, name, where + ".work")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise PlanError(f"{where}.work.{name}: expected a number >= 0, got {value!r}")
            out[name] = float(value)
        return out

    def forward_of(self, stage_id: int) -> int:
        s = self.stages[stage_id]
        return self.stage_index[("F", s.chunk, s.microbatch, s.sub)]

    def forward_edge_of(self, backward_edge: int) -> int:
        """The forward edge a gradient message flows back along: B/I(consumer) -> B/I(producer)
        carries the gradient of F(producer) -> F(consumer)."""
        edge = self.edges[backward_edge]
        producer = self.forward_of(edge.target)
        consumer = self.forward_of(edge.source)
        try:
            return self.edge_between[(producer, consumer)]
        except KeyError:
            raise PlanError(f"plan: edge {backward_edge} ({self.describe(edge.source)} -> "
                            f"{self.describe(edge.target)}) has no forward edge") from None

    def item_rows(self, module: int, microbatch: int, item: int) -> int:
        """Rows one item takes in `module`'s output: an image's patch tokens in an image encoder
        and its LLM tokens after, a clip's latent tokens, a caption's tokens, or the whole packed
        sequence."""
        mb = self.batch[microbatch]
        kind = self.modules[module]["item"]
        if kind == "image":
            own_encoding = self.modules[module]["image"] is not None
            return int(mb["images"][item]["encoder_tokens" if own_encoding else "tokens"])
        if kind == "clip":
            return int(mb["clips"][item]["latent_tokens"])
        if kind == "caption":
            return int(mb["captions"][item])
        return int(sum(mb["sequence_lengths"]))
