"""Loads a stark checkpoint (uneven per-layer widths) in stock transformers, without stark installed.

Written beside the weights by stark and named in config.json's ``auto_map``, so that
``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)`` works anywhere.
``config.stark_heads`` / ``config.stark_ffn`` give the kept attention heads and FFN neurons of each
layer; the layers are resized before the weights are loaded. The forward pass is the stock one: the
attention code infers the head count from tensor shapes.
"""

from torch import nn
from transformers import __BASE__ as _Base


def _linear(in_features, out_features, like):
    return nn.Linear(in_features, out_features, bias=like.bias is not None, dtype=like.weight.dtype)


def _apply_widths(model, config):
    heads = getattr(config, "stark_heads", None)
    ffn = getattr(config, "stark_ffn", None)
    if heads is None or ffn is None:
        return
    d_head = config.hidden_size // config.num_attention_heads
    for layer, n_heads, n_ffn in zip(model.base_model.encoder.layer, heads, ffn):  # noqa: B905 (runs on py3.9 too)
        attn = layer.attention.self
        width = n_heads * d_head
        attn.query = _linear(attn.query.in_features, width, attn.query)
        attn.key = _linear(attn.key.in_features, width, attn.key)
        attn.value = _linear(attn.value.in_features, width, attn.value)
        out = layer.attention.output.dense
        layer.attention.output.dense = _linear(width, out.out_features, out)
        ffn_in, ffn_out = layer.intermediate.dense, layer.output.dense
        layer.intermediate.dense = _linear(ffn_in.in_features, n_ffn, ffn_in)
        layer.output.dense = _linear(n_ffn, ffn_out.out_features, ffn_out)
        attn.num_attention_heads = n_heads
        attn.all_head_size = width


class StarkForSequenceClassification(_Base):
    def __init__(self, config):
        super().__init__(config)
        _apply_widths(self, config)
