"""What is saved beside every artifact so that a result can be traced to the code that made it."""

from __future__ import annotations

import platform
from pathlib import Path

SIMD = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "neon", "asimd", "sve", "sve2", "bf16", "i8mm")
"""CPU features that choose float32 kernels: named in the CPU kind when present."""


def cpu_kind(cpuinfo: str | None = None) -> str:
    """The CPU kind a result was computed on, e.g. ``AMD EPYC family 25 model 1 stepping 1 (avx2 fma)``.

    The same code and wheels round float32 differently on different CPU kinds (two AMD EPYC kinds gave
    golden-run values up to ~1e-6 apart, tests/test_golden.py), so a run is bit-reproducible only on the
    kind it records. ``cpuinfo``: the text of /proc/cpuinfo (read when None; other systems fall back to
    the platform's processor name)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.is_file() else ""
    first: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if first:  # the first processor's block has ended
                break
            continue
        first.setdefault(key.strip(), value.strip())
    name = first.get("model name") or platform.processor() or platform.machine() or "unknown"
    # x86 names its kind by family / model / stepping, ARM by implementer / part / variant.
    ids = ("cpu family", "model", "stepping", "CPU implementer", "CPU part", "CPU variant")
    ident = " ".join(f"{k.split()[-1]} {first[k]}" for k in ids if k in first)
    flags = set((first.get("flags") or first.get("Features") or "").split())
    simd = " ".join(f for f in SIMD if f in flags)
    return " ".join(part for part in (name, ident, f"({simd})" if simd else "") if part)


def versions() -> dict[str, str]:
    """Library versions and the CPU kind, saved with every artifact: results can depend on them."""
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
        "cpu": cpu_kind(),
    }
