"""Physical structured pruning: reorder heads / neurons by score, compute sparsity maps, slice layers.

All maths here is pure and shape-driven so that tests can pin it exactly:

* :func:`reorder_model` permutes heads (Q/K/V output rows, attention-output input columns) and FFN
  neurons (FFN-in rows, FFN-out columns) inside every layer; the function the model computes is
  unchanged.
* :func:`sparsity_map` turns a score matrix and a global sparsity into per-layer kept counts:
  the round(s * L * H) heads and round(s * L * F) neurons with the lowest scores over the whole
  model go, FFN widths are then rounded to multiples of 8 (docs/method.md, step 5).
* :func:`prune_model` slices every layer to the requested kept indices; a layer may keep nothing,
  in which case only the residual path (plus the projection bias) remains.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from stark.errors import StarkInputError
from stark.models.families import (
    Family,
    empty_linear,
    encoder_layers,
    family_of,
    get_path,
    head_dim,
    layer_widths,
    set_path,
)

NEURON_MULTIPLE = 8


def round_half_up(x: float) -> int:
    """Python's round() rounds halves to even; the spec's counts use the usual half-up rule."""
    return math.floor(x + 0.5)


def check_sparsity(sparsity: float) -> float:
    """Sparsities are fractions in [0, 0.95]; the CLI passes percentages and divides by 100 first."""
    if not (0.0 <= sparsity <= 0.95) or math.isnan(sparsity):
        raise StarkInputError(f"sparsity {sparsity * 100:g}% is out of range: use 0 to 95 (percent)")
    return sparsity


def _slice_rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = empty_linear(linear.in_features, len(index), linear)
    with torch.no_grad():
        new.weight.copy_(linear.weight.index_select(0, index))
        if linear.bias is not None:
            new.bias.copy_(linear.bias.index_select(0, index))
    return new


def _slice_cols(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = empty_linear(len(index), linear.out_features, linear)
    with torch.no_grad():
        new.weight.copy_(linear.weight.index_select(1, index))
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def _head_rows(heads: Sequence[int], d_head: int, device: torch.device) -> torch.Tensor:
    rows = [h * d_head + i for h in heads for i in range(d_head)]
    return torch.tensor(rows, dtype=torch.long, device=device)


def slice_layer(
    layer: nn.Module, keep_heads: Sequence[int], keep_neurons: Sequence[int], d_head: int, family: Family
) -> None:
    """Keep the listed heads and neurons of one block, in the listed order (so this also reorders).

    Args:
        keep_heads: head indices of the current layer, each at most once.
        keep_neurons: FFN neuron indices of the current layer, each at most once.
        family: where the block keeps its Linear layers (``models.family_of``).
    """
    p = family.parts(layer)
    device = p.query.weight.device
    n_heads = family.heads_of(p, d_head)
    family.keep_head_ids(layer, list(keep_heads), n_heads)
    rows = _head_rows(keep_heads, d_head, device)
    neurons = torch.as_tensor(list(keep_neurons), dtype=torch.long, device=device)
    # A fused QKV Linear holds [Q | K | V] rows, a gated FFN [input | gate] rows: slice each block alike.
    qkv_rows = torch.cat([rows + k * n_heads * d_head for k in range(3)]) if family.fused_qkv else rows
    n_ffn = family.neurons_of(p)
    in_rows = torch.cat([neurons, neurons + n_ffn]) if family.gated_ffn else neurons
    for name in family.projections():
        family.replace(layer, name, _slice_rows(getattr(p, name), qkv_rows))
    for path in family.head_row_paths(layer):
        set_path(layer, path, _slice_rows(get_path(layer, path), rows))
    family.replace(layer, "attn_out", _slice_cols(p.attn_out, rows))
    family.replace(layer, "ffn_in", _slice_rows(p.ffn_in, in_rows))
    family.replace(layer, "ffn_out", _slice_cols(p.ffn_out, neurons))
    family.sync(layer, len(keep_heads), d_head)


def prune_model(
    model: PreTrainedModel,
    keep_heads: Sequence[Sequence[int]],
    keep_neurons: Sequence[Sequence[int]],
) -> PreTrainedModel:
    """Slice every layer in place to the kept heads / neurons and record the widths in the config."""
    d = head_dim(model.config)
    family = family_of(model.config)
    layers = family.layer_list(model)
    if any(len(list(h)) < family.min_heads for h in keep_heads):
        raise ValueError(f"{model.config.model_type} layers must keep at least {family.min_heads} head(s)")
    if len(keep_heads) != len(layers) or len(keep_neurons) != len(layers):
        raise ValueError(f"need one keep-list per layer ({len(layers)}), got {len(keep_heads)}/{len(keep_neurons)}")
    for layer, heads, neurons in zip(layers, keep_heads, keep_neurons, strict=True):
        slice_layer(layer, heads, neurons, d, family)
    model.config.stark_heads, model.config.stark_ffn = layer_widths(model)
    return model


def descending_order(scores: torch.Tensor) -> list[int]:
    """Indices by score, highest first; ties keep the original order so the result is deterministic."""
    return torch.sort(scores.detach().float().cpu(), descending=True, stable=True).indices.tolist()


def reorder_model(
    model: PreTrainedModel, head_scores: Sequence[torch.Tensor], neuron_scores: Sequence[torch.Tensor]
) -> PreTrainedModel:
    """Permute heads and neurons of each layer by score, descending; the model's function is unchanged.

    After this, keeping the first n heads / neurons of a layer keeps its n best-scored ones, which is
    what makes every sparsity level a cheap prefix slice of one reordered teacher.

    Args:
        head_scores: per layer, a (heads,) tensor.
        neuron_scores: per layer, an (ffn,) tensor.
    """
    return prune_model(
        model,
        [descending_order(s) for s in head_scores],
        [descending_order(s) for s in neuron_scores],
    )


def _global_keep_counts(scores: Sequence[torch.Tensor], n_remove: int) -> list[int]:
    sizes = [len(s) for s in scores]
    if sum(sizes) == 0:
        return sizes
    flat = torch.cat([s.detach().float().cpu().reshape(-1) for s in scores])
    owner = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(sizes)])
    # Stable ascending sort: among equal scores the earlier (layer, index) goes first, deterministically.
    order = torch.sort(flat, stable=True).indices[:n_remove]
    removed = torch.bincount(owner[order], minlength=len(sizes)).tolist()
    return [n - r for n, r in zip(sizes, removed, strict=True)]


def round_width(kept: int, total: int, multiple: int = NEURON_MULTIPLE) -> int:
    """Round a kept FFN width to the nearest multiple (half up), within [0, total]."""
    if total < multiple:
        return kept
    return min(total, max(0, multiple * round_half_up(kept / multiple)))


def sparsity_map(
    head_scores: Sequence[torch.Tensor],
    neuron_scores: Sequence[torch.Tensor],
    sparsity: float,
    multiple: int = NEURON_MULTIPLE,
) -> tuple[list[int], list[int]]:
    """Per-layer kept head and neuron counts for one global sparsity (docs/method.md, step 5).

    Removes the round(s * sum H_l) lowest-scored heads and round(s * sum F_l) lowest-scored neurons
    across all layers, then rounds each layer's FFN width to a multiple of ``multiple``.

    Args:
        head_scores: per layer, a (H_l,) score tensor.
        neuron_scores: per layer, an (F_l,) score tensor.
        sparsity: fraction in [0, 0.95].

    Returns:
        (heads_kept, neurons_kept), each a list with one count per layer.
    """
    check_sparsity(sparsity)
    n_heads = sum(len(s) for s in head_scores)
    n_neurons = sum(len(s) for s in neuron_scores)
    heads = _global_keep_counts(head_scores, round_half_up(sparsity * n_heads))
    neurons = _global_keep_counts(neuron_scores, round_half_up(sparsity * n_neurons))
    neurons = [round_width(k, len(s), multiple) for k, s in zip(neurons, neuron_scores, strict=True)]
    return heads, neurons


def sparsify(reordered: PreTrainedModel, heads_kept: Sequence[int], neurons_kept: Sequence[int]) -> PreTrainedModel:
    """A copy of an already reordered model keeping the first n heads / neurons of each layer.

    A family that cannot run a layer without heads (``Family.min_heads``) keeps that many best-scored
    heads in every layer, so such a model is slightly less sparse than asked at high sparsity.
    """
    model = copy.deepcopy(reordered)
    floor = family_of(model.config).min_heads
    heads_kept = [max(h, floor) for h in heads_kept]
    return prune_model(model, [range(h) for h in heads_kept], [range(f) for f in neurons_kept])


def drop_layers(model: PreTrainedModel, keep: int) -> PreTrainedModel:
    """A copy keeping the bottom ``keep`` encoder blocks (embeddings and classifier kept)."""
    total = len(encoder_layers(model))
    if not 1 <= keep <= total:
        raise StarkInputError(f"student layers {keep} is out of range: the teacher has {total} layers (use 1-{total})")
    student = copy.deepcopy(model)
    family = family_of(student.config)
    set_path(student.base_model, family.layers, nn.ModuleList(list(family.layer_list(student))[:keep]))
    student.config.num_hidden_layers = keep
    heads, ffn = layer_widths(student)
    student.config.stark_heads, student.config.stark_ffn = heads, ffn
    return student
