"""``stark evaluate``: metrics of a saved model on the dev split (and the selection split)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from stark.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved model on dev",
        description="Load any stark checkpoint (uneven widths included) and report its dev metrics.",
    )
    p.add_argument("--model", required=True, help="model folder (a stage output of stark)")
    common.add_options(p, "data")
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward pass (default 64)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stark.config.recipes import build_config
    from stark.data.prepare import prepare_data
    from stark.models.checkpoint import load_model, load_tokenizer
    from stark.training.evaluation import evaluate as evaluate_on

    flags = common.flags_from_args(args)
    flags["teacher"] = args.model
    _task_of_model(args.model, flags.setdefault("data", {}))
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


def _task_of_model(model: str, data: dict[str, Any]) -> None:
    """Evaluate on the task the model was trained on (recorded in its stark.json), not the default task:
    two-label tasks would all pass the label-count check, so a wrong task would print wrong metrics."""
    from stark.errors import StarkInputError

    facts = Path(model) / "stark.json"
    if not facts.is_file():
        return  # not a stark stage output: the flags (or the default task) decide
    try:
        saved = json.loads(facts.read_text())
    except (OSError, ValueError) as exc:
        raise StarkInputError(f"{facts} is not readable JSON ({exc}): its model's task is unknown") from exc
    recorded = ((saved.get("task") if isinstance(saved, dict) else None) or {}).get("name")
    given = data.get("task")
    if recorded is None or given == "custom":
        return
    if recorded == "custom" and given is None:
        raise StarkInputError(f"model {model} was trained on your own data: give --train and --dev (or --dataset)")
    if given is None:
        data["task"] = recorded
    elif given.strip().lower() != recorded:
        raise StarkInputError(f"model {model} was trained on {recorded}, not on --task {given}")
