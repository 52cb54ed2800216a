"""``stark export``: a model folder as an ONNX folder to deploy, verified against PyTorch, optionally int8."""

from __future__ import annotations

import argparse

from stark.commands.common import add_timing_flags
from stark.config.schema import DEFAULT_ATOL, DEFAULT_OPSET


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to an ONNX folder (checked against PyTorch; --quantize int8)",
        description="Write OUT/model.onnx (dynamic batch and sequence axes; any stark checkpoint, uneven or empty "
        "layers included) with the model's config.json, tokenizer and stark.json beside it: the layout of Optimum's "
        "ORTModelForSequenceClassification.from_pretrained(OUT), and plain onnxruntime.InferenceSession loads "
        "OUT/model.onnx. The graph is run in ONNX Runtime on sentences tokenised with the model's own tokenizer and "
        "compared with PyTorch; above --atol the command fails and writes nothing. --quantize int8 adds "
        "OUT/model_quantized.onnx (dynamic quantisation, int8 weights; Optimum: file_name='model_quantized.onnx'; "
        "model.onnx stays fp32 and is what loads by default). OUT/export.json records the logit differences, the "
        "latency of each graph at batch 1 and 32 and, with --eval or --dev, the dev metrics of PyTorch, ONNX fp32 "
        "and int8. The folder is written under a temporary name and renamed when complete; an earlier export at "
        "OUT is replaced, any other non-empty folder refused.",
    )
    p.add_argument("--model", required=True, help="model folder (a stage output of stark, or any HF classifier)")
    p.add_argument("--out", required=True, help="output folder, e.g. RUN/onnx")
    p.add_argument(
        "--quantize",
        choices=("int8",),
        help="int8: also write model_quantized.onnx (dynamic int8 quantisation of the weights; activations "
        "quantised at run time)",
    )
    p.add_argument(
        "--eval",
        action="store_true",
        help="score PyTorch, ONNX fp32 and int8 on dev: the GLUE dev split of the task in the model's stark.json "
        "(data/glue or STARK_DATA_DIR), or --dev",
    )
    p.add_argument("--dev", help="dev file with the text and label columns the model was trained on (implies --eval)")
    p.add_argument("--batch-size", type=int, default=32, help="dev rows per forward pass (default 32)")
    p.add_argument("--max-length", type=int, default=128, help="dev tokens per row, as in training (default 128)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset version (default {DEFAULT_OPSET})")
    p.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"largest accepted |ONNX - PyTorch| logit difference (default {DEFAULT_ATOL:g})",
    )
    add_timing_flags(
        p,
        least_repeats=0,
        threads="ONNX Runtime threads for the checks, dev scoring and timing",
        repeats="timed passes per graph and batch size, median reported; 0: no timing",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stark.deploy.onnx import export_folder, summary_lines

    record = export_folder(
        args.model,
        args.out,
        opset=args.opset,
        atol=args.atol,
        quantize=args.quantize,
        evaluate=args.eval,
        dev=args.dev,
        batch_size=args.batch_size,
        max_length=args.max_length,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        log=print,
    )
    for line in summary_lines(record, args.out):
        print(line)
    return 0
