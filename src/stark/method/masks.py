"""Head and neuron masks as forward hooks on the stock transformers modules.

transformers 5 dropped ``head_mask``. A mask equal to one leaves the model unchanged, and its
gradient tells how much the loss depends on each head / neuron (the scores in :mod:`stark.method.scores`):

* head mask ``M_h[l]`` multiplies each head's context vector, i.e. the input of the attention
  output projection reshaped to (batch, tokens, heads, head_dim);
* neuron mask ``M_n[l]`` multiplies the FFN activation (after GELU), i.e. the input of the FFN output
  projection.

Both are forward pre-hooks on a block's output projections, found through the family's layout table
(``models.family_of``), so every supported family is masked the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel

from stark.models.families import family_of, head_dim, layer_widths


def ones_masks(model: PreTrainedModel, requires_grad: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """All-ones masks shaped like the model's current widths: (heads_l,) and (ffn_l,) per layer."""
    device = next(model.parameters()).device
    heads, ffn = layer_widths(model)
    head_mask = [torch.ones(h, device=device, requires_grad=requires_grad) for h in heads]
    neuron_mask = [torch.ones(f, device=device, requires_grad=requires_grad) for f in ffn]
    return head_mask, neuron_mask


def _head_hook(mask: torch.Tensor, d_head: int):
    def hook(module: nn.Module, args: tuple) -> tuple:
        (context,) = args[:1]
        shape = context.shape
        masked = context.view(*shape[:-1], -1, d_head) * mask.view(-1, 1).to(context.dtype)
        return (masked.view(shape), *args[1:])

    return hook


def _neuron_hook(mask: torch.Tensor):
    def hook(module: nn.Module, args: tuple) -> tuple:
        (activation,) = args[:1]
        return (activation * mask.to(activation.dtype), *args[1:])

    return hook


@contextmanager
def masked(
    model: PreTrainedModel,
    head_mask: Sequence[torch.Tensor] | None = None,
    neuron_mask: Sequence[torch.Tensor] | None = None,
) -> Iterator[PreTrainedModel]:
    """Run ``model`` with masks applied; hooks are removed on exit, even after an exception.

    Args:
        head_mask: per layer, a (heads_l,) tensor (a 2-D (L, H) tensor also works).
        neuron_mask: per layer, an (ffn_l,) tensor.
    """
    d = head_dim(model.config)
    family = family_of(model.config)
    handles = []
    try:
        for i, layer in enumerate(family.layer_list(model)):
            parts = family.parts(layer)
            if head_mask is not None:
                handles.append(parts.attn_out.register_forward_pre_hook(_head_hook(head_mask[i], d)))
            if neuron_mask is not None:
                handles.append(parts.ffn_out.register_forward_pre_hook(_neuron_hook(neuron_mask[i])))
        yield model
    finally:
        for handle in handles:
            handle.remove()
