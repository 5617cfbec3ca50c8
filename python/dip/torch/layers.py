"""Reference torch implementations of dip's layer kinds (include/dip/model/layer.hpp).

Contract ("dip.torch layer contract", issue 17):
- `build_layer(layer_dict, dtype, generator=g)` makes a `DipLayer` from one object of a version-2
  plan's `model.modules[m].layers` (`{"kind": "transformer", "hidden": ..., ...}`). Parameters
  are drawn from `g` alone, so two processes seeding their generators alike get equal weights.
- Every `DipLayer` is called as `layer(x, meta)`: `x` is (rows, features) and `meta` a `RowMeta`
  saying what the rows are (below). Layers keep the number of rows, except `ProjectorLayer`,
  which merges rows (`x.reshape(-1, input)`); `LmHead` returns logits, the loss is the caller's.
- Parameter counts equal dip::parameter_count: attention and MLP matrices are bias-free, norms
  have a weight and no bias, `linear` and `projector` matrices have biases.
- Attention never crosses a segment, so a row's output does not depend on which other segments
  share the call (up to floating-point rounding of the row-wise matrix products).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DipLayer",
    "DitBlock",
    "Embedding",
    "FeedForward",
    "GroupedQueryAttention",
    "Linear",
    "LmHead",
    "ModuleLayer",
    "ProjectorLayer",
    "RowMeta",
    "TransformerBlock",
    "attend_within_segments",
    "build_layer",
    "initialize_parameters",
]


@dataclass
class RowMeta:
    """What the rows of a layer's input are.

    segments: x's rows are consecutive segments (an image, a clip, a caption, one sample of a
        packed sequence); attention never crosses segments. sum(segments) == rows.
    causal: causal attention within each segment (LLM backbones); dit blocks ignore it.
    token_ids: (rows,) ids for an `Embedding` layer, which then ignores x (it may be None).
    inject_positions, inject: an `Embedding` writes inject's rows at these row positions after
        the lookup (image features placed in the sequence); gradients flow back to `inject`.
    context, context_segments: cross-attention conditioning for dit blocks. The context rows are
        consecutive groups; group s (context_segments[s] rows, possibly 0: then segment s gets no
        cross-attention output) belongs to segment s of x.
    """

    segments: list[int]
    causal: bool = False
    token_ids: Tensor | None = None
    inject_positions: Tensor | None = None
    inject: Tensor | None = None
    context: Tensor | None = None
    context_segments: list[int] | None = None


class DipLayer(nn.Module):
    """A layer of a dip module: `forward(x, meta)` maps x's rows as `meta` describes them."""

    kind: ClassVar[str] = ""  # the layer object's "kind" in a version-2 plan

    def forward(self, x: Tensor, meta: RowMeta) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward(x, meta)")


def _check_segments(where: str, segments: list[int], rows: int, what: str = "x") -> None:
    if any(length < 0 for length in segments):
        raise ValueError(f"{where}: segment lengths must be >= 0, got {segments}")
    if sum(segments) != rows:
        raise ValueError(f"{where}: segments sum to {sum(segments)} but {what} has {rows} rows")


# Exact per-segment attention. Two ways were weighed: one call of scaled_dot_product_attention
# with a block-diagonal mask, and one call per segment. The mask costs rows^2 time and memory
# for every head however small the segments (3000 rows of 100 images: 30x the useful work), and
# its sums over masked-out zeros are reduced in an order that depends on the other segments. Per
# segment, a segment is computed exactly as if it were alone. Consecutive segments of equal
# length (images at their default size, clips of equal length) go in one batched call, which
# keeps the Python loop short; the batch dimension does not mix segments either.
def attend_within_segments(query: Tensor, key: Tensor, value: Tensor, query_segments: list[int],
                           key_segments: list[int], causal: bool) -> Tensor:
    """Attention of query segment s to key/value segment s; (rows, heads, head_dim) each.

    A query segment whose key segment is empty gets zeros (no contribution)."""
    heads, head_dim = query.shape[1], query.shape[2]
    pieces: list[Tensor] = []
    query_start = key_start = 0
    first = 0
    while first < len(query_segments):
        query_length, key_length = query_segments[first], key_segments[first]
        end = first + 1
        while end < len(query_segments) and query_segments[end] == query_length and key_segments[end] == key_length:
            end += 1
        count = end - first
        query_rows, key_rows = count * query_length, count * key_length
        if query_length > 0 and key_length == 0:
            pieces.append(query.new_zeros(query_rows, heads, head_dim))
        elif query_length > 0:
            def batched(tensor: Tensor, start: int, length: int) -> Tensor:
                # (count * length, heads, head_dim) -> (count, heads, length, head_dim)
                return tensor[start:start + count * length].view(count, length, heads, head_dim).transpose(1, 2)

            attended = F.scaled_dot_product_attention(batched(query, query_start, query_length),
                                                      batched(key, key_start, key_length),
                                                      batched(value, key_start, key_length), is_causal=causal)
            pieces.append(attended.transpose(1, 2).reshape(query_rows, heads, head_dim))
        query_start += query_rows
        key_start += key_rows
        first = end
    return torch.cat(pieces) if pieces else query.new_zeros(query.shape)


