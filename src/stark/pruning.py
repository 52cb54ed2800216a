"""Deprecated: moved to ``stark.method.pruning`` (kept one release; importing it warns)."""

import warnings

from stark.method.pruning import (
    NEURON_MULTIPLE,
    check_sparsity,
    descending_order,
    drop_layers,
    prune_model,
    reorder_model,
    round_half_up,
    round_width,
    slice_layer,
    sparsify,
    sparsity_map,
)

warnings.warn("stark.pruning is deprecated: import from stark.method.pruning", DeprecationWarning, stacklevel=2)

__all__ = [
    "NEURON_MULTIPLE",
    "check_sparsity",
    "descending_order",
    "drop_layers",
    "prune_model",
    "reorder_model",
    "round_half_up",
    "round_width",
    "slice_layer",
    "sparsify",
    "sparsity_map",
]
