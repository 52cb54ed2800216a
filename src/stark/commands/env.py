"""``stark env``: versions and machine facts to paste into a bug report."""

from __future__ import annotations

import argparse
import json
import os
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions for bug reports")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from stark.rundir.provenance import versions

    info = {
        **versions(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    print(json.dumps(info, indent=2))
    return 0
