"""Predictions of a saved classifier on a file of texts: the library behind ``stark predict``.

A model folder (a stage output of stark, uneven widths included, or any Hugging Face sequence classifier
with its tokenizer) labels every row of a CSV / TSV / JSON-lines file. Rows are tokenised as in training
(pairs as ``tokenizer(a, b)``, truncated longest-first to ``max_length``), run in batches of similar length
(little padding) and put back in file order. Each row gets its predicted label (the name from the config's
``id2label``) and one probability per class (softmax of the logits), or the predicted value for a
regression model (one output).

The forward pass is a plain callable from int64 numpy inputs to logits (:func:`batched_logits`), so the
same batching serves PyTorch here and ONNX Runtime in :mod:`stark.deploy`.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stark.data.readers import TABLE_FORMATS, column, parse_table, read_table
from stark.data.tasks import Examples, TaskSpec
from stark.errors import StarkInputError

if TYPE_CHECKING:
    from stark.data.batching import Encoded
    from stark.data.readers import Table

STDIN = "-"
OUTPUT_FORMATS = ("csv", "jsonl")
DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LENGTH = 128
"""As ``--max-length`` of training (DataConfig): a model is scored on what it was trained to read."""

GUESSED = "the first string columns of the input"
LABEL_NAMES = frozenset({"label", "labels", "gold", "target", "y", "score", "idx", "id", "index"})
"""Columns never guessed to be text: a dev file's gold labels and row ids."""

Forward = Callable[[dict[str, np.ndarray]], np.ndarray]
"""One batch of int64 inputs (``input_ids``, ``attention_mask``, maybe ``token_type_ids``; (batch, seq)) to
its float logits (batch, num_labels)."""


def saved_task(model_dir: str | Path) -> TaskSpec | None:
    """The task recorded in a stark model folder's ``stark.json``; None for a folder without one.

    Raises:
        StarkInputError: ``stark.json`` is unreadable, or its task is not a valid spec.
    """
    facts = Path(model_dir) / "stark.json"
    if not facts.is_file():
        return None
    try:
        saved = json.loads(facts.read_text())
    except (OSError, ValueError) as exc:
        raise StarkInputError(f"{facts} is not readable JSON ({exc}): its model's task is unknown") from None
    task = saved.get("task") if isinstance(saved, dict) else None
    if not isinstance(task, dict) or "name" not in task:
        return None
    try:
        return TaskSpec.from_dict(task)
    except StarkInputError as exc:
        raise StarkInputError(f"{facts}: {exc}") from None


def encode_texts(tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_length: int) -> Encoded:
    """Token ids of every row, unpadded, exactly as training encodes a split (pairs truncated longest-first)."""
    from stark.data.batching import encode

    n = len(texts_a)
    examples = Examples(list(texts_a), None if texts_b is None else list(texts_b), [0] * n)
    return encode(examples, tokenizer, max_length)


