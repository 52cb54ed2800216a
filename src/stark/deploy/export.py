"""ONNX export of a stark checkpoint (uneven and empty layers included), verified against PyTorch.

The graph takes ``input_ids``, ``attention_mask`` and, when the model's tokenizer produces them,
``token_type_ids`` (int64, shape (batch, seq), both axes dynamic) and returns ``logits``
(batch, num_labels). Before the file is published it is run in ONNX Runtime on real sentences
tokenised with the model's own tokenizer, at batch sizes and lengths other than the traced ones, and
compared with PyTorch; above ``atol`` nothing is written.

Why the TorchScript exporter (``dynamo=False``): with torch 2.13 it exports uneven and zero-width layers
correctly (a layer with no heads reshapes an empty tensor, which the traced graph keeps symbolic),
while the dynamo exporter bakes a head count into a Reshape that ONNX Runtime rejects for a layer
with no heads, and takes about 20x longer on a tiny model.

:mod:`stark.deploy` builds the folder users deploy (``stark export``) from this verified graph.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from stark.config.schema import DEFAULT_ATOL, DEFAULT_OPSET
from stark.errors import StarkInputError
from stark.models.checkpoint import load_model, load_tokenizer, resolve_model_path

CHECK_TEXTS = (
    "The cat sat on the mat.",
    "A thoroughly enjoyable film, although the second half drags on for far too long.",
    "Is it raining?",
    "Stock markets fell sharply on Monday after the central bank raised interest rates.",
    "She did not like the soup.",
    "Nobody expected the small team from the north to win the championship, but they did.",
)
"""Sentences of different lengths; tokenised in batches of 1, 3 and 6 (the trace uses batch 2)."""

TRACE_BATCH, TRACE_LEN = 2, 8


class ExportMismatchError(StarkInputError):
    """The exported graph disagrees with PyTorch (or could not be exported at all).

    A subclass of :class:`StarkInputError` so that the CLI reports it as one line with exit code 2.
    """


class LogitsOnly(nn.Module):
    """Plain-tensor signature for export: ``(input_ids, attention_mask[, token_type_ids]) -> logits``."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # DistilBERT takes none
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


@dataclass
class CheckBatch:
    """One verification batch: int64 numpy arrays keyed by ONNX input name."""

    inputs: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        b, s = self.inputs["input_ids"].shape
        return int(b), int(s)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


def saved_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved beside the weights, or None when the folder has none.

    Checked by file name first: transformers 5 builds an empty-vocabulary tokenizer for a folder with a
    config and no tokenizer files, which would turn every check sentence into unknown tokens.
    """
    model_dir = resolve_model_path(str(model_dir))
    if not any((Path(model_dir) / name).is_file() for name in TOKENIZER_FILES):
        return None
    return load_tokenizer(model_dir)


def input_names(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None) -> list[str]:
    """The graph inputs: token_type_ids only when the model really uses segments.

    The tokenizer decides when there is one (BERT's returns token_type_ids, RoBERTa's does not);
    without one, a segment embedding with more than one row means the model was trained with segments.
    """
    import inspect

    names = ["input_ids", "attention_mask"]
    if "token_type_ids" not in inspect.signature(type(model).forward).parameters:
        return names  # DistilBERT has no segment embedding, whatever its (BERT) tokenizer returns
    if getattr(model.config, "type_vocab_size", 1) == 0:
        return names  # DeBERTa-v3 takes the argument but has no segment embedding to use it
    if tokenizer is not None:
        uses_segments = "token_type_ids" in tokenizer.model_input_names
    else:
        uses_segments = getattr(model.config, "type_vocab_size", 1) > 1
    if uses_segments:
        names.append("token_type_ids")
    return names


def ort_session(path: Path | str, threads: int | None = None):
    """An ONNX Runtime CPU session with all graph optimisations; ``threads`` caps intra-op threads.

    Args:
        path: the .onnx file.
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initialisers of pruned layers are noise
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_len(model: PreTrainedModel) -> int:
    # RoBERTa offsets positions by padding_idx + 1, so two position rows are never usable.
    return max(4, min(64, model.config.max_position_embeddings - 2))


