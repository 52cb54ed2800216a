"""Deprecated: moved to ``stark.method.masks`` (kept one release; importing it warns)."""

import warnings

from stark.method.masks import masked, ones_masks

warnings.warn("stark.masks is deprecated: import from stark.method.masks", DeprecationWarning, stacklevel=2)

__all__ = ["masked", "ones_masks"]
