"""``stark evaluate``: metrics of a saved model on the dev split (and the selection split)."""

from __future__ import annotations

import argparse
import json

from stark.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved model on dev",
        description="Load any stark checkpoint (uneven widths included) and report its dev metrics.",
    )
    p.add_argument("--model", required=True, help="model folder (a stage output of stark)")
    common.add_data_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stark.config import build_config
    from stark.models import load_model, load_tokenizer
    from stark.task_data import prepare_data
    from stark.training.evaluation import evaluate as evaluate_on

    flags = common.flags_from_args(args)
    flags["teacher"] = args.model
    cfg = build_config({}, flags)
    model = load_model(args.model)
    data = prepare_data(cfg, load_tokenizer(args.model))
    if model.config.num_labels != data.spec.num_labels:
        from stark.errors import StarkInputError

        n_model, n_task = model.config.num_labels, data.spec.num_labels
        msg = f"model {args.model} has {n_model} outputs; task {data.spec.name} needs {n_task}"
        raise StarkInputError(msg)
    metrics = evaluate_on(model, data.dev, data.spec, data.pad_id, args.batch_size)
    print(json.dumps({"model": args.model, "task": data.spec.name, "dev": metrics}, indent=2))
    return 0
