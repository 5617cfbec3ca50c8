"""dip.torch.layers: the reference torch layers of dip's layer kinds (issue 17's layer contract).

Each layer is checked against a plain re-derivation with a full attention mask (what it computes),
for segment independence, causal masking and context groups (what it must not read), for
gradients (gradcheck in float64, parameters included) and for reproducible construction.
"""

import importlib.util
import math
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck
from torch.func import functional_call

try:
    from dip.torch import layers
except ModuleNotFoundError as missing:  # dip.torch not assembled (yet) where dip is imported from
    if missing.name not in ("dip", "dip.torch", "dip.torch.layers"):
        raise
    _path = pathlib.Path(__file__).resolve().parents[2] / "dip" / "torch" / "layers.py"
    _spec = importlib.util.spec_from_file_location("dip_torch_layers", _path)
    layers = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = layers  # dataclasses look their module up while the file runs
    _spec.loader.exec_module(layers)

RowMeta = layers.RowMeta

TRANSFORMER = {"kind": "transformer", "hidden": 16, "ffn": 24, "heads": 4, "kv_groups": 2, "gated_mlp": True}
DIT = {"kind": "dit", "hidden": 16, "ffn": 24, "heads": 4, "kv_groups": 2, "gated_mlp": False}


def build(layer_dict, dtype=torch.float64, seed=0, **kwargs):
    return layers.build_layer(layer_dict, dtype, generator=torch.Generator().manual_seed(seed), **kwargs)