class GroupedQueryAttention(nn.Module):
    """Bias-free attention with `kv_groups` key/value heads shared by `heads` query heads (query
    head h reads key/value head h // (heads // kv_groups), as Llama and Qwen2 do)."""

    def __init__(self, hidden: int, heads: int, kv_groups: int):
        super().__init__()
        self.heads, self.kv_groups, self.head_dim = heads, kv_groups, hidden // heads
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, kv_groups * self.head_dim, bias=False)
        self.value = nn.Linear(hidden, kv_groups * self.head_dim, bias=False)
        self.output = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: Tensor, segments: list[int], causal: bool, source: Tensor | None = None,
                source_segments: list[int] | None = None) -> Tensor:
        """Self-attention of x's segments, or (source given) cross-attention to source's groups."""
        if source is None:
            source, source_segments = x, segments
        query = self.query(x).view(-1, self.heads, self.head_dim)
        shared = self.heads // self.kv_groups
        key = self.key(source).view(-1, self.kv_groups, self.head_dim).repeat_interleave(shared, dim=1)
        value = self.value(source).view(-1, self.kv_groups, self.head_dim).repeat_interleave(shared, dim=1)
        attended = attend_within_segments(query, key, value, segments, source_segments, causal)
        return self.output(attended.reshape(x.shape[0], self.heads * self.head_dim))


