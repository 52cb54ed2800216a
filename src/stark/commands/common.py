"""Options shared by several subcommands and the mapping from flags to :class:`stark.config.RunConfig`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stark.config import RunConfig, build_config, load_recipe


def _pct(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--task", help="GLUE task: rte, mrpc, stsb, cola, sst2 (default rte)")
    g.add_argument("--train", help="your own training file (.csv, .tsv, .jsonl, .json, .parquet) instead of --task")
    g.add_argument("--dev", help="your own dev file (same format as --train)")
    g.add_argument("--dataset", help="a datasets save_to_disk folder or a hub dataset name, instead of files")
    g.add_argument("--dataset-config", help="--dataset: the hub dataset's configuration (e.g. sst2 of glue)")
    g.add_argument("--train-split", help="--dataset: split to train on (default train)")
    g.add_argument("--dev-split", help="--dataset: split to report on (default validation)")
    g.add_argument("--text-cols", help="one or two text columns of your files, comma-separated: a[,b]")
    g.add_argument("--label-col", help="label column of your files (any label strings, or numbers for regression)")
    g.add_argument("--task-type", choices=["classification", "regression"], help="default: inferred from the labels")
    g.add_argument("--max-length", type=int, help="tokens per example after truncation (default 128)")
    g.add_argument("--max-train-samples", type=int, help="use a seeded random subset of N training examples")
    g.add_argument("--max-eval-samples", type=int, help="use a seeded random subset of N dev examples")
    g.add_argument("--select-fraction", type=float, help="share of train held out for selection (default 0.1)")
    g.add_argument(
        "--min-select",
        type=int,
        help="hold out at least N examples for selection, at most a quarter of train (default 300)",
    )
    g.add_argument(
        "--protocol",
        choices=["heldout", "reference"],
        help="heldout (default): select on a held-out slice of train, dev only reported; "
        "reference: dev for everything, as the reference code (leaks dev labels)",
    )


def add_run_args(p: argparse.ArgumentParser, out_help: str = "run folder (default runs/stark)") -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", help=out_help)
    g.add_argument("--config", help="recipe YAML with the same options (flags override it)")
    g.add_argument(
        "--preset",
        choices=["fast", "reference"],
        help="fast (default): CPU-sized epochs; reference: METHOD.md hyper-parameters",
    )
    g.add_argument("--seed", type=int, help="random seed (default 776)")
    g.add_argument(
        "--require-teacher-learned",
        action="store_true",
        default=None,
        help="stop when the fine-tuned teacher is not clearly better than a constant prediction (default: warn)",
    )
    g.add_argument("--teacher", help="pretrained encoder: local HF dir, hub id, or 'minilm' (bundled, default)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=float, help="epochs for both fine-tuning and distillation")
    g.add_argument("--teacher-epochs", type=float, help="fine-tuning epochs (overrides --epochs)")
    g.add_argument("--student-epochs", type=float, help="distillation epochs (overrides --epochs)")
    g.add_argument("--batch-size", type=int, help="training batch size per process")
    g.add_argument("--lr", type=float, help="learning rate for both fine-tuning and distillation")
    g.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], help="passed to accelerate")


def add_student_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student")
    g.add_argument(
        "--student-layers", type=int, help="layer-dropped student: the teacher's bottom K layers (default 2)"
    )
    g.add_argument(
        "--student-sparsity",
        type=_pct,
        help="parameter-pruned student: drop S%% of heads and neurons by expressive score",
    )


def add_sparsify_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sparse teachers")
    g.add_argument("--lam", type=float, help="S = lam * expressiveness + (1 - lam) * friendliness (default 0.5)")
    g.add_argument("--sparsities", help="teacher sparsity levels in percent, comma-separated (default 0,10,...,90)")
    g.add_argument(
        "--score-examples",
        type=int,
        help="score on the selection split topped up from train to N examples (default 0: selection only)",
    )
    g.add_argument(
        "--save-teachers",
        action="store_true",
        default=None,
        help="stark run: write every sparse teacher's weights to teachers/s<P>/ (default: only the chosen one)",
    )
    g.add_argument(
        "--teachers-on-dev",
        action="store_true",
        default=None,
        help="stark run: evaluate every sparse teacher on dev (default: selection split; dev for the chosen one)",
    )


def add_search_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("choosing the sparsity")
    g.add_argument(
        "--search",
        choices=["halving", "full", "proxy"],
        help="halving (default): successive halving on the selection split; full: every level to the end; "
        "proxy: halving among the --proxy-top levels a forward-pass signal ranks best",
    )
    g.add_argument("--seeds", type=int, help="student runs per level; the table shows mean and std (default 1)")
    g.add_argument(
        "--rung-signal",
        choices=["loss", "metric"],
        help="halving: rank candidates by the selection task loss (default) or the main metric",
    )
    g.add_argument("--min-budget", type=float, help="halving: first rung's share of the student budget (default 1/12)")
    g.add_argument("--eta", type=int, help="halving: keep 1/eta of the candidates per rung (default 3)")
    g.add_argument("--proxy-top", type=int, help="proxy search: levels passed on to halving (default 3)")


def flags_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Nested overrides for the options the user actually gave (None = not given)."""
    get = lambda name: getattr(args, name, None)  # noqa: E731
    flags: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        if value is None:
            return
        node = flags
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    for name in ("teacher", "out", "seed", "preset", "require_teacher_learned"):
        put(name, get(name))
    for name in (
        "task",
        "train",
        "dev",
        "dataset",
        "dataset_config",
        "train_split",
        "dev_split",
        "label_col",
        "task_type",
        "max_length",
        "max_train_samples",
        "max_eval_samples",
        "select_fraction",
        "min_select",
        "protocol",
    ):
        put(f"data.{name}", get(name))
    put("data.text_cols", get("text_cols"))
    if get("train") is not None or get("dataset") is not None:
        put("data.task", "custom")
    if get("student_sparsity") is not None:
        put("student.sparsity", get("student_sparsity"))
        put("student.layers", get("student_layers"))
        flags.setdefault("student", {}).setdefault("layers", None)
    else:
        put("student.layers", get("student_layers"))
    put("sparsify.lam", get("lam"))
    put("sparsify.sparsities", get("sparsities"))
    put("sparsify.score_examples", get("score_examples"))
    put("sparsify.save_teachers", get("save_teachers"))
    put("sparsify.teachers_on_dev", get("teachers_on_dev"))
    put("search.search", get("search"))
    put("search.seeds", get("seeds"))
    put("search.rung_signal", get("rung_signal"))
    put("search.min_budget", get("min_budget"))
    put("search.eta", get("eta"))
    put("search.proxy_top", get("proxy_top"))
    for stage, specific in (("finetune", "teacher_epochs"), ("distill", "student_epochs")):
        put(f"{stage}.epochs", get(specific) if get(specific) is not None else get("epochs"))
        put(f"{stage}.batch_size", get("batch_size"))
        put(f"{stage}.lr", get("lr"))
        put(f"{stage}.mixed_precision", get("mixed_precision"))
    return flags


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Preset < the run folder's saved config.yaml < --config recipe < flags."""
    flags = flags_from_args(args)
    recipe: dict[str, Any] = {}
    out = flags.get("out")
    saved = Path(out) / "config.yaml" if out else None
    if saved is not None and saved.is_file():
        recipe = load_recipe(saved)
        recipe.pop("out", None)
        # A run folder from before the selection floor existed keeps its split (its stages were built on it).
        data = recipe.get("data")
        if isinstance(data, dict) and "min_select" not in data:
            data["min_select"] = 0
    if getattr(args, "config", None):
        _merge(recipe, load_recipe(args.config))
    return build_config(recipe, flags)


def _merge(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
