"""What a dip module computes for a sub-microbatch: the contract between a model and the runtime.

The runtime (runtime.py) and the sequential reference (sequential.py) know nothing about images,
clips or tokens. They ask a `PipelineModel` four things about module `m` of a microbatch, for a
list of `items` (indices into the microbatch's images, clips or captions; [0] for the packed
sequence):
- `layers(m, first, stop)`: the torch modules of layers [first, stop) of m, called
  `layer(x, meta)`;
- `begin(m, microbatch, items, producers)`: the input `x` of m's first layer and the `RowMeta`
  of its rows, given the outputs of m's producer modules (`producers[p] = (items, rows)`: the
  rows of the producer items this sub-microbatch needs, concatenated in item order);
- `meta(m, microbatch, items, context)`: the `RowMeta` of m's rows on a later chunk;
- `loss(m, microbatch, items, y)`: the loss contribution of a sink module's rows, normalised so
  that the contributions of all sub-microbatches of all microbatches add up to the step's loss.

`ReferenceModel` implements it for any dip model whose layers are of dip's architectural kinds
(layers.py), with synthetic data drawn from the batch's item sizes: image patches, token ids,
labels, video latents and their noise targets, each seeded by (seed, step, microbatch, item), so
that any grouping of the items into sub-microbatches sees the same data. What the model means,
in one place (the sequential run and every pipelined run follow it):
- an image encoder (a module with an image encoding) reads `encoder_tokens` patch rows per
  image; a projector reads its producer's rows (merging merge^2 patch rows into one token);
- an LLM with an embedding reads the token ids of its rows; in a vision-language model its
  packed sequence is, per sample in order, the sample's images' tokens then its text, and the
  projector's image features replace the embedding at the images' positions;
- a caption encoder (an LLM feeding a video module) reads each caption's token ids;
- a diffusion decoder reads each clip's noisy latents and cross-attends, in every block, to its
  own caption's encoded tokens;
- losses: cross-entropy to random labels after an lm_head (mean over the microbatch's tokens),
  otherwise half the mean squared error to a random target (a DiT's noise); each microbatch's
  loss is divided by the number of microbatches, as gradient accumulation does.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import torch

from . import layers as dip_layers
from .layers import RowMeta


class PipelineModel(Protocol):
    """What the runtime needs from a model (see the module docstring)."""

    def layers(self, module: int, first: int, stop: int) -> list[torch.nn.Module]: ...

    def begin(self, module: int, microbatch: "MicrobatchData", items: list[int],
              producers: dict[int, tuple[list[int], torch.Tensor]]) -> tuple[torch.Tensor | None, RowMeta]: ...

    def meta(self, module: int, microbatch: "MicrobatchData", items: list[int],
             context: torch.Tensor | None) -> RowMeta: ...

    def loss(self, module: int, microbatch: "MicrobatchData", items: list[int], y: torch.Tensor) -> torch.Tensor: ...


class MicrobatchData:
    """One microbatch of an executable plan's batch, with the facts the models derive from it."""

    def __init__(self, index: int, step: int, count: int, document: dict):
        self.index = index       # position in the batch
        self.step = step         # training step (seeds the data)
        self.count = count       # microbatches in the batch (the loss divides by it)
        self.images: list[dict] = document["images"]
        self.clips: list[dict] = document["clips"]
        self.captions: list[int] = document["captions"]
        self.samples: list[int] = document["samples"]
        self.sequence_lengths: list[int] = document["sequence_lengths"]
        self._layout: dict | None = None

    def caption_of_clips(self) -> list[int | None]:
        """Clip i's caption: the captions list holds one per clip with caption tokens, in order."""
        out, next_caption = [], 0
        for clip in self.clips:
            if clip["caption_tokens"] > 0:
                out.append(next_caption)
                next_caption += 1
            else:
                out.append(None)
        return out

    def sequence_layout(self) -> dict:
        """The packed sequence: per sample, its images' tokens then its text. Returns the
        sample lengths, each image's first row, and which rows are text."""
        if self._layout is not None:
            return self._layout
        if len(self.sequence_lengths) != len(self.samples):
            raise ValueError(f"microbatch {self.index}: {len(self.sequence_lengths)} sequence lengths for "
                             f"{len(self.samples)} samples")
        image_start: list[int] = [0] * len(self.images)
        text_rows: list[int] = []
        offset = 0
        for sample, length in zip(self.samples, self.sequence_lengths):
            at = offset
            for i, image in enumerate(self.images):
                if image["sample"] == sample:
                    image_start[i] = at
                    at += image["tokens"]
            if at > offset + length:
                raise ValueError(f"microbatch {self.index}: sample {sample}'s images take {at - offset} tokens "
                                 f"of its {length}")
            text_rows.extend(range(at, offset + length))
            offset += length
        self._layout = {"lengths": list(self.sequence_lengths), "image_start": image_start,
                        "text_rows": text_rows, "rows": offset}
        return self._layout