class FeedForward(nn.Module):
    """Bias-free MLP: SwiGLU (gate, up, down) when gated, else GELU (up, down)."""

    def __init__(self, hidden: int, ffn: int, gated: bool):
        super().__init__()
        self.gated = gated
        self.gate = nn.Linear(hidden, ffn, bias=False) if gated else None
        self.up = nn.Linear(hidden, ffn, bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        inner = F.silu(self.gate(x)) * self.up(x) if self.gate is not None else F.gelu(self.up(x))
        return self.down(inner)


def _norm(hidden: int) -> nn.LayerNorm:
    # LayerNorm with a weight and no bias: dip counts one hidden-sized vector per norm.
    return nn.LayerNorm(hidden, elementwise_affine=True, bias=False)


class TransformerBlock(DipLayer):
    """Pre-norm block: x + attention(norm(x)) within segments (causal if meta.causal), then
    x + mlp(norm(x))."""

    kind = "transformer"

    def __init__(self, hidden: int, ffn: int, heads: int, kv_groups: int, gated_mlp: bool):
        super().__init__()
        self.attention_norm = _norm(hidden)
        self.attention = GroupedQueryAttention(hidden, heads, kv_groups)
        self.mlp_norm = _norm(hidden)
        self.mlp = FeedForward(hidden, ffn, gated_mlp)

    def forward(self, x: Tensor, meta: RowMeta) -> Tensor:
        _check_segments("transformer block", meta.segments, x.shape[0])
        x = x + self.attention(self.attention_norm(x), meta.segments, meta.causal)
        return x + self.mlp(self.mlp_norm(x))


class DitBlock(DipLayer):
    """Pre-norm diffusion-transformer block: self-attention within segments (never causal),
    cross-attention of segment s to context group s, MLP; each with a residual. The context is
    already `hidden` wide (the projector maps to it) and is not normalised here. Timestep
    modulation is adaLN-single in dip's model (shared, no per-block weights) and is left out."""

    kind = "dit"

    def __init__(self, hidden: int, ffn: int, heads: int, kv_groups: int, gated_mlp: bool):
        super().__init__()
        self.hidden = hidden
        self.self_attention_norm = _norm(hidden)
        self.self_attention = GroupedQueryAttention(hidden, heads, kv_groups)
        self.cross_attention_norm = _norm(hidden)
        self.cross_attention = GroupedQueryAttention(hidden, heads, kv_groups)
        self.mlp_norm = _norm(hidden)
        self.mlp = FeedForward(hidden, ffn, gated_mlp)

    def forward(self, x: Tensor, meta: RowMeta) -> Tensor:
        _check_segments("dit block", meta.segments, x.shape[0])
        context, context_segments = meta.context, meta.context_segments
        if context_segments is None:
            raise ValueError("dit block: meta.context_segments is None (give one count per segment, 0 for none)")
        if len(context_segments) != len(meta.segments):
            raise ValueError(f"dit block: {len(context_segments)} context groups for {len(meta.segments)} segments")
        if context is None:  # allowed when no segment has context rows
            context = x.new_zeros(0, self.hidden)
        _check_segments("dit block", context_segments, context.shape[0], what="meta.context")
        x = x + self.self_attention(self.self_attention_norm(x), meta.segments, causal=False)
        x = x + self.cross_attention(self.cross_attention_norm(x), meta.segments, False, context, context_segments)
        return x + self.mlp(self.mlp_norm(x))


class Embedding(DipLayer):
    """Looks up meta.token_ids (x is ignored), then writes meta.inject at meta.inject_positions.

    The write is an out-of-place index_put, so gradients reach `inject` (the image features) and
    the table rows under injected positions get none."""

    kind = "embedding"

    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.table = nn.Embedding(vocab, hidden)

    def forward(self, x: Tensor | None, meta: RowMeta) -> Tensor:
        if meta.token_ids is None:
            raise ValueError("embedding: meta.token_ids is None")
        _check_segments("embedding", meta.segments, meta.token_ids.shape[0], what="meta.token_ids")
        embedded = self.table(meta.token_ids)
        if meta.inject_positions is None:
            return embedded
        if meta.inject is None or meta.inject.shape[0] != meta.inject_positions.shape[0]:
            rows = None if meta.inject is None else meta.inject.shape[0]
            raise ValueError(f"embedding: {meta.inject_positions.shape[0]} inject positions but inject has {rows} rows")
        return embedded.index_put((meta.inject_positions,), meta.inject)


class LmHead(DipLayer):
    """Final norm and a bias-free projection to the vocabulary: logits (rows, vocab)."""

    kind = "lm_head"

    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.norm = _norm(hidden)
        self.projection = nn.Linear(hidden, vocab, bias=False)

    def forward(self, x: Tensor, meta: RowMeta) -> Tensor:
        return self.projection(self.norm(x))


class Linear(DipLayer):
    """One matrix with bias, row by row: a patch embedding or a DiT's input/output projection."""

    kind = "linear"

    def __init__(self, input: int, output: int):  # `input`: the plan's field name
        super().__init__()
        self.projection = nn.Linear(input, output)

    def forward(self, x: Tensor, meta: RowMeta) -> Tensor:
        return self.projection(x)


class ProjectorLayer(DipLayer):
    """Merges consecutive rows into `input`-wide rows (merge^2 encoder patches into one token),
    then Linear(input, hidden) -> GELU -> Linear(hidden, output), both with bias."""

    kind = "projector"

    def __init__(self, input: int, hidden: int, output: int):  # `input`: the plan's field name
        super().__init__()
        self.input = input
        self.expand = nn.Linear(input, hidden)
        self.contract = nn.Linear(hidden, output)

    def forward(self, x: Tensor, meta: RowMeta) -> Tensor:
        features = x.shape[-1]
        if self.input % features != 0:
            raise ValueError(f"projector: input width {self.input} is not a multiple of x's {features} features")
        merged = self.input // features
        # meta.segments may describe the input rows (merge^2 patches each) or the merged rows
        # the projector hands on (what the module's later layers see).
        if sum(meta.segments) * merged == x.shape[0] and merged > 1:
            pass  # output segments: every segment is exactly its merged rows
        else:
            _check_segments("projector", meta.segments, x.shape[0])
            # A merge must not take rows from two segments (two images).
            if any(length % merged != 0 for length in meta.segments):
                raise ValueError(f"projector: merges {merged} rows, but segments {meta.segments} are not all "
                                 "multiples")
        return self.contract(F.gelu(self.expand(x.reshape(-1, self.input))))


class ModuleLayer(DipLayer):
    """A caller's torch module that maps rows without needing `meta` (for an opaque layer)."""

    kind = "opaque"

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, meta: RowMeta) -> Tensor:
        return self.module(x)