def batched_logits(forward: Forward, data: Encoded, pad_id: int, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Logits of every example in ``data`` order, computed in batches of similar length.

    Examples are sorted longest first and cut into batches (each padded to its own longest example), so a
    file of mixed lengths costs little more than its tokens; the rows are then put back in input order.

    Returns:
        (N, num_labels) float32.
    """
    from stark.data.batching import collate, length_grouped_batches

    if batch_size < 1:
        raise StarkInputError(f"batch size must be at least 1, got {batch_size}")
    out: np.ndarray | None = None
    for indices in length_grouped_batches(data.lengths(), batch_size, seed=0, epoch=0, shuffle=False):
        batch = collate(data, indices, pad_id)
        inputs = {k: v.numpy() for k, v in batch.items() if k not in ("labels", "idx")}
        logits = np.asarray(forward(inputs), dtype=np.float32)
        if out is None:
            out = np.empty((len(data), logits.shape[1]), dtype=np.float32)
        out[np.asarray(indices)] = logits
    if out is None:
        raise StarkInputError("no rows to predict")
    return out


def torch_forward(model) -> Forward:
    """A PyTorch sequence classifier as a :data:`Forward` (eval mode, no gradients, float32 logits)."""
    import torch

    accepted = set(inspect.signature(type(model).forward).parameters)  # DistilBERT takes no token_type_ids
    model.eval()

    def forward(inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            feed = {k: torch.from_numpy(v) for k, v in inputs.items() if k in accepted}
            return model(**feed).logits.float().numpy()

    return forward


@dataclass
class Predictions:
    """What a model says about N rows."""

    class_names: tuple[str, ...]
    """Label names by class id (from ``id2label``); empty for a regression model."""
    scores: np.ndarray
    """(N, C) class probabilities, or (N, 1) predicted values for regression."""

    @property
    def regression(self) -> bool:
        return not self.class_names

    def labels(self) -> list[str]:
        """The predicted label of each row (classification only)."""
        return [self.class_names[i] for i in self.scores.argmax(axis=1)]

    def records(self) -> list[dict[str, str | float]]:
        """One dict per row: the label and its class probabilities, or the value."""
        if self.regression:
            return [{"prediction": float(v)} for v in self.scores[:, 0]]
        names = output_columns(self.class_names)[1:]
        return [
            {"prediction": label, **{n: float(p) for n, p in zip(names, row, strict=True)}}
            for label, row in zip(self.labels(), self.scores, strict=True)
        ]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted), returned as float32."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Classifier:
    """A loaded model folder: weights (stark's loader, uneven widths included), tokenizer and label names."""

    def __init__(self, model, tokenizer, path: str, task: TaskSpec | None = None):
        self.model = model.float().eval()
        self.tokenizer = tokenizer
        self.path = path
        self.task = task

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        """Load ``path``; one-line StarkInputError for a folder that is not a trained classifier with a tokenizer."""
        from stark.models.checkpoint import load_config, load_model, load_tokenizer

        path = str(path)
        config = load_config(path)  # refuses a missing folder, a folder without weights, another family
        kinds = getattr(config, "architectures", None) or []
        if kinds and not any(k.endswith("ForSequenceClassification") for k in kinds):
            raise StarkInputError(
                f"model {path} is a {kinds[0]}, not a sequence classifier: predict needs a fine-tuned classifier "
                "(a stage output of stark, e.g. RUN/trial_student)"
            )
        task = saved_task(path)
        return cls(load_model(path), load_tokenizer(path), path, task)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Label names by class id; empty for a one-output (regression) model."""
        config = self.model.config
        if config.num_labels == 1:
            return ()
        return tuple(str(config.id2label.get(i, f"LABEL_{i}")) for i in range(config.num_labels))

    def max_length(self, requested: int = DEFAULT_MAX_LENGTH) -> int:
        """``requested`` capped by the tokens the position table holds (as in training: ``families.max_positions``;
        RoBERTa-like models lose two rows to their offset, BERT none)."""
        from stark.models.families import max_positions

        if requested < 1:
            raise StarkInputError(f"--max-length must be at least 1, got {requested}")
        most = max_positions(self.model.config)
        return min(requested, most) if most else requested

    def encode(self, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_length: int) -> Encoded:
        return encode_texts(self.tokenizer, texts_a, texts_b, self.max_length(max_length))

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def logits(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> np.ndarray:
        """(N, num_labels) logits of the rows, in their order."""
        data = self.encode(texts_a, texts_b, max_length)
        return batched_logits(torch_forward(self.model), data, self.pad_id, batch_size)

    def predict(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> Predictions:
        """Labels and class probabilities (or values) of the rows; ``texts_b`` for sentence pairs."""
        return predictions_from_logits(self.logits(texts_a, texts_b, batch_size, max_length), self.class_names)


def predictions_from_logits(logits: np.ndarray, class_names: tuple[str, ...]) -> Predictions:
    """Probabilities by softmax for a classifier; the raw output for a regression model (no class names)."""
    return Predictions(class_names, logits if not class_names else softmax(logits))


def read_input(source: str, fmt: str | None = None) -> Table:
    """The rows of a file, or of standard input for ``-``.

    The format follows ``fmt`` or else the file's suffix; standard input is sniffed: ``{`` starts JSON lines,
    ``[`` a JSON array, a tab in the first line means TSV, anything else CSV.
    """
    if fmt is not None and fmt not in TABLE_FORMATS:
        raise StarkInputError(f"--input-format {fmt!r}: use one of {', '.join(TABLE_FORMATS)}")
    if source == STDIN:
        raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise StarkInputError(f"<stdin>: not valid UTF-8 (byte offset {exc.start})") from None
        return parse_table(Path("<stdin>"), text, fmt or sniff_format(text))
    path = Path(source).expanduser()
    if fmt is None:
        return read_table(path)
    if not path.is_file():
        raise StarkInputError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise StarkInputError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise StarkInputError(f"{path}: not valid UTF-8 (byte offset {exc.start})") from None
    return parse_table(path, text, fmt)


def sniff_format(text: str) -> str:
    """csv, tsv, jsonl or json from the first characters of a stream that has no file name."""
    start = text.lstrip()
    if start.startswith("{"):
        return "jsonl"
    if start.startswith("["):
        return "json"
    first = start.split("\n", 1)[0]
    return "tsv" if "\t" in first else "csv"


def _is_numeric(values: list[str | None]) -> bool:
    seen = False
    for value in values:
        if value is None or not value.strip():
            continue
        try:
            float(value)
        except ValueError:
            return False
        seen = True
    return seen


def choose_text_cols(table: Table, given: Sequence[str] | None, task: TaskSpec | None) -> tuple[list[str], str]:
    """The one or two text columns to read, and where the choice came from (said on stderr when guessed).

    ``given`` (``--text-cols``) wins; then the columns the model was trained on (its ``stark.json``) when the
    file has them; else the first string columns of the file (not numbers, not named like a label or an id):
    as many as the model was trained on, or, without a record, two where the file has exactly two and one
    otherwise.
    """
    if given:
        cols = [c.strip() for c in given if c.strip()]
        if len(cols) not in (1, 2):
            raise StarkInputError(f"--text-cols needs one or two columns, got {len(cols)} ({', '.join(cols)})")
        for col in cols:
            if col not in table.header:
                shown = ", ".join(repr(c) for c in table.header)
                raise StarkInputError(f"{table.path}: no column {col!r} (--text-cols; columns: {shown})")
        return cols, "--text-cols"
    trained = list(task.text_cols) if task is not None else []
    if trained and all(c in table.header for c in trained):
        return trained, "the model's stark.json"
    strings = [
        c
        for c in table.header
        if c.strip().lower() not in LABEL_NAMES
        and not _is_numeric([r.get(c) for r in table.rows])
        and _json_strings(table, c)
    ]
    want = len(trained) if len(trained) in (1, 2) else (2 if len(strings) == 2 else 1)
    if len(strings) < want:
        shown = ", ".join(repr(c) for c in table.header)
        need = "two text columns (sentence pairs)" if want == 2 else "a text column"
        raise StarkInputError(
            f"{table.path}: the model needs {need} and none was found (columns: {shown}): give --text-cols"
        )
    why = GUESSED
    if trained:
        why += f"; the model was trained on {', '.join(map(repr, trained))}, which the input lacks"
    return strings[:want], why


def _json_strings(table: Table, col: str) -> bool:
    """Whether a column can be text: in a JSON source its values must be strings (not booleans, arrays or
    objects, which the table holds as text too)."""
    if table.originals is None:
        return True
    return all(isinstance(obj[col], str) for obj in table.originals if obj.get(col) is not None)


def output_columns(class_names: Sequence[str]) -> list[str]:
    """``prediction``, then ``prob_<label>`` per class (none for a regression model)."""
    return ["prediction", *(f"prob_{name}" for name in class_names)]


def _refuse_clash(table: Table, out_cols: list[str]) -> None:
    clash = [c for c in out_cols if c in table.header]
    if clash:
        raise StarkInputError(
            f"{table.path}: input column {clash[0]!r} has the name of an output column: rename it "
            f"(the output adds {', '.join(out_cols)})"
        )


def format_predictions(table: Table, preds: Predictions, fmt: str) -> str:
    """The input's columns followed by the prediction columns, as CSV or JSON lines."""
    if fmt not in OUTPUT_FORMATS:
        raise StarkInputError(f"--format {fmt!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    out_cols = output_columns(preds.class_names)
    _refuse_clash(table, out_cols)
    records = preds.records()
    buffer = io.StringIO()
    if fmt == "jsonl":
        # A JSON input's objects pass through as they came (numbers stay numbers, nulls stay); others as text.
        inputs = table.originals or [{c: row[c] for c in table.header if c in row} for row in table.rows]
        for obj, rec in zip(inputs, records, strict=True):
            buffer.write(json.dumps({**obj, **rec}, ensure_ascii=False, default=str))  # datasets' dates etc.
            buffer.write("\n")
        return buffer.getvalue()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*table.header, *out_cols])
    for row, rec in zip(table.rows, records, strict=True):
        # 7 significant digits: what float32 holds; plenty for a probability.
        shown = [v if isinstance(v, str) else format(v, ".7g") for v in rec.values()]
        writer.writerow([*(row.get(c, "") for c in table.header), *shown])
    return buffer.getvalue()


def write_output(text: str, output: str | None) -> None:
    """To stdout (None or ``-``) or atomically to a file (temp file beside it, then rename)."""
    from stark.rundir.io import write_text

    if output in (None, STDIN):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(output).expanduser()
    if path.is_dir():
        raise StarkInputError(f"--output {path} is a folder: give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    except OSError as exc:
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        raise StarkInputError(f"--output {path} cannot be written ({exc.strerror or exc})") from None


@dataclass
class PredictResult:
    """What :func:`predict_file` did."""

    rows: int
    text_cols: list[str]
    text_cols_from: str
    predictions: Predictions


def predict_file(
    model: str | Path,
    source: str,
    output: str | None = None,
    fmt: str = "csv",
    text_cols: Sequence[str] | None = None,
    input_format: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
    log: Callable[[str], None] | None = None,
) -> PredictResult:
    """Label every row of ``source`` (a file or ``-``) with ``model`` and write the result.

    Everything the user gave is checked before the model runs (format, columns, model folder); the output
    is written only once every row is predicted.

    Args:
        model: model folder.
        source: CSV / TSV / JSONL / JSON file, or ``-`` for standard input.
        output: file to write (atomically), or None for standard output.
        fmt: ``csv`` or ``jsonl``.
        text_cols: one or two text columns (default: :func:`choose_text_cols`).
        input_format: the input's format where the suffix does not say it (default: suffix; stdin: sniffed).
        batch_size: rows per forward pass.
        max_length: tokens per row after truncation.
        log: told which text columns are read when they were not given (before the model runs).
    """
    if fmt not in OUTPUT_FORMATS:
        raise StarkInputError(f"--format {fmt!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    if batch_size < 1:
        raise StarkInputError(f"--batch-size must be at least 1, got {batch_size}")
    classifier = Classifier.load(model)
    table = read_input(source, input_format)
    cols, why = choose_text_cols(table, text_cols, classifier.task)
    if log is not None and why.startswith(GUESSED):
        log(f"text columns {', '.join(cols)} ({why}; choose with --text-cols)")
    _refuse_clash(table, output_columns(classifier.class_names))
    texts = [column(table, c) for c in cols]
    preds = classifier.predict(texts[0], texts[1] if len(texts) == 2 else None, batch_size, max_length)
    write_output(format_predictions(table, preds, fmt), output)
    return PredictResult(len(table.rows), cols, why, preds)
