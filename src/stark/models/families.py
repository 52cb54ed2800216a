"""stark.models.families: split from stark.models.checkpoint."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
)

from stark.errors import StarkInputError


@dataclass(frozen=True)
class LayerParts:
    """The six Linear layers of one encoder block that head / neuron pruning touches."""

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attn_out: nn.Linear
    ffn_in: nn.Linear
    ffn_out: nn.Linear


PART_NAMES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class Family:
    """Where one encoder family keeps what head / neuron pruning touches, as attribute paths.

    Every function that masks, scores, reorders, slices, resizes or reloads a model goes through this
    table, so a new family is one entry here (and a test), not a branch in every function. The paths
    are also written into a saved checkpoint's config (``stark_layout``), so the small modeling file
    beside it can resize any family without stark installed.
    """

    layers: str
    """The list of blocks, from the base model."""
    query: str
    key: str
    value: str
    attn_out: str
    ffn_in: str
    ffn_out: str
    attention: str
    """The module whose head-count attributes are kept truthful after slicing."""
    heads_attr: str | None = None
    width_attr: str | None = None
    fused_qkv: bool = False
    """ModernBERT: ``query`` is one Linear whose rows are [Q heads | K heads | V heads] (key, value unused)."""
    gated_ffn: bool = False
    """ModernBERT: ``ffn_in`` has 2F rows, [input | gate] of each neuron; the FFN computes act(input) * gate."""
    min_heads: int = 0
    """Heads every layer keeps: DeBERTa's attention reshapes with the head count given and the head size
    inferred, which is ambiguous for zero heads, so its layers keep at least their best-scored head."""
    head_bias: str | None = None
    """MPNet: the module that receives the encoder's shared relative-position bias (one column per original
    head) as its third argument. Each layer keeps the original ids of its heads (``stark_head_ids``) and
    a pre-hook hands it only their columns, in their order."""
    head_rows: tuple[str, ...] = ()
    """Further Linear layers with a block of output rows per head, sliced like ``query`` (DeBERTa-v2 without
    ``share_att_key``: the per-layer projections of the shared relative-position embeddings). A layer
    that lacks one (its attention type does not use it) skips it."""

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        return get_path(model.base_model, self.layers)

    def parts(self, layer: nn.Module) -> LayerParts:
        return LayerParts(*(get_path(layer, getattr(self, name)) for name in PART_NAMES))

    def replace(self, layer: nn.Module, name: str, linear: nn.Linear) -> None:
        set_path(layer, getattr(self, name), linear)

    def projections(self) -> tuple[str, ...]:
        """The head-row projections that exist as their own Linear layers."""
        return ("query",) if self.fused_qkv else ("query", "key", "value")

    def head_row_paths(self, layer: nn.Module) -> list[str]:
        """The ``head_rows`` paths that this block has."""
        return [path for path in self.head_rows if has_path(layer, path)]

    def heads_of(self, parts: LayerParts, d_head: int) -> int:
        return parts.query.out_features // d_head // (3 if self.fused_qkv else 1)

    def neurons_of(self, parts: LayerParts) -> int:
        return parts.ffn_in.out_features // (2 if self.gated_ffn else 1)

    def sync(self, layer: nn.Module, n_heads: int, d_head: int) -> None:
        # The forward pass infers the head count from shapes; keep the attributes truthful anyway so that
        # nobody reading them (e.g. a user's own code) sees the pre-pruning value.
        attn = get_path(layer, self.attention)
        if self.heads_attr:
            setattr(attn, self.heads_attr, n_heads)
        if self.width_attr:
            setattr(attn, self.width_attr, n_heads * d_head)

    def to_dict(self) -> dict[str, str | bool | list[str] | None]:
        names = ("layers", *PART_NAMES, "attention", "heads_attr", "width_attr", "head_bias", "fused_qkv", "gated_ffn")
        layout: dict[str, str | bool | list[str] | None] = {f: getattr(self, f) for f in names}
        if self.head_rows:  # left out where empty: the other families' configs stay as they were
            layout["head_rows"] = list(self.head_rows)
        return layout

    def keep_head_ids(self, layer: nn.Module, keep: Sequence[int], n_before: int) -> None:
        """After slicing a layer to ``keep`` (indices of its current heads): track the original ids."""
        if self.head_bias is None:
            return
        module = get_path(layer, self.head_bias)
        ids = getattr(module, "stark_head_ids", None) or list(range(n_before))
        set_head_ids(module, [ids[i] for i in keep])


def _slice_head_bias(module: nn.Module, args: tuple, kwargs: dict):
    # Reads the ids at call time (no closure), so deep copies and reloads keep working.
    ids = getattr(module, "stark_head_ids", None)
    if ids is None or len(args) < 3 or args[2] is None:
        return None
    bias = args[2].index_select(1, torch.as_tensor(ids, dtype=torch.long, device=args[2].device))
    return (*args[:2], bias, *args[3:]), kwargs


def set_head_ids(module: nn.Module, ids: Sequence[int]) -> None:
    """Give an attention module its heads' original ids and the hook that selects their bias columns."""
    module.stark_head_ids = list(ids)
    if not getattr(module, "_stark_bias_hook", False):
        module.register_forward_pre_hook(_slice_head_bias, with_kwargs=True)
        module._stark_bias_hook = True


