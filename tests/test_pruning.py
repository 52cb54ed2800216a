"""Structured pruning is exact: masked == sliced, reordering is a no-op, uneven checkpoints round-trip."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import heads_for, random_batch, tiny_model

from stark.errors import StarkInputError
from stark.method.masks import masked, ones_masks
from stark.method.pruning import drop_layers, prune_model, reorder_model, round_width, sparsify, sparsity_map
from stark.models.checkpoint import load_model, save_model
from stark.models.families import encoder_layers, family_of, get_path, layer_widths

# Layer 0 keeps heads {3, 1} (out of order) and some neurons; layer 1 keeps nothing at all.
KEEP_HEADS = [[3, 1], []]
KEEP_NEURONS = [[0, 5, 7, 8, 13, 21, 30, 39, 2], []]


def _masks_for(keep_heads, keep_neurons, n_heads=4, n_ffn=40):
    head_mask = [torch.zeros(n_heads) for _ in keep_heads]
    neuron_mask = [torch.zeros(n_ffn) for _ in keep_neurons]
    for m, keep in zip(head_mask, keep_heads, strict=True):
        m[list(keep)] = 1.0
    for m, keep in zip(neuron_mask, keep_neurons, strict=True):
        m[list(keep)] = 1.0
    return head_mask, neuron_mask


@torch.no_grad()
def test_masked_equals_pruned_with_empty_layer(arch):
    model = tiny_model(arch)
    batch = random_batch()
    keep = heads_for(arch, KEEP_HEADS)
    head_mask, neuron_mask = _masks_for(keep, KEEP_NEURONS)
    with masked(model, head_mask, neuron_mask):
        expected = model(**batch).logits
    pruned = prune_model(copy.deepcopy(model), keep, KEEP_NEURONS)
    assert layer_widths(pruned) == ([2, len(keep[1])], [9, 0])
    torch.testing.assert_close(pruned(**batch).logits, expected, atol=1e-5, rtol=0)


@torch.no_grad()
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_equals_pruned_random_keep_sets(seed):
    model = tiny_model("bert", layers=3)
    g = torch.Generator().manual_seed(seed)
    keep_heads = [
        torch.randperm(4, generator=g)[: int(torch.randint(0, 5, (1,), generator=g))].tolist() for _ in range(3)
    ]
    keep_neurons = [
        torch.randperm(40, generator=g)[: int(torch.randint(0, 41, (1,), generator=g))].tolist() for _ in range(3)
    ]
    head_mask, neuron_mask = _masks_for(keep_heads, keep_neurons)
    batch = random_batch(seed=seed)
    with masked(model, head_mask, neuron_mask):
        expected = model(**batch).logits
    pruned = prune_model(copy.deepcopy(model), keep_heads, keep_neurons)
    torch.testing.assert_close(pruned(**batch).logits, expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_ones_masks_change_nothing(arch):
    model = tiny_model(arch)
    batch = random_batch()
    plain = model(**batch).logits
    with masked(model, *ones_masks(model)):
        torch.testing.assert_close(model(**batch).logits, plain, atol=0, rtol=0)
    # Hooks are gone afterwards.
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@torch.no_grad()
def test_reorder_leaves_function_unchanged(arch):
    model = tiny_model(arch)
    batch = random_batch()
    before = model(**batch).logits
    g = torch.Generator().manual_seed(3)
    heads = [torch.rand(4, generator=g) for _ in range(2)]
    neurons = [torch.rand(40, generator=g) for _ in range(2)]
    reordered = reorder_model(copy.deepcopy(model), heads, neurons)
    torch.testing.assert_close(reordered(**batch).logits, before, atol=1e-5, rtol=0)
    # The first head of each layer is now the best-scored one: its query rows moved to the front.
    d = 8
    family = family_of(model.config)
    for layer_old, layer_new, s in zip(encoder_layers(model), encoder_layers(reordered), heads, strict=True):
        best = int(torch.argmax(s))
        torch.testing.assert_close(
            family.parts(layer_new).query.weight[:d], family.parts(layer_old).query.weight[best * d : (best + 1) * d]
        )


@torch.no_grad()
def test_prefix_of_reordered_equals_masking_the_best(arch):
    """Sparsifying = keeping the top-n of each layer by score = masking everything else."""
    model = tiny_model(arch)
    batch = random_batch()
    g = torch.Generator().manual_seed(5)
    heads = [torch.rand(4, generator=g) for _ in range(2)]
    neurons = [torch.rand(40, generator=g) for _ in range(2)]
    kept_h, kept_n = sparsity_map(heads, neurons, 0.5)
    keep_heads = [torch.argsort(s, descending=True)[:k].tolist() for s, k in zip(heads, kept_h, strict=True)]
    keep_neurons = [torch.argsort(s, descending=True)[:k].tolist() for s, k in zip(neurons, kept_n, strict=True)]
    with masked(model, *_masks_for(keep_heads, keep_neurons)):
        expected = model(**batch).logits
    sparse = sparsify(reorder_model(copy.deepcopy(model), heads, neurons), kept_h, kept_n)
    assert layer_widths(sparse) == (kept_h, kept_n)
    torch.testing.assert_close(sparse(**batch).logits, expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_save_load_round_trip_uneven(arch, tmp_path):
    keep = heads_for(arch, KEEP_HEADS)
    model = prune_model(tiny_model(arch), keep, KEEP_NEURONS)
    batch = random_batch()
    expected = model(**batch).logits
    save_model(model, None, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
        "modeling_stark.py",
        "stark_pooling.py",
    ]
    loaded = load_model(str(tmp_path / "m"))
    assert layer_widths(loaded) == ([2, len(keep[1])], [9, 0])
    assert loaded.config.stark_heads == [2, len(keep[1])] and loaded.config.stark_ffn == [9, 0]
    family = family_of(loaded.config)
    if family.heads_attr:  # ModernBERT keeps no head count: its attention infers it from shapes
        assert getattr(get_path(encoder_layers(loaded)[0], family.attention), family.heads_attr) == 2
    torch.testing.assert_close(loaded(**batch).logits, expected, atol=0, rtol=0)


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    model = tiny_model()
    save_model(model, None, tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(type(model), "save_pretrained", boom)
    with pytest.raises(OSError):
        save_model(prune_model(model, [[0], [1]], [[1], [2]]), None, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp folder left behind


def test_sparsity_map_known_scores():
    # 2 layers x 4 heads. Global order of the 8 head scores, lowest first: .1(l1h0) .2(l0h3) .3(l1h1) .4(l0h0) ...
    heads = [torch.tensor([0.4, 0.9, 0.8, 0.2]), torch.tensor([0.1, 0.3, 0.7, 0.6])]
    # 2 layers x 16 neurons: layer 0 scores 0..15, layer 1 scores 100..115 (all of layer 0 is worse).
    neurons = [torch.arange(16.0), torch.arange(100.0, 116.0)]
    # 50%: remove round(4) heads = l1h0, l0h3, l1h1, l0h0 -> 2 + 2 kept; remove 16 neurons = all of layer 0.
    assert sparsity_map(heads, neurons, 0.5, multiple=8) == ([2, 2], [0, 16])
    # 25%: remove 2 heads (l1h0, l0h3); 8 neurons from layer 0 -> 8 kept there.
    assert sparsity_map(heads, neurons, 0.25, multiple=8) == ([3, 3], [8, 16])
    # 10%: round(0.8)=1 head (l1h0); round(3.2)=3 neurons -> layer 0 keeps 13 -> rounded to 16 (multiple of 8).
    assert sparsity_map(heads, neurons, 0.10, multiple=8) == ([4, 3], [16, 16])
    # 20%: round(1.6)=2 heads; round(6.4)=6 neurons -> 10 kept -> rounded to 8.
    assert sparsity_map(heads, neurons, 0.20, multiple=8) == ([3, 3], [8, 16])
    assert sparsity_map(heads, neurons, 0.0) == ([4, 4], [16, 16])
    # 90%: round(7.2)=7 heads go, only l0h1 (0.9) survives; round(28.8)=29 neurons: layer 1 keeps 3 -> rounds to 0.
    assert sparsity_map(heads, neurons, 0.9, multiple=8) == ([1, 0], [0, 0])


def test_sparsity_map_ties_are_deterministic():
    heads = [torch.ones(4), torch.ones(4)]
    neurons = [torch.ones(8), torch.ones(8)]
    # Equal scores: the earliest (layer, index) goes first.
    assert sparsity_map(heads, neurons, 0.5, multiple=1) == ([0, 4], [0, 8])


def test_round_width():
    assert [round_width(k, 1536) for k in (0, 3, 4, 11, 12, 1530, 1533, 1536)] == [0, 0, 8, 8, 16, 1528, 1536, 1536]
    assert round_width(5, 6) == 5  # layers narrower than the multiple are not rounded


@pytest.mark.parametrize("bad", [-0.01, 0.96, 1.5, float("nan")])
def test_sparsity_out_of_range(bad):
    with pytest.raises(StarkInputError, match="out of range"):
        sparsity_map([torch.ones(4)], [torch.ones(8)], bad)


@torch.no_grad()
def test_drop_layers_keeps_bottom_layers(arch):
    model = tiny_model(arch, layers=3)
    student = drop_layers(model, 2)
    assert student.config.num_hidden_layers == 2 and len(encoder_layers(student)) == 2
    for a, b in zip(encoder_layers(student), encoder_layers(model)[:2], strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)
    # The teacher itself is untouched.
    assert len(encoder_layers(model)) == 3
    with pytest.raises(StarkInputError, match="out of range"):
        drop_layers(model, 4)


@torch.no_grad()
def test_deberta_position_projections_follow_their_heads(tmp_path):
    """DeBERTa-v2 without share_att_key projects the relative positions with its own Linears per layer: their
    rows are sliced with the kept heads, in their order, and a reload rebuilds them at the pruned width."""
    model = tiny_model("deberta-v2-sep")
    attn = encoder_layers(model)[0].attention.self
    d = 32 // 4
    before = {name: getattr(attn, name).weight.clone() for name in ("pos_key_proj", "pos_query_proj")}
    pruned = prune_model(copy.deepcopy(model), heads_for("deberta-v2-sep", KEEP_HEADS), KEEP_NEURONS)
    after = encoder_layers(pruned)[0].attention.self
    rows = [3 * d + i for i in range(d)] + [1 * d + i for i in range(d)]
    for name, weight in before.items():
        torch.testing.assert_close(getattr(after, name).weight, weight[rows], atol=0, rtol=0)
    assert encoder_layers(pruned)[1].attention.self.pos_key_proj.out_features == d  # the head kept by force
    save_model(pruned, None, tmp_path / "m")
    assert load_model(str(tmp_path / "m")).config.stark_layout["head_rows"] == list(family_of(model.config).head_rows)