@torch.no_grad()
def initialize_parameters(layer: nn.Module, generator: torch.Generator | None = None) -> None:
    """Draws every parameter of dip's layers from `generator` (None: torch's default one): matrices
    and embedding tables N(0, 0.02), biases 0, norm weights 1. Values are drawn in float32 and then
    cast, so a float64 layer holds exactly the weights of the float32 one of the same seed."""
    for module in layer.modules():
        if isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            drawn = torch.empty(module.weight.shape, dtype=torch.float32).normal_(0.0, 0.02, generator=generator)
            module.weight.copy_(drawn)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()


_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "transformer": ("hidden", "ffn", "heads", "kv_groups"),
    "dit": ("hidden", "ffn", "heads", "kv_groups"),
    "embedding": ("vocab", "hidden"),
    "lm_head": ("vocab", "hidden"),
    "linear": ("input", "output"),
    "projector": ("input", "hidden", "output"),
}
_KIND_CLASSES: dict[str, type[DipLayer]] = {
    "transformer": TransformerBlock,
    "dit": DitBlock,
    "embedding": Embedding,
    "lm_head": LmHead,
    "linear": Linear,
    "projector": ProjectorLayer,
}


def _positive_fields(layer_dict: Mapping, kind: str) -> dict[str, int]:
    values = {}
    for field in _KIND_FIELDS[kind]:
        if field not in layer_dict:
            raise ValueError(f"layer kind '{kind}': missing field '{field}' in {dict(layer_dict)}")
        value = int(layer_dict[field])
        if value <= 0:
            raise ValueError(f"layer kind '{kind}': {field} must be > 0, got {value}")
        values[field] = value
    if kind in ("transformer", "dit"):
        if values["hidden"] % values["heads"] != 0:
            raise ValueError(f"layer kind '{kind}': hidden ({values['hidden']}) must be a multiple of "
                             f"heads ({values['heads']})")
        if values["heads"] % values["kv_groups"] != 0:
            raise ValueError(f"layer kind '{kind}': heads ({values['heads']}) must be a multiple of "
                             f"kv_groups ({values['kv_groups']})")
        values["gated_mlp"] = bool(layer_dict.get("gated_mlp", False))
    return values


def build_layer(layer_dict: Mapping, dtype: torch.dtype = torch.float32, *, generator: torch.Generator | None = None,
                device: torch.device | str | None = None,
                opaque_modules: Mapping[str, nn.Module] | None = None) -> DipLayer:
    """The reference layer for one version-2 layer object, its parameters drawn from `generator`
    (see initialize_parameters), in `dtype`, on `device` (default CPU).

    An "opaque" layer is known to dip only by its cost: it is built only from the caller's module
    `opaque_modules[name]` (returned as is if a DipLayer, else wrapped in a ModuleLayer; neither
    re-initialised nor cast). Anything else raises ValueError naming the kind."""
    kind = layer_dict.get("kind")
    if kind == "opaque":
        name = layer_dict.get("name", "")
        if opaque_modules is not None and name in opaque_modules:
            module = opaque_modules[name]
            return module if isinstance(module, DipLayer) else ModuleLayer(module)
        raise ValueError(f"layer kind 'opaque' ('{name}') has no reference implementation: dip knows it only by its "
                         f"cost; give your own module as build_layer(..., opaque_modules={{'{name}': module}})")
    if kind not in _KIND_CLASSES:
        known = ", ".join([*_KIND_CLASSES, "opaque"])
        raise ValueError(f"unknown layer kind {kind!r} (known: {known})")
    fields = _positive_fields(layer_dict, kind)
    # Built on the meta device: no memory and no draw from torch's global generator until the
    # parameters are drawn from `generator`, in a fixed order.
    with torch.device("meta"):
        layer = _KIND_CLASSES[kind](**fields)
    layer = layer.to_empty(device="cpu").to(dtype)
    initialize_parameters(layer, generator)
    return layer if device is None else layer.to(device)