def check_batches(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, names: list[str], texts: list[str] | None
) -> tuple[list[CheckBatch], str]:
    """Verification batches of sizes 1, 3 and all texts; real tokenised text when a tokenizer exists.

    Returns:
        (batches, source): source is ``"tokenizer"`` or ``"random ids"`` (no tokenizer saved).
    """
    texts = list(texts or CHECK_TEXTS)
    groups = [texts[:1], texts[1:4] or texts[:1], texts]
    batches = []
    if tokenizer is not None:
        for group in groups:
            enc = tokenizer(group, padding=True, truncation=True, max_length=_max_len(model), return_tensors="np")
            inputs = {n: enc[n].astype(np.int64) for n in names if n in enc}
            if int(inputs["input_ids"].max()) >= model.config.vocab_size:
                raise StarkInputError(
                    f"the saved tokenizer produces token id {int(inputs['input_ids'].max())} but the model's "
                    f"vocabulary has {model.config.vocab_size} entries: tokenizer and weights do not belong together"
                )
            if "token_type_ids" in names and "token_type_ids" not in inputs:
                inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
            batches.append(CheckBatch(inputs))
        return batches, "tokenizer"
    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    for b, s in ((1, 7), (3, 13), (5, 21)):
        s = min(s, _max_len(model))
        ids = rng.integers(min(5, vocab - 1), vocab, size=(b, s), dtype=np.int64)
        mask = np.ones((b, s), dtype=np.int64)
        for i in range(1, b):  # uneven padding so the attention mask matters
            mask[i, s - 2 * i :] = 0
        inputs = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            inputs["token_type_ids"] = np.zeros_like(ids)
        batches.append(CheckBatch(inputs))
    return batches, "random ids"


def torch_logits(model: PreTrainedModel, batch: CheckBatch) -> np.ndarray:
    """PyTorch's logits for one check batch; (batch, num_labels)."""
    with torch.inference_mode():
        return LogitsOnly(model).eval()(**{k: torch.from_numpy(v) for k, v in batch.inputs.items()}).float().numpy()


def _trace_inputs(model: PreTrainedModel, names: list[str]) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(
        min(5, model.config.vocab_size - 1), model.config.vocab_size, (TRACE_BATCH, TRACE_LEN), generator=g
    )
    mask = torch.ones_like(ids)
    # Padding in the trace keeps the mask path in the graph (an all-ones mask could be skipped).
    mask[1, TRACE_LEN - 3 :] = 0
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return tuple(inputs[n] for n in names)


