"""The few places where several processes (``accelerate launch``) must agree: who writes, and waiting."""

from __future__ import annotations


def is_main(accelerator) -> bool:
    """True on the process that writes files (the only one without an accelerator)."""
    return accelerator is None or accelerator.is_main_process


def barrier(accelerator) -> None:
    """Let every process see what the main process has just written."""
    if accelerator is not None:
        accelerator.wait_for_everyone()