def _seed(*parts) -> int:
    """A 63-bit seed from any parts (stable across processes and runs, unlike hash())."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _generator(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*parts))


def all_items(module: dict, mb: MicrobatchData) -> list[int]:
    """Every item of the module's kind in the microbatch (what the sequential run works on)."""
    kind = module["item"]
    if kind == "image":
        return list(range(len(mb.images)))
    if kind == "clip":
        return list(range(len(mb.clips)))
    if kind == "caption":
        return list(range(len(mb.captions)))
    return [0] if mb.sequence_lengths else []


class ReferenceModel:
    """dip's reference torch model of an executable plan's `model` section (see module docs)."""

    def __init__(self, model: dict, seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        self.model = model
        # Data is drawn on the CPU (the same bits on every device) and moved to `device`.
        self.device = torch.device(device or "cpu")
        self.modules: list[dict] = model["modules"]
        self.seed = seed
        self.dtype = dtype
        self.consumers: list[list[int]] = [[] for _ in self.modules]
        for i, m in enumerate(self.modules):
            for p in m["inputs"]:
                self.consumers[p].append(i)

    # --- layers -------------------------------------------------------------------------------

    def layers(self, module: int, first: int, stop: int) -> list[torch.nn.Module]:
        """Layers [first, stop) of `module`, each initialised from its own seed, so that a rank
        holding any slice gets the same weights as the sequential model."""
        spec = self.modules[module]
        out = []
        for i in range(first, stop):
            layer = dip_layers.build_layer(spec["layers"][i], dtype=self.dtype,
                                           generator=_generator("weights", self.seed, module, i))
            out.append(layer)
        return out

    # --- facts about modules ------------------------------------------------------------------

    def _kind(self, module: int) -> str:
        return self.modules[module]["item"]

    def _first_layer(self, module: int) -> dict:
        return self.modules[module]["layers"][0]

    def _causal(self, module: int) -> bool:
        # The packed sequence of an LLM is causal; encoders (images, captions, clips) are not.
        return self._kind(module) == "sequence"

    def _segments(self, module: int, mb: MicrobatchData, items: list[int]) -> list[int]:
        kind = self._kind(module)
        if kind == "image":
            own = self.modules[module]["image"] is not None
            return [mb.images[i]["encoder_tokens" if own else "tokens"] for i in items]
        if kind == "clip":
            return [mb.clips[i]["latent_tokens"] for i in items]
        if kind == "caption":
            return [mb.captions[i] for i in items]
        return list(mb.sequence_lengths) if items else []

    def _uses_context(self, module: int) -> bool:
        return any(layer["kind"] == "dit" for layer in self.modules[module]["layers"])

    # --- the contract -------------------------------------------------------------------------

    def meta(self, module: int, mb: MicrobatchData, items: list[int], context: torch.Tensor | None) -> RowMeta:
        segments = self._segments(module, mb, items)
        meta = RowMeta(segments=segments, causal=self._causal(module))
        if self._uses_context(module):
            meta.context = context
            meta.context_segments = self._context_segments(module, mb, items)
        return meta

    def _context_segments(self, module: int, mb: MicrobatchData, items: list[int]) -> list[int]:
        """Rows of conditioning per segment: a clip's caption tokens (0 for a clip without)."""
        if self._kind(module) != "clip":
            return [0] * len(items)
        caption_of = mb.caption_of_clips()
        return [mb.captions[caption_of[i]] if caption_of[i] is not None else 0 for i in items]

    def begin(self, module: int, mb: MicrobatchData, items: list[int],
              producers: dict[int, tuple[list[int], torch.Tensor]]) -> tuple[torch.Tensor | None, RowMeta]:
        spec = self.modules[module]
        kind = self._kind(module)
        meta = RowMeta(segments=self._segments(module, mb, items), causal=self._causal(module))
        first = self._first_layer(module)
        if first["kind"] == "embedding":
            meta.token_ids = self._token_ids(module, mb, items, first["vocab"]).to(self.device)
            for p, (p_items, rows) in producers.items():
                if self._kind(p) == "image" and kind == "sequence":
                    layout = mb.sequence_layout()
                    positions = [layout["image_start"][i] + t for i in p_items for t in range(mb.images[i]["tokens"])]
                    meta.inject_positions = torch.tensor(positions, dtype=torch.long, device=self.device)
                    meta.inject = rows
            return None, meta
        if self._uses_context(module):
            meta.context, meta.context_segments = self._context(module, mb, items, producers)
        if spec["image"] is not None:  # an image encoder: patch rows of its images
            width = first["input"]
            x = torch.cat([torch.randn(mb.images[i]["encoder_tokens"], width, dtype=self.dtype,
                                       generator=_generator("patches", self.seed, mb.step, mb.index, i))
                           for i in items]) if items else torch.zeros(0, width, dtype=self.dtype)
            return x.to(self.device), meta
        if spec["video"] is not None:  # a diffusion decoder: noisy latents of its clips
            return self._latents(mb, items, first["input"], "latents").to(self.device), meta
        # Anything else (a projector) continues its producers' rows, item by item.
        same_kind = [p for p in producers if self._kind(p) == kind]
        if len(same_kind) != 1:
            raise ValueError(f"module '{spec['name']}': expected one producer counting {kind}s, got "
                             f"{[self.modules[p]['name'] for p in producers]}")
        p_items, rows = producers[same_kind[0]]
        if list(p_items) != list(items):
            raise ValueError(f"module '{spec['name']}' microbatch {mb.index}: its producer gave items {p_items}, "
                             f"it works on {items}")
        return rows, meta

    def _context(self, module: int, mb: MicrobatchData, items: list[int],
                 producers: dict[int, tuple[list[int], torch.Tensor]]) -> tuple[torch.Tensor | None, list[int]]:
        """The conditioning rows of each clip: its caption's encoded tokens, in clip order."""
        segments = self._context_segments(module, mb, items)
        captions = [p for p in producers if self._kind(p) == "caption"]
        if not captions:
            return None, [0] * len(items)
        p_items, rows = producers[captions[0]]
        start, at = {}, 0
        for c in p_items:
            start[c] = at
            at += mb.captions[c]
        caption_of = mb.caption_of_clips()
        pieces = []
        for i in items:
            c = caption_of[i]
            if c is not None:
                if c not in start:
                    raise ValueError(f"microbatch {mb.index}: clip {i}'s caption {c} did not arrive")
                pieces.append(rows[start[c]:start[c] + mb.captions[c]])
        context = torch.cat(pieces) if pieces else rows[:0]
        return context, segments

    def _token_ids(self, module: int, mb: MicrobatchData, items: list[int], vocab: int) -> torch.Tensor:
        if self._kind(module) == "caption":
            parts = [torch.randint(vocab, (mb.captions[i],), generator=_generator("caption", self.seed, mb.step,
                                                                                   mb.index, i))
                     for i in items]
            return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
        rows = sum(mb.sequence_lengths) if items else 0
        return torch.randint(vocab, (rows,), generator=_generator("tokens", self.seed, mb.step, mb.index))

    def _latents(self, mb: MicrobatchData, items: list[int], width: int, what: str) -> torch.Tensor:
        parts = [torch.randn(mb.clips[i]["latent_tokens"], width, dtype=self.dtype,
                             generator=_generator(what, self.seed, mb.step, mb.index, i)) for i in items]
        return torch.cat(parts) if parts else torch.zeros(0, width, dtype=self.dtype)

    def loss(self, module: int, mb: MicrobatchData, items: list[int], y: torch.Tensor) -> torch.Tensor:
        spec = self.modules[module]
        last = spec["layers"][-1]
        all_rows = sum(self._segments(module, mb, all_items(self.modules[module], mb)))
        scale = 1.0 / (max(all_rows, 1) * mb.count)
        if last["kind"] == "lm_head":
            if self._kind(module) == "sequence":
                labels = torch.randint(last["vocab"], (y.shape[0],),
                                       generator=_generator("labels", self.seed, mb.step, mb.index))
            else:
                parts = [torch.randint(last["vocab"], (n,), generator=_generator("labels", self.seed, mb.step,
                                                                                   mb.index, i))
                         for i, n in zip(items, self._segments(module, mb, items))]
                labels = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
            return torch.nn.functional.cross_entropy(y, labels.to(self.device), reduction="sum") * scale
        if self._kind(module) == "clip":
            target = self._latents(mb, items, y.shape[1], "noise")
        else:
            target = torch.cat([torch.randn(n, y.shape[1], dtype=self.dtype,
                                            generator=_generator("target", self.seed, mb.step, mb.index, i))
                                for i, n in zip(items, self._segments(module, mb, items))]) \
                if items else y[:0].detach()
        return 0.5 * ((y - target.to(self.device)) ** 2).sum() * scale / y.shape[1]

class ModuleLayersModel(ReferenceModel):
    """Your own torch modules as the layers of a dip model, with the reference data and losses.

    `layers[name]` lists module `name`'s layers, as many as the plan's model gives it; dip slices
    the list by the placement, so a rank uses only its chunks' layers. A `DipLayer` is called
    `layer(x, meta)`, any other module `layer(x)`. `loss(name, microbatch, items, y)`, when
    given, replaces the reference loss of sink modules (see `PipelineModel.loss` for its
    normalisation). Subclass `ReferenceModel` instead to change what the data is."""

    def __init__(self, model: dict, layers: dict[str, list[torch.nn.Module]], loss=None, seed: int = 0,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__(model, seed=seed, dtype=dtype, device=device)
        names = [m["name"] for m in self.modules]
        for name in layers:
            if name not in names:
                raise ValueError(f"layers['{name}']: the model has no module '{name}' (modules: {', '.join(names)})")
        for m in self.modules:
            given = layers.get(m["name"])
            if given is None:
                raise ValueError(f"layers: no layers for module '{m['name']}'")
            if len(given) != len(m["layers"]):
                raise ValueError(f"layers['{m['name']}']: {len(given)} modules for the model's {len(m['layers'])} "
                                 "layers")
        self._layers = {name: [layer if isinstance(layer, dip_layers.DipLayer) else dip_layers.ModuleLayer(layer)
                               for layer in given] for name, given in layers.items()}
        self._loss = loss

    def layers(self, module: int, first: int, stop: int) -> list[torch.nn.Module]:
        return self._layers[self.modules[module]["name"]][first:stop]

    def loss(self, module: int, mb: MicrobatchData, items: list[int], y: torch.Tensor) -> torch.Tensor:
        if self._loss is None:
            return super().loss(module, mb, items, y)
        return self._loss(self.modules[module]["name"], mb, items, y)