def _export(model: PreTrainedModel, names: list[str], path: Path, opset: int) -> None:
    wrapper = LogitsOnly(model).eval()
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    # The exporter restores the wrapper's training flag afterwards; it is eval, so the model stays in eval.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks are expected
        torch.onnx.export(
            wrapper,
            _trace_inputs(model, names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _make_parent(out_path: Path) -> None:
    """Create the output's folder, or refuse in one line (a file in the way, no permission)."""
    if out_path.is_dir():
        raise StarkInputError(f"{out_path} is a folder: give a file name, e.g. {out_path / 'model.onnx'}")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
        raise StarkInputError(f"{out_path}: its folder cannot be created ({reason})") from None


def _write_graph(model: PreTrainedModel, names: list[str], path: Path, opset: int, model_dir: str | Path) -> float:
    """Export ``model`` to ``path`` and check the graph; returns the seconds it took. Any failure becomes
    one ExportMismatchError line (the exporters' own messages run to pages)."""
    import onnx

    start = time.perf_counter()
    try:
        _export(model, names, path, opset)
        onnx.checker.check_model(str(path))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportMismatchError(f"ONNX export of {model_dir} failed: {first}") from exc
    return time.perf_counter() - start


def _compare(model: PreTrainedModel, session, batches: list[CheckBatch]) -> list[dict]:
    """Per check batch: its shape and the largest absolute logit difference, ONNX Runtime vs PyTorch."""
    checks = []
    for batch in batches:
        ref = torch_logits(model, batch)
        got = session.run(["logits"], batch.inputs)[0]
        b, s = batch.shape
        diff = float(np.abs(ref - got).max()) if ref.size else 0.0
        checks.append({"batch": b, "seq_len": s, "max_abs_diff": diff})
    return checks


def export_onnx(
    model_dir: str | Path,
    out_path: str | Path,
    opset: int = DEFAULT_OPSET,
    check_texts: list[str] | None = None,
    atol: float = DEFAULT_ATOL,
    threads: int | None = None,
) -> dict:
    """Export a stark (or plain Hugging Face) sequence classifier to one ONNX file and verify it.

    Loads the model folder and its tokenizer (if saved) and calls :func:`export_model`.

    Args:
        model_dir: model folder (config.json + model.safetensors, tokenizer files if any).
        out_path: the .onnx file to write.
        opset, check_texts, atol, threads: as in :func:`export_model`.

    Returns:
        As :func:`export_model`.
    """
    model = load_model(str(model_dir)).float().eval()
    result, _ = export_model(
        model, saved_tokenizer(model_dir), out_path, opset, check_texts, atol, threads, source=model_dir
    )
    return result


def export_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    out_path: str | Path,
    opset: int = DEFAULT_OPSET,
    check_texts: list[str] | None = None,
    atol: float = DEFAULT_ATOL,
    threads: int | None = None,
    source: str | Path = "the model",
) -> tuple[dict, list[CheckBatch]]:
    """Export a loaded classifier (float32, eval mode) to ONNX and verify it against PyTorch.

    The graph is written to a temporary file beside ``out_path``, checked with ``onnx.checker``, run in
    ONNX Runtime on the check batches and compared with PyTorch; only then is it renamed to
    ``out_path``. On any failure nothing is left at ``out_path`` (an earlier file there is kept).

    Args:
        model: the classifier.
        tokenizer: its tokenizer (None: checked on random ids, and no segment input unless the model has segments).
        out_path: the .onnx file to write.
        opset: ONNX opset version.
        check_texts: sentences for the check (default: :data:`CHECK_TEXTS`); ignored without a tokenizer.
        atol: the largest accepted absolute logit difference between ONNX Runtime and PyTorch.
        threads: ONNX Runtime intra-op threads for the check (None: its default).
        source: what messages call the model (its folder).

    Returns:
        (record, check batches): the record has ``onnx`` (path), ``inputs``, ``opset``, ``check_inputs``
        (tokenizer / random ids), ``checks`` (batch, seq_len, max_abs_diff per batch), ``max_abs_diff``,
        ``atol``, ``bytes``, ``export_s``; the batches are the inputs the graph was checked on.

    Raises:
        ExportMismatchError: export failed or the difference exceeds ``atol``.
    """
    out_path = Path(out_path)
    names = input_names(model, tokenizer)
    _make_parent(out_path)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        export_s = _write_graph(model, names, tmp, opset, source)
        batches, kind = check_batches(model, tokenizer, names, check_texts)
        checks = _compare(model, ort_session(tmp, threads), batches)
        worst = max(c["max_abs_diff"] for c in checks)
        if not worst <= atol:  # written this way round so that a NaN difference fails too
            raise ExportMismatchError(
                f"ONNX export of {source} disagrees with PyTorch: max abs logit difference {worst:.3g} > {atol:g}"
            )
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    record = {
        "onnx": str(out_path),
        "model_dir": str(source),
        "inputs": names,
        "output": "logits",
        "opset": opset,
        "check_inputs": kind,
        "checks": checks,
        "max_abs_diff": worst,
        "atol": atol,
        "bytes": out_path.stat().st_size,
        "export_s": export_s,
    }
    return record, batches
