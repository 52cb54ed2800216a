"""``stark export``: write a model folder as ONNX, verified against PyTorch in ONNX Runtime."""

from __future__ import annotations

import argparse

from stark.config import DEFAULT_ATOL, DEFAULT_OPSET


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX (checked against PyTorch)",
        description="Export any stark checkpoint (uneven or empty layers included) to ONNX with dynamic batch and "
        "sequence axes. The graph is run in ONNX Runtime on sentences tokenised with the model's own tokenizer and "
        "compared with PyTorch; above --atol the command fails and writes nothing.",
    )
    p.add_argument("--model", required=True, help="model folder (a stage output of stark, or any HF classifier)")
    p.add_argument("--onnx", required=True, help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset version (default {DEFAULT_OPSET})")
    p.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"largest accepted |ONNX - PyTorch| logit difference (default {DEFAULT_ATOL:g})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stark.export import export_onnx

    result = export_onnx(args.model, args.onnx, opset=args.opset, atol=args.atol)
    shapes = ", ".join(f"{c['batch']}x{c['seq_len']}" for c in result["checks"])
    print(f"inputs: {', '.join(result['inputs'])} (batch and sequence axes dynamic); output: logits")
    print(
        f"max abs diff vs PyTorch: {result['max_abs_diff']:.3g} (limit {result['atol']:g}; "
        f"{result['check_inputs']}, batch x length {shapes})"
    )
    print(f"wrote {result['onnx']} ({result['bytes'] / 1e6:.1f} MB, opset {result['opset']})")
    return 0
