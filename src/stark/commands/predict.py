"""``stark predict``: label the rows of a file (or of standard input) with a saved model."""

from __future__ import annotations

import argparse
import sys

from stark.data.readers import TABLE_FORMATS
from stark.deploy.predict import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, OUTPUT_FORMATS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="label the rows of a CSV / TSV / JSONL file with a saved model",
        description="Run a model folder (a stage output of stark, uneven widths included, or any Hugging Face "
        "sequence classifier with its tokenizer) on every row of a file and write the input's columns followed "
        "by `prediction` (the label name from the config's id2label; the value for a regression model) and "
        "`prob_<label>` per class. Rows are run in batches of similar length and written in input order.",
    )
    p.add_argument("--model", required=True, help="model folder, e.g. RUN/trial_student")
    p.add_argument("--input", required=True, help="CSV, TSV, JSONL or JSON file; - reads standard input")
    p.add_argument(
        "--input-format",
        choices=TABLE_FORMATS,
        help="format of --input (default: from its suffix; standard input is recognised by its first line)",
    )
    p.add_argument(
        "--text-cols",
        help="one or two text columns, comma-separated: a[,b] (default: the columns the model was trained on, from "
        "its stark.json; else the first string columns of the input)",
    )
    p.add_argument("--output", help="file to write (atomically; default: standard output)")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default="csv", help="output format (default csv)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per forward pass (default {DEFAULT_BATCH_SIZE})",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=DEFAULT_MAX_LENGTH,
        help=f"tokens per row after truncation, as in training (default {DEFAULT_MAX_LENGTH})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stark.deploy.predict import predict_file

    cols = args.text_cols.split(",") if args.text_cols else None
    result = predict_file(
        args.model,
        args.input,
        output=args.output,
        fmt=args.format,
        text_cols=cols,
        input_format=args.input_format,
        batch_size=args.batch_size,
        max_length=args.max_length,
        log=lambda line: print(f"stark: {line}", file=sys.stderr),
    )
    if args.output:
        print(f"stark: wrote {result.rows} predictions to {args.output}", file=sys.stderr)
    return 0