def get_path(obj: object, path: str):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def has_path(obj: object, path: str) -> bool:
    for name in path.split("."):
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


def set_path(obj: object, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    setattr(get_path(obj, ".".join(parents)) if parents else obj, leaf, value)


_BERT_LIKE = Family(
    layers="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attn_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.self",
    heads_attr="num_attention_heads",
    width_attr="all_head_size",
)


_DISTILBERT = Family(
    layers="transformer.layer",
    query="attention.q_lin",
    key="attention.k_lin",
    value="attention.v_lin",
    attn_out="attention.out_lin",
    ffn_in="ffn.lin1",
    ffn_out="ffn.lin2",
    attention="attention",
    heads_attr="n_heads",
)


_MPNET = Family(
    layers="encoder.layer",
    query="attention.attn.q",
    key="attention.attn.k",
    value="attention.attn.v",
    attn_out="attention.attn.o",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.attn",
    heads_attr="num_attention_heads",
    width_attr="all_head_size",
    head_bias="attention.attn",
)


_DEBERTA_V2 = Family(
    layers="encoder.layer",
    query="attention.self.query_proj",
    key="attention.self.key_proj",
    value="attention.self.value_proj",
    attn_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.self",
    heads_attr="num_attention_heads",
    width_attr="all_head_size",
    min_heads=1,
    head_rows=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
)


_MODERNBERT = Family(
    layers="layers",
    query="attn.Wqkv",
    key="attn.Wqkv",
    value="attn.Wqkv",
    attn_out="attn.Wo",
    ffn_in="mlp.Wi",
    ffn_out="mlp.Wo",
    attention="attn",
    fused_qkv=True,
    gated_ffn=True,
)


FAMILIES: dict[str, Family] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": _DISTILBERT,
    "mpnet": _MPNET,
    "deberta-v2": _DEBERTA_V2,
    "modernbert": _MODERNBERT,
}


"""model_type -> where its blocks keep their attention and FFN Linear layers."""


REFUSED: dict[str, str] = {
    "albert": "ALBERT shares one set of layer weights across all layers, so a head cannot be removed from one layer "
    "without removing it from all",
}


"""Families stark recognises and refuses, with the reason (one line each)."""


SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def family_of(config: PretrainedConfig) -> Family:
    """The layout table entry of a config's model type (StarkInputError naming why, if unsupported)."""
    kind = getattr(config, "model_type", None)
    if kind in FAMILIES:
        return FAMILIES[kind]
    why = REFUSED.get(kind, "it is not one of the encoder families stark knows")
    raise StarkInputError(f"model type {kind!r} cannot be pruned by stark: {why} (supported: {', '.join(FAMILIES)})")


