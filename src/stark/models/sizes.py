"""stark.models.sizes: split from stark.models.checkpoint."""

from __future__ import annotations

from torch import nn
from transformers import (
    PreTrainedModel,
)

from stark.models.families import encoder_layers, head_dim, layer_widths


def count_parameters(model: nn.Module, encoder_only: bool = False) -> int:
    module = encoder_layers(model) if encoder_only else model
    return sum(p.numel() for p in module.parameters())


def encoder_flops(model: PreTrainedModel, seq_len: int) -> float:
    """Multiply-accumulates x2 of the encoder blocks for one sequence of ``seq_len`` tokens.

    Counts the six Linear layers per block and the two attention matmuls (QK^T and AV); layer norms,
    softmax and embeddings are ignored, they are a few percent at most.
    """
    d = head_dim(model.config)
    hidden = model.config.hidden_size
    total = 0.0
    for h, f in zip(*layer_widths(model), strict=True):
        width = h * d
        total += 2 * seq_len * hidden * width * 4  # Q, K, V and the output projection
        total += 2 * seq_len * seq_len * width * 2  # scores and weighted sum
        total += 2 * seq_len * hidden * f * 2  # FFN in and out
    return total