@torch.no_grad()
def spread_weights(layer, seed=1):
    """Weights far from N(0, 0.02) so attention is far from uniform and every path matters."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in layer.parameters():
        parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.5 + 0.1)
    return layer


def rows(count, width, dtype=torch.float64, seed=2):
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# --- a plain re-derivation: full (rows x keys) mask, explicit head mapping, no batching ---------

def naive_attention(attention, x, segments, causal, source=None, source_segments=None):
    source, source_segments = (x, segments) if source is None else (source, source_segments)
    heads, kv_groups, head_dim = attention.heads, attention.kv_groups, attention.head_dim
    query = (x @ attention.query.weight.T).view(-1, heads, head_dim)
    key = (source @ attention.key.weight.T).view(-1, kv_groups, head_dim)
    value = (source @ attention.value.weight.T).view(-1, kv_groups, head_dim)
    kv_head = torch.arange(heads) // (heads // kv_groups)  # query head h reads kv head h // group size
    key, value = key[:, kv_head], value[:, kv_head]
    query_segment = torch.repeat_interleave(torch.arange(len(segments)), torch.tensor(segments))
    key_segment = torch.repeat_interleave(torch.arange(len(source_segments)), torch.tensor(source_segments))
    query_position = torch.cat([torch.arange(n) for n in segments]) if segments else torch.zeros(0)
    key_position = torch.cat([torch.arange(n) for n in source_segments]) if source_segments else torch.zeros(0)
    allowed = query_segment[:, None] == key_segment[None, :]
    if causal:
        allowed &= query_position[:, None] >= key_position[None, :]
    scores = torch.einsum("ihd,jhd->hij", query, key) / math.sqrt(head_dim)
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0)  # no key: 0
    attended = torch.einsum("hij,jhd->ihd", weights, value).reshape(x.shape[0], -1)
    return attended @ attention.output.weight.T


def naive_norm(norm, x):
    return F.layer_norm(x, (x.shape[-1],), norm.weight, None, norm.eps)


def naive_mlp(mlp, x):
    if mlp.gated:
        inner = F.silu(x @ mlp.gate.weight.T) * (x @ mlp.up.weight.T)
    else:
        inner = F.gelu(x @ mlp.up.weight.T)
    return inner @ mlp.down.weight.T


def naive_transformer(block, x, meta):
    x = x + naive_attention(block.attention, naive_norm(block.attention_norm, x), meta.segments, meta.causal)
    return x + naive_mlp(block.mlp, naive_norm(block.mlp_norm, x))


def naive_dit(block, x, meta):
    x = x + naive_attention(block.self_attention, naive_norm(block.self_attention_norm, x), meta.segments, False)
    x = x + naive_attention(block.cross_attention, naive_norm(block.cross_attention_norm, x), meta.segments, False,
                            meta.context, meta.context_segments)
    return x + naive_mlp(block.mlp, naive_norm(block.mlp_norm, x))


# --- what the layers compute --------------------------------------------------------------------

@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("segments", [[5, 3, 4], [4, 4, 4], [12], [0, 7, 5]])
def test_transformer_block_matches_masked_attention(gated, causal, segments):
    block = spread_weights(build({**TRANSFORMER, "gated_mlp": gated}))
    x = rows(sum(segments), 16)
    meta = RowMeta(segments, causal=causal)
    torch.testing.assert_close(block(x, meta), naive_transformer(block, x, meta), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("context_segments", [[2, 3, 1], [0, 3, 2], [0, 0, 0], [3, 3, 3]])
def test_dit_block_matches_masked_attention(context_segments):
    block = spread_weights(build(DIT))
    segments = [4, 4, 5]
    x = rows(sum(segments), 16)
    context = rows(sum(context_segments), 16, seed=3)
    meta = RowMeta(segments, context=context, context_segments=context_segments)
    torch.testing.assert_close(block(x, meta), naive_dit(block, x, meta), rtol=1e-12, atol=1e-12)


def test_dit_block_ignores_causal_and_accepts_no_context_when_no_group_has_rows():
    block = spread_weights(build(DIT))
    x = rows(6, 16)
    empty = RowMeta([3, 3], context=torch.zeros(0, 16, dtype=torch.float64), context_segments=[0, 0])
    without = RowMeta([3, 3], causal=True, context=None, context_segments=[0, 0])
    torch.testing.assert_close(block(x, without), block(x, empty), rtol=0, atol=0)
    with pytest.raises(ValueError, match="context_segments"):
        block(x, RowMeta([3, 3]))
    with pytest.raises(ValueError, match="context groups"):
        block(x, RowMeta([3, 3], context=rows(2, 16), context_segments=[2]))
    with pytest.raises(ValueError, match="meta.context has 2 rows"):
        block(x, RowMeta([3, 3], context=rows(2, 16), context_segments=[1, 2]))


@pytest.mark.parametrize("layer_dict, x_width, x_rows, out_shape", [
    (TRANSFORMER, 16, 12, (12, 16)),
    (DIT, 16, 12, (12, 16)),
    ({"kind": "embedding", "vocab": 64, "hidden": 16}, None, 12, (12, 16)),
    ({"kind": "lm_head", "vocab": 64, "hidden": 16}, 16, 12, (12, 64)),
    ({"kind": "linear", "input": 48, "output": 16}, 48, 12, (12, 16)),
    ({"kind": "projector", "input": 64, "hidden": 24, "output": 20}, 16, 12, (3, 20)),  # merges 4 rows
    ({"kind": "projector", "input": 16, "hidden": 24, "output": 20}, 16, 12, (12, 20)),  # t2v: no merge
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtype_of_every_kind(layer_dict, x_width, x_rows, out_shape, dtype):
    layer = build(layer_dict, dtype)
    assert isinstance(layer, layers.DipLayer) and layer.kind == layer_dict["kind"]
    assert all(p.dtype == dtype for p in layer.parameters())
    x = None if x_width is None else rows(x_rows, x_width, dtype)
    meta = RowMeta([8, 4], token_ids=torch.arange(x_rows) % 64,
                   context=rows(5, 16, dtype), context_segments=[2, 3])
    out = layer(x, meta)
    assert out.shape == out_shape and out.dtype == dtype


def test_projector_merges_consecutive_rows_within_segments():
    projector = spread_weights(build({"kind": "projector", "input": 64, "hidden": 24, "output": 20}))
    x = rows(12, 16)
    expected = F.gelu(x.reshape(3, 64) @ projector.expand.weight.T + projector.expand.bias)
    expected = expected @ projector.contract.weight.T + projector.contract.bias
    torch.testing.assert_close(projector(x, RowMeta([8, 4])), expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="not all multiples"):
        projector(x, RowMeta([6, 6]))  # a merge would take rows of two images
    with pytest.raises(ValueError, match="not a multiple"):
        projector(rows(12, 24), RowMeta([12]))


def test_linear_and_lm_head_compute_what_they_say():
    linear = spread_weights(build({"kind": "linear", "input": 48, "output": 16}))
    x = rows(5, 48)
    torch.testing.assert_close(linear(x, RowMeta([5])), x @ linear.projection.weight.T + linear.projection.bias)
    head = spread_weights(build({"kind": "lm_head", "vocab": 64, "hidden": 16}))
    y = rows(5, 16)
    torch.testing.assert_close(head(y, RowMeta([5])), naive_norm(head.norm, y) @ head.projection.weight.T)


# --- what the layers must not read --------------------------------------------------------------

@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("segments", [[7, 5], [6, 6]])  # unequal, and equal (one batched call)
@pytest.mark.parametrize("layer_dict, causal", [(TRANSFORMER, True), (TRANSFORMER, False), (DIT, False)])
def test_segments_are_independent_of_each_other(dtype, tolerance, segments, layer_dict, causal):
    layer = build(layer_dict, dtype)
    spread_weights(layer)  # N(0.1, 0.5) weights: large activations, a hard case for the tolerance
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(0.2)
    x = rows(sum(segments), 16, dtype)
    context_segments = [3, 2]
    context = rows(5, 16, dtype, seed=4)
    together = layer(x, RowMeta(segments, causal=causal, context=context, context_segments=context_segments))
    first, second = x.split(segments)
    alone = torch.cat([
        layer(first, RowMeta(segments[:1], causal=causal, context=context[:3], context_segments=[3])),
        layer(second, RowMeta(segments[1:], causal=causal, context=context[3:], context_segments=[2])),
    ])
    torch.testing.assert_close(together, alone, rtol=tolerance, atol=tolerance)


def test_causal_rows_do_not_see_later_rows_nor_other_segments():
    block = spread_weights(build(TRANSFORMER))
    segments = [6, 5]
    x = rows(11, 16)
    base = block(x, RowMeta(segments, causal=True))
    later = x.clone()
    later[4] += rows(1, 16, seed=8)[0]  # row 4 of segment 0 (not a constant: the norm removes it)
    changed = block(later, RowMeta(segments, causal=True))
    torch.testing.assert_close(changed[:4], base[:4], rtol=0, atol=1e-12)
    assert (changed[4:6] - base[4:6]).abs().amax(dim=1).min() > 1e-3  # rows 4 and 5 see it
    torch.testing.assert_close(changed[6:], base[6:], rtol=0, atol=1e-12)  # the other segment does not
    # Without causal, earlier rows of the segment do see it (the flag is what hides it).
    base_full = block(x, RowMeta(segments, causal=False))
    changed_full = block(later, RowMeta(segments, causal=False))
    assert (changed_full[:4] - base_full[:4]).abs().amax(dim=1).min() > 1e-3
    torch.testing.assert_close(changed_full[6:], base_full[6:], rtol=0, atol=1e-12)


def test_cross_attention_reads_only_its_own_context_group():
    block = spread_weights(build(DIT))
    segments, context_segments = [4, 5, 3], [2, 0, 3]
    x, context = rows(12, 16), rows(5, 16, seed=5)
    base = block(x, RowMeta(segments, context=context, context_segments=context_segments))
    changed_context = context.clone()
    changed_context[2:] += rows(3, 16, seed=8)  # group 2 (group 1 is empty)
    changed = block(x, RowMeta(segments, context=changed_context, context_segments=context_segments))
    torch.testing.assert_close(changed[:9], base[:9], rtol=0, atol=1e-12)
    assert (changed[9:] - base[9:]).abs().amax(dim=1).min() > 1e-3
    # A segment with no context rows gets nothing from cross-attention: the same rows as a block
    # whose cross-attention output projection is zero.
    silenced = spread_weights(build(DIT))
    with torch.no_grad():
        silenced.cross_attention.output.weight.zero_()
    torch.testing.assert_close(base[4:9], silenced(x, RowMeta(segments, context=context,
                                                              context_segments=context_segments))[4:9],
                               rtol=1e-12, atol=1e-12)
    assert (base[:4] - silenced(x, RowMeta(segments, context=context,
                                           context_segments=context_segments))[:4]).abs().max() > 1e-3


def test_grouped_query_attention_equals_attention_with_repeated_key_value_heads():
    grouped = spread_weights(build({**TRANSFORMER, "heads": 4, "kv_groups": 2}))
    assert grouped.attention.key.weight.shape == (2 * 4, 16)  # kv_groups * head_dim
    full = build({**TRANSFORMER, "heads": 4, "kv_groups": 4})
    full.load_state_dict({name: value for name, value in grouped.state_dict().items()
                          if name not in ("attention.key.weight", "attention.value.weight")}, strict=False)
    with torch.no_grad():
        for name in ("key", "value"):
            weight = getattr(grouped.attention, name).weight.view(2, 4, 16)  # (kv head, head_dim, hidden)
            getattr(full.attention, name).weight.copy_(weight.repeat_interleave(2, dim=0).reshape(16, 16))
    x = rows(9, 16)
    meta = RowMeta([5, 4], causal=True)
    torch.testing.assert_close(grouped(x, meta), full(x, meta), rtol=1e-12, atol=1e-12)
    one_group = build({**TRANSFORMER, "heads": 4, "kv_groups": 1})
    assert one_group.attention.value.weight.shape == (4, 16)
    assert one_group(x, meta).shape == (9, 16)


# --- gradients ----------------------------------------------------------------------------------

def test_embedding_looks_up_ids_and_injected_rows_carry_gradients():
    embedding = build({"kind": "embedding", "vocab": 10, "hidden": 4})
    ids = torch.tensor([1, 2, 3, 4, 5, 6])
    inject = rows(2, 4).requires_grad_()
    positions = torch.tensor([4, 1])
    out = embedding(None, RowMeta([3, 3], token_ids=ids, inject_positions=positions, inject=inject))
    expected = embedding.table.weight[ids].detach().clone()
    expected[4], expected[1] = inject[0].detach(), inject[1].detach()
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=0)
    upstream = rows(6, 4, seed=7)
    (out * upstream).sum().backward()
    torch.testing.assert_close(inject.grad, upstream[[4, 1]], rtol=0, atol=0)
    table_grad = embedding.table.weight.grad
    assert torch.count_nonzero(table_grad[[2, 5]]) == 0  # ids at overwritten positions get nothing
    torch.testing.assert_close(table_grad[[1, 3, 4, 6]], upstream[[0, 2, 3, 5]], rtol=0, atol=0)
    with pytest.raises(ValueError, match="token_ids"):
        embedding(None, RowMeta([6]))
    with pytest.raises(ValueError, match="inject"):
        embedding(None, RowMeta([6], token_ids=ids, inject_positions=positions, inject=inject[:1]))


def gradcheck_with_parameters(layer, inputs, forward):
    """gradcheck of forward(layer called with the given parameters, *inputs) over inputs and
    every parameter."""
    names = [name for name, _ in layer.named_parameters()]
    parameters = [p.detach().clone().requires_grad_() for p in layer.parameters()]

    def call(*args):
        state = dict(zip(names, args[len(inputs):]))
        return forward(lambda x, meta: functional_call(layer, state, (x, meta)), *args[:len(inputs)])

    assert gradcheck(call, (*inputs, *parameters), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("gated, causal, kv_groups", [(True, True, 1), (False, False, 2)])
def test_transformer_block_gradients(gated, causal, kv_groups):
    block = spread_weights(build({"kind": "transformer", "hidden": 8, "ffn": 12, "heads": 2,
                                  "kv_groups": kv_groups, "gated_mlp": gated}))
    x = rows(5, 8).requires_grad_()
    gradcheck_with_parameters(block, (x,), lambda run, x: run(x, RowMeta([3, 2], causal=causal)))


def test_dit_block_gradients():
    block = spread_weights(build({"kind": "dit", "hidden": 8, "ffn": 12, "heads": 2, "kv_groups": 1,
                                  "gated_mlp": False}))
    x, context = rows(5, 8).requires_grad_(), rows(3, 8, seed=9).requires_grad_()
    gradcheck_with_parameters(
        block, (x, context),
        lambda run, x, context: run(x, RowMeta([3, 2], context=context, context_segments=[3, 0])))


@pytest.mark.parametrize("layer_dict", [{"kind": "projector", "input": 8, "hidden": 6, "output": 5},
                                        {"kind": "lm_head", "vocab": 7, "hidden": 4}])
def test_row_wise_layer_gradients(layer_dict):
    layer = spread_weights(build(layer_dict))
    x = rows(4, 4).requires_grad_()
    gradcheck_with_parameters(layer, (x,), lambda run, x: run(x, RowMeta([2, 2])))


# --- construction -------------------------------------------------------------------------------

ALL_KINDS = [
    TRANSFORMER, DIT,
    {"kind": "embedding", "vocab": 64, "hidden": 16},
    {"kind": "lm_head", "vocab": 64, "hidden": 16},
    {"kind": "linear", "input": 48, "output": 16},
    {"kind": "projector", "input": 64, "hidden": 24, "output": 20},
]


@pytest.mark.parametrize("layer_dict", ALL_KINDS)
def test_build_layer_is_reproducible_from_the_generator_alone(layer_dict):
    expected_class = {"transformer": layers.TransformerBlock, "dit": layers.DitBlock, "embedding": layers.Embedding,
                      "lm_head": layers.LmHead, "linear": layers.Linear, "projector": layers.ProjectorLayer}
    before = torch.random.get_rng_state()
    first, again = build(layer_dict, torch.float32, seed=11), build(layer_dict, torch.float32, seed=11)
    assert torch.equal(torch.random.get_rng_state(), before)  # torch's global generator untouched
    assert type(first) is expected_class[layer_dict["kind"]]
    other, wide = build(layer_dict, torch.float32, seed=12), build(layer_dict, torch.float64, seed=11)
    for (name, a), b, c, d in zip(first.state_dict().items(), again.state_dict().values(),
                                  other.state_dict().values(), wide.state_dict().values()):
        assert torch.equal(a, b), name
        assert torch.equal(a.double(), d), name  # float64 holds exactly the float32 draw
        if name.endswith("bias"):
            assert torch.count_nonzero(a) == 0, name
        elif "norm" in name:
            assert torch.equal(a, torch.ones_like(a)), name
        else:
            assert not torch.equal(a, c), name
            assert 0.01 < a.std().item() < 0.03, name


def test_parameter_counts_equal_dips_for_the_tiny_presets():
    dip = pytest.importorskip("dip")
    # tiny-vlm and tiny-t2v of include/dip/model/presets.hpp, module by module.
    transformer = {"kind": "transformer", "gated_mlp": False}
    models = {
        "tiny-vlm": {
            "vit": [{"kind": "linear", "input": 48, "output": 32}]
                   + [{**transformer, "hidden": 32, "ffn": 64, "heads": 2, "kv_groups": 2}] * 4,
            "projector": [{"kind": "projector", "input": 128, "hidden": 48, "output": 48}],
            "llm": [{"kind": "embedding", "vocab": 64, "hidden": 48}]
                   + [{**transformer, "hidden": 48, "ffn": 96, "heads": 4, "kv_groups": 2, "gated_mlp": True}] * 4
                   + [{"kind": "lm_head", "vocab": 64, "hidden": 48}],
        },
        "tiny-t2v": {
            "llm": [{"kind": "embedding", "vocab": 64, "hidden": 32}]
                   + [{**transformer, "hidden": 32, "ffn": 64, "heads": 2, "kv_groups": 2, "gated_mlp": True}] * 4,
            "projector": [{"kind": "projector", "input": 32, "hidden": 48, "output": 48}],
            "dit": [{"kind": "linear", "input": 64, "output": 48}]
                   + [{"kind": "dit", "hidden": 48, "ffn": 96, "heads": 2, "kv_groups": 2, "gated_mlp": False}] * 4
                   + [{"kind": "linear", "input": 48, "output": 64}],
        },
    }
    for preset, modules in models.items():
        for module in dip.Model.preset(preset).modules:
            built = [build(layer) for layer in modules[module["name"]]]
            assert len(built) == module["layers"], (preset, module["name"])
            assert sum(p.numel() for layer in built for p in layer.parameters()) == module["parameters"], \
                (preset, module["name"])


def test_same_inputs_give_bitwise_equal_outputs_and_gradients():
    block = build(DIT, torch.float32)
    segments, context_segments = [64] * 10 + [30, 50], [5] * 10 + [0, 7]
    x = rows(sum(segments), 16, torch.float32)
    context = rows(sum(context_segments), 16, torch.float32, seed=3)
    results = []
    for _ in range(2):
        block.zero_grad()
        xi = x.clone().requires_grad_()
        out = block(xi, RowMeta(segments, context=context, context_segments=context_segments))
        out.square().sum().backward()
        results.append((out.detach(), xi.grad, [p.grad.clone() for p in block.parameters()]))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert all(torch.equal(a, b) for a, b in zip(results[0][2], results[1][2]))


def test_build_layer_refuses_opaque_unknown_and_invalid_layers():
    opaque = {"kind": "opaque", "name": "vae", "parameters": 100, "output_features": 16}
    with pytest.raises(ValueError, match="'opaque' \\('vae'\\).*opaque_modules"):
        layers.build_layer(opaque)
    with pytest.raises(ValueError, match="unknown layer kind 'conv3d'"):
        layers.build_layer({"kind": "conv3d"})
    with pytest.raises(ValueError, match="unknown layer kind None"):
        layers.build_layer({"hidden": 4})
    with pytest.raises(ValueError, match="'transformer': missing field 'ffn'"):
        layers.build_layer({"kind": "transformer", "hidden": 16, "heads": 4, "kv_groups": 2})
    with pytest.raises(ValueError, match="multiple of heads"):
        layers.build_layer({**TRANSFORMER, "heads": 5, "kv_groups": 5})
    with pytest.raises(ValueError, match="multiple of kv_groups"):
        layers.build_layer({**TRANSFORMER, "kv_groups": 3})
    with pytest.raises(ValueError, match="vocab must be > 0"):
        layers.build_layer({"kind": "embedding", "vocab": 0, "hidden": 4})


def test_build_layer_takes_the_callers_module_for_an_opaque_layer():
    opaque = {"kind": "opaque", "name": "vae", "parameters": 0, "output_features": 16}
    plain = torch.nn.Tanh()
    wrapped = layers.build_layer(opaque, opaque_modules={"vae": plain})
    assert isinstance(wrapped, layers.ModuleLayer) and wrapped.module is plain
    x = rows(3, 16)
    torch.testing.assert_close(wrapped(x, RowMeta([3])), torch.tanh(x))
    own = layers.Linear(16, 16)
    assert layers.build_layer(opaque, opaque_modules={"vae": own}) is own
    with pytest.raises(ValueError, match="'vae'"):
        layers.build_layer(opaque, opaque_modules={"other": plain})


def test_rows_must_match_segments():
    block = build(TRANSFORMER)
    with pytest.raises(ValueError, match="segments sum to 5 but x has 6 rows"):
        block(rows(6, 16), RowMeta([3, 2]))
    with pytest.raises(ValueError, match=">= 0"):
        block(rows(6, 16), RowMeta([7, -1]))