def max_positions(config: PretrainedConfig) -> int | None:
    """The most tokens one input may have: the rows of the learned position table a model can index, or None
    where positions are only relative or rotary (ModernBERT; DeBERTa-v2/v3 without ``position_biased_input``),
    which run on longer inputs.

    RoBERTa-like models number positions from ``pad_token_id + 1`` (their 514 rows hold 512 tokens); MPNet
    from 2 (transformers fixes its padding index at 1). A longer input fails inside the embeddings.
    """
    kind = config.model_type
    if kind == "modernbert" or (kind == "deberta-v2" and not getattr(config, "position_biased_input", True)):
        return None
    rows = getattr(config, "max_position_embeddings", None)
    if rows is None:
        return None
    if kind in ("roberta", "xlm-roberta", "camembert") and config.pad_token_id is not None:
        return rows - config.pad_token_id - 1
    if kind == "mpnet":
        return rows - 2
    return rows


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The encoder's list of transformer blocks (where it lives depends on the family)."""
    return family_of(model.config).layer_list(model)


def head_dim(config: PretrainedConfig) -> int:
    return config.hidden_size // config.num_attention_heads


def layer_widths(model: PreTrainedModel) -> tuple[list[int], list[int]]:
    """Kept heads and FFN neurons per layer, read from the weight shapes.

    Returns:
        (heads, ffn): two lists of length num_layers.
    """
    d = head_dim(model.config)
    family = family_of(model.config)
    heads, ffn = [], []
    for layer in family.layer_list(model):
        parts = family.parts(layer)
        heads.append(family.heads_of(parts, d))
        ffn.append(family.neurons_of(parts))
    return heads, ffn


def empty_linear(in_features: int, out_features: int, like: nn.Linear) -> nn.Linear:
    """An uninitialised Linear on ``like``'s device and dtype; its weights are about to be overwritten.

    Built on the meta device (no wasted init) with the zero-size warning silenced: zero-width layers
    are legitimate here (a layer that lost all its heads or neurons).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        new = nn.Linear(in_features, out_features, bias=like.bias is not None, device="meta", dtype=like.weight.dtype)
    return new.to_empty(device=like.weight.device)


def resize_layer(layer: nn.Module, n_heads: int, n_ffn: int, d_head: int, family: Family = _BERT_LIKE) -> None:
    """Give one block room for ``n_heads`` heads and ``n_ffn`` neurons (uninitialised weights).

    Used when rebuilding a pruned checkpoint before its weights are loaded.
    """
    p = family.parts(layer)
    width = n_heads * d_head
    rows = width * (3 if family.fused_qkv else 1)
    for name in family.projections():
        old = getattr(p, name)
        family.replace(layer, name, empty_linear(old.in_features, rows, old))
    for path in family.head_row_paths(layer):
        old = get_path(layer, path)
        set_path(layer, path, empty_linear(old.in_features, width, old))
    family.replace(layer, "attn_out", empty_linear(width, p.attn_out.out_features, p.attn_out))
    n_in = n_ffn * (2 if family.gated_ffn else 1)
    family.replace(layer, "ffn_in", empty_linear(p.ffn_in.in_features, n_in, p.ffn_in))
    family.replace(layer, "ffn_out", empty_linear(n_ffn, p.ffn_out.out_features, p.ffn_out))
    family.sync(layer, n_heads, d_head)


def record_widths(model: PreTrainedModel) -> None:
    """Write the per-layer widths into the config (``stark_heads``, ``stark_ffn``) from the weight shapes."""
    heads, ffn = layer_widths(model)
    model.config.stark_heads = heads
    model.config.stark_ffn = ffn
    family = family_of(model.config)
    model.config.stark_layout = family.to_dict()
    if family.head_bias is not None:
        model.config.stark_head_ids = [
            getattr(get_path(layer, family.head_bias), "stark_head_ids", None) or list(range(h))
            for layer, h in zip(family.layer_list(model), heads, strict=True)
        ]
