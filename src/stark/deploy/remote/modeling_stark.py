"""Loads a stark checkpoint (uneven per-layer widths) in stock transformers, without stark installed.

Written beside the weights by stark and named in config.json's ``auto_map``, so that
``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)`` works anywhere.
``config.stark_heads`` / ``config.stark_ffn`` give the kept attention heads and FFN neurons of each
layer and ``config.stark_layout`` where the family keeps its blocks' Linear layers (attribute paths);
the layers are resized before the weights are loaded. The forward pass is the stock one: the attention
code infers the head count from tensor shapes.
"""

import torch
from torch import nn
from transformers import __BASE__ as _Base

from .stark_pooling import install_mean_pooling

# Checkpoints written before stark recorded the layout are BERT-like.
_BERT_LAYOUT = {
    "layers": "encoder.layer",
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "attention": "attention.self",
    "heads_attr": "num_attention_heads",
    "width_attr": "all_head_size",
}


def _get(obj, path):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def _set(obj, path, value):
    parent, _, leaf = path.rpartition(".")
    setattr(_get(obj, parent) if parent else obj, leaf, value)


def _slice_head_bias(module, args, kwargs):
    # MPNet: the encoder's relative-position bias has a column per original head; give each layer its own.
    ids = getattr(module, "stark_head_ids", None)
    if ids is None or len(args) < 3 or args[2] is None:
        return None
    bias = args[2].index_select(1, torch.as_tensor(ids, dtype=torch.long, device=args[2].device))
    return (*args[:2], bias, *args[3:]), kwargs


def _linear(in_features, out_features, like):
    return nn.Linear(in_features, out_features, bias=like.bias is not None, dtype=like.weight.dtype)


def _apply_widths(model, config):
    heads = getattr(config, "stark_heads", None)
    ffn = getattr(config, "stark_ffn", None)
    if heads is None or ffn is None:
        return
    layout = getattr(config, "stark_layout", None) or _BERT_LAYOUT
    d_head = config.hidden_size // config.num_attention_heads
    for layer, n_heads, n_ffn in zip(_get(model.base_model, layout["layers"]), heads, ffn):  # noqa: B905 (py3.9)
        width = n_heads * d_head
        fused = layout.get("fused_qkv", False)  # one Linear with [Q | K | V] rows (ModernBERT)
        for name in ("query",) if fused else ("query", "key", "value"):
            old = _get(layer, layout[name])
            _set(layer, layout[name], _linear(old.in_features, width * (3 if fused else 1), old))
        for path in layout.get("head_rows", ()):  # per-head position projections (DeBERTa-v2)
            parent, _, leaf = path.rpartition(".")
            if hasattr(_get(layer, parent), leaf):
                old = _get(layer, path)
                _set(layer, path, _linear(old.in_features, width, old))
        old = _get(layer, layout["attn_out"])
        _set(layer, layout["attn_out"], _linear(width, old.out_features, old))
        old = _get(layer, layout["ffn_in"])
        gated = layout.get("gated_ffn", False)  # [input | gate] rows per neuron
        _set(layer, layout["ffn_in"], _linear(old.in_features, n_ffn * (2 if gated else 1), old))
        old = _get(layer, layout["ffn_out"])
        _set(layer, layout["ffn_out"], _linear(n_ffn, old.out_features, old))
        attn = _get(layer, layout["attention"])
        if layout.get("heads_attr"):
            setattr(attn, layout["heads_attr"], n_heads)
        if layout.get("width_attr"):
            setattr(attn, layout["width_attr"], width)
    if layout.get("head_bias"):
        for layer, ids in zip(_get(model.base_model, layout["layers"]), config.stark_head_ids):  # noqa: B905
            module = _get(layer, layout["head_bias"])
            module.stark_head_ids = list(ids)
            module.register_forward_pre_hook(_slice_head_bias, with_kwargs=True)


class StarkForSequenceClassification(_Base):
    def __init__(self, config):
        super().__init__(config)
        _apply_widths(self, config)
        if getattr(config, "stark_pooling", None) == "mean":
            install_mean_pooling(self, (getattr(config, "stark_layout", None) or _BERT_LAYOUT)["layers"])
