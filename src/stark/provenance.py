"""What is saved beside every artifact so that a result can be traced to the code that made it."""

from __future__ import annotations

import platform


def versions() -> dict[str, str]:
    """Library versions saved with every artifact: results can depend on them."""
    import accelerate
    import torch
    import transformers

    import stark

    return {
        "stark": stark.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
    }
