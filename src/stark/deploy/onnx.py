"""An ONNX folder to deploy: the verified graph, its config and tokenizer, int8 quantisation, its measured cost.

``stark export --model DIR --out OUT`` writes::

    OUT/model.onnx            fp32 graph (dynamic batch and sequence axes), checked against PyTorch
    OUT/model_quantized.onnx  with --quantize int8: dynamic int8 quantisation (QInt8 weights)
    OUT/config.json           the model's config (label names in id2label), without the auto_map of the
                              PyTorch folder (its remote modeling file does not come along: no weights here)
    OUT/tokenizer*, vocab...  the model's tokenizer, saved by transformers
    OUT/stark.json            the model's task and provenance, when it has one
    OUT/export.json           what was measured: :class:`ExportRecord`

That is the layout Optimum's ``ORTModelForSequenceClassification.from_pretrained(OUT)`` loads (model.onnx
plus config and tokenizer in one folder); ``file_name="model_quantized.onnx"`` picks the int8 graph, the
name Optimum's own ``ORTQuantizer`` writes. Plain ONNX Runtime needs nothing but the .onnx file.

The folder is filled beside ``OUT`` under a temporary name and renamed into place once complete, so a
failed export leaves nothing and an earlier export stays whole until the new one replaces it.

Dynamic quantisation skips the MatMul nodes of emptied layers (a pruned layer with no heads or no FFN
neurons has zero-sized weights): ONNX Runtime's integer MatMul over an inner dimension of zero reads
uninitialised memory, so the quantised graph of such a model gave different logits on every run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stark.config.schema import DEFAULT_ATOL, DEFAULT_OPSET, BenchConfig
from stark.data.tasks import Examples, TaskSpec, TaskType
from stark.deploy.predict import DEFAULT_BATCH_SIZE, DEFAULT_MAX_LENGTH, Forward
from stark.errors import StarkInputError

if TYPE_CHECKING:
    from stark.deploy.predict import Classifier

ONNX_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"
"""Optimum's name for a quantised graph beside ``model.onnx`` (``ORTQuantizer`` writes it)."""
RECORD_FILE = "export.json"
QUANTIZATIONS = ("int8",)
LATENCY_BATCHES = (BenchConfig.latency_batch, BenchConfig.throughput_batch)
"""Batch sizes timed, as ``stark bench-inference`` times them (1 and 32)."""
LATENCY_SEQ_LEN = BenchConfig.seq_len


# ----------------------------------------------------------------------------------------------------------
# What export.json holds
# ----------------------------------------------------------------------------------------------------------


@dataclass
class GraphRecord:
    """One .onnx file of the folder."""

    file: str
    bytes: int
    max_abs_diff: float
    """fp32: largest |ONNX - PyTorch| logit on the check sentences (the export gate, see ``atol``); int8: largest
    |int8 - fp32| logit on the same sentences (reported, not gated: quantisation moves logits by design)."""
    compared_with: str
    """``pytorch`` or ``fp32``."""
    excluded_nodes: list[str] = field(default_factory=list)
    """int8: MatMul nodes left in fp32 (the emptied layers' zero-sized weights)."""


@dataclass
class EvalRecord:
    """The dev metrics of the PyTorch model and of each ONNX graph, on the same tokenised rows."""

    data: str
    """``GLUE <task> dev`` or the --dev file."""
    examples: int
    main_metric: str
    pytorch: dict[str, float]
    onnx_fp32: dict[str, float]
    onnx_int8: dict[str, float] | None
    fp32_max_abs_diff: float
    """Largest |ONNX fp32 - PyTorch| logit over the dev rows."""
    int8_agreement: float | None
    """Share of dev rows where int8 predicts the fp32 class (classification; None for regression)."""
    int8_max_abs_diff: float | None
    """Largest |int8 - fp32| logit over the dev rows."""


@dataclass
class LatencyRecord:
    """ONNX Runtime time per batch on random token ids (no padding), median of ``repeats`` after ``warmup``."""

    seq_len: int
    warmup: int
    repeats: int
    threads: int | None
    ms: dict[str, dict[str, float]]
    """graph (``fp32``, ``int8``) -> batch size (as text, a JSON key) -> milliseconds per batch."""


@dataclass
class ExportRecord:
    """``export.json``: what the folder holds and what was measured when it was written."""

    model_dir: str
    inputs: list[str]
    opset: int
    atol: float
    check_inputs: str
    """``tokenizer`` (real sentences) or ``random ids`` (a model saved without its tokenizer)."""
    fp32: GraphRecord
    int8: GraphRecord | None
    eval: EvalRecord | None
    latency: LatencyRecord | None
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExportRecord:
        d = dict(d)
        d["fp32"] = GraphRecord(**d["fp32"])
        d["int8"] = GraphRecord(**d["int8"]) if d.get("int8") else None
        d["eval"] = EvalRecord(**d["eval"]) if d.get("eval") else None
        d["latency"] = LatencyRecord(**d["latency"]) if d.get("latency") else None
        return cls(**d)


# ----------------------------------------------------------------------------------------------------------
# Pieces: quantisation, ONNX Runtime as a forward pass, timing, dev data
# ----------------------------------------------------------------------------------------------------------


QUANTIZED_OPS = ("MatMul", "Gemm")
"""The nodes of an encoder graph that dynamic quantisation turns into integer kernels."""


def empty_weight_nodes(model) -> list[str]:
    """Names of the MatMul / Gemm nodes that read a zero-sized constant (directly or through Identity nodes)."""
    from onnx import numpy_helper

    empty = {t.name for t in model.graph.initializer if 0 in t.dims}
    readers = []
    for node in model.graph.node:  # ONNX graphs are topologically sorted: producers come first
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and numpy_helper.to_array(value).size == 0:
                empty.update(node.output)
            continue
        if any(name in empty for name in node.input):
            if node.op_type == "Identity":
                empty.update(node.output)
            elif node.op_type in QUANTIZED_OPS:
                readers.append(node.name)
    return readers


def quantize_int8(src: Path, dst: Path) -> list[str]:
    """Dynamic int8 quantisation of ``src`` into ``dst`` (QInt8 weights, uint8 activations quantised at run time).

    Per-tensor scales: ONNX Runtime's per-channel path fails outright on a zero-width layer.

    Returns:
        The nodes left in fp32 (those reading zero-sized weights, see the module docstring).
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    for i, node in enumerate(model.graph.node):  # exclusion is by name: give every node one
        if not node.name:
            node.name = f"stark_node_{i}"
    excluded = empty_weight_nodes(model)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process (shape inference) is printed on every call
    try:
        quantize_dynamic(model, str(dst), weight_type=QuantType.QInt8, nodes_to_exclude=excluded)
    finally:
        root.setLevel(level)
    return excluded


def onnx_forward(session) -> Forward:
    """An ONNX Runtime session as a :data:`~stark.deploy.predict.Forward`: inputs the graph lacks are dropped, and
    segment ids it needs but the tokenizer does not produce are zeros."""
    names = [i.name for i in session.get_inputs()]

    def forward(inputs: dict[str, np.ndarray]) -> np.ndarray:
        ids = inputs["input_ids"]
        feed = {n: inputs[n] if n in inputs else np.zeros_like(ids) for n in names}
        return session.run(["logits"], feed)[0]

    return forward


def onnx_latency(
    graphs: dict[str, Path],
    vocab_size: int,
    batches: Sequence[int] = LATENCY_BATCHES,
    seq_len: int = LATENCY_SEQ_LEN,
    warmup: int = BenchConfig.warmup,
    repeats: int = BenchConfig.repeats,
    threads: int | None = None,
) -> dict[str, dict[str, float]]:
    """Milliseconds per batch of each ONNX graph, median of ``repeats`` timed passes after ``warmup`` untimed ones.

    Inputs are random token ids above the special tokens with full attention (every position is real work).
    The graphs of one batch size are timed round-robin (:func:`stark.deploy.inference.time_interleaved`), so load
    drifting on a shared machine hits them alike and their ratio stays fair.

    Args:
        graphs: name (e.g. ``fp32``, ``int8``) -> .onnx file.
        vocab_size: the model's vocabulary (ids are drawn below it).
        batches: batch sizes to time.
        seq_len: tokens per sequence.
        threads: ONNX Runtime intra-op threads (None: its default).

    Returns:
        name -> batch size (as text) -> median milliseconds.
    """
    from stark.deploy.export import ort_session
    from stark.deploy.inference import random_inputs, time_interleaved

    sessions = {name: ort_session(path, threads) for name, path in graphs.items()}
    out: dict[str, dict[str, float]] = {name: {} for name in graphs}
    for batch in batches:
        runners = {}
        for name, session in sessions.items():
            names = [i.name for i in session.get_inputs()]
            inputs = random_inputs(names, vocab_size, batch, seq_len)
            runners[name] = lambda s=session, x=inputs: s.run(["logits"], x)
        for name, timing in time_interleaved(runners, warmup, repeats).items():
            out[name][str(batch)] = 1000 * timing["median_s"]
    return out


def _class_ids(path: Path, cells: list[str], lines: list[int], spec: TaskSpec, col: str) -> list[int]:
    """Label cells as the model's class ids; '1.0' is class '1' where the model's labels are integers."""
    index = {name: i for i, name in enumerate(spec.labels)}
    integral = all(name.lstrip("-").isdigit() for name in spec.labels)
    ids, unknown = [], {}
    for value, line in zip(cells, lines, strict=True):
        key = value.strip()
        if key not in index and integral:
            try:
                number = float(key)
                key = str(int(number)) if number.is_integer() else key
            except ValueError:
                pass
        if key in index:
            ids.append(index[key])
        else:
            unknown.setdefault(value, line)
    if unknown:
        shown = ", ".join(f"{v!r} (line {ln})" for v, ln in list(unknown.items())[:5])
        known = ", ".join(map(repr, spec.labels))
        raise StarkInputError(f"{path}: label(s) {shown} in column {col!r} are not the model's labels ({known})")
    return ids


def dev_examples(spec: TaskSpec, dev: str | Path | None) -> tuple[Examples, str]:
    """The dev rows to score a model of task ``spec`` on: ``dev`` (its text and label columns as in training),
    else the bundled GLUE dev split of a GLUE task.

    Returns:
        (examples with class ids / values as labels, a description for the record)
    """
    from stark.data.readers import column, read_table

    if dev is None:
        from stark.data.glue import load_glue
        from stark.data.tasks import GLUE_TASKS

        if spec.name not in GLUE_TASKS:
            raise StarkInputError(f"the model was trained on your own data ({spec.name}): give --dev FILE to evaluate")
        glue_spec, _, examples = load_glue(spec.name)
        if glue_spec.labels != spec.labels:
            raise StarkInputError(f"the model's labels {spec.labels} are not GLUE {spec.name}'s {glue_spec.labels}")
        return examples, f"GLUE {spec.name} dev"
    table = read_table(Path(dev).expanduser())
    if not spec.text_cols or not spec.label_col:
        raise StarkInputError(f"the model's stark.json names no text or label columns: --dev {dev} cannot be read")
    texts = [column(table, c) for c in spec.text_cols]
    cells = column(table, spec.label_col)
    if spec.task_type is TaskType.REGRESSION:
        try:
            labels: list[Any] = [float(v) for v in cells]
        except ValueError as exc:
            raise StarkInputError(f"{table.path}: column {spec.label_col!r} holds a non-number ({exc})") from None
    else:
        labels = _class_ids(table.path, cells, table.lines, spec, spec.label_col)
    return Examples(texts[0], texts[1] if len(texts) == 2 else None, labels), str(table.path)


# ----------------------------------------------------------------------------------------------------------
# The folder
# ----------------------------------------------------------------------------------------------------------


def _check_out(out_dir: Path, model_dir: Path) -> None:
    """Refuse an --out that would overwrite something that is not an earlier export (or the model itself)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise StarkInputError(f"--out {out_dir} is a file: give a folder to write the ONNX export into")
    out, model = out_dir.resolve(), model_dir.resolve()
    if out == model or out in model.parents:
        raise StarkInputError(f"--out {out_dir} holds the model folder {model_dir}: give another folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / ONNX_FILE).is_file():
        raise StarkInputError(f"--out {out_dir} exists and is not an ONNX export (no {ONNX_FILE}): give a new folder")


def _new_folder_beside(path: Path) -> Path:
    """A fresh hidden folder beside ``path`` (ordinary permissions, unlike mkdtemp's 0o700), to rename later."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
        raise StarkInputError(f"--out {path}: its folder cannot be created ({reason})") from None
    from stark.models.checkpoint import new_folder_beside

    try:
        return new_folder_beside(path)
    except FileExistsError:
        raise StarkInputError(f"--out {path}: no free temporary name beside it") from None


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by the filled ``tmp``: the earlier export is moved aside first, then removed."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old.{secrets.token_hex(4)}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_config(model_dir: Path, dst: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    # auto_map names the modeling file that rebuilds uneven layers from safetensors weights; an ONNX folder
    # has neither, and a stale auto_map would send AutoModel to a file that is not there.
    config.pop("auto_map", None)
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max()) if a.size else 0.0


def _evaluate(
    graphs: dict[str, Path],
    clf: Classifier,
    spec: TaskSpec,
    examples: Examples,
    where: str,
    batch_size: int,
    max_length: int,
    threads: int | None,
) -> EvalRecord:
    """Score the PyTorch model and each graph (``onnx_fp32``, ``onnx_int8``) on the same tokenised dev rows."""
    from stark.deploy.export import ort_session
    from stark.deploy.predict import batched_logits, torch_forward
    from stark.training.metrics import compute_metrics

    data = clf.encode(examples.text_a, examples.text_b, max_length)
    gold = np.asarray(examples.labels)
    logits = {"pytorch": batched_logits(torch_forward(clf.model), data, clf.pad_id, batch_size)}
    for name, path in graphs.items():
        logits[name] = batched_logits(onnx_forward(ort_session(path, threads)), data, clf.pad_id, batch_size)
    metrics = {name: compute_metrics(spec, value, gold) for name, value in logits.items()}
    agreement = diff8 = None
    if "onnx_int8" in logits:
        diff8 = _max_diff(logits["onnx_int8"], logits["onnx_fp32"])
        if spec.task_type is TaskType.CLASSIFICATION:
            same = logits["onnx_int8"].argmax(axis=1) == logits["onnx_fp32"].argmax(axis=1)
            agreement = float(same.mean())
    return EvalRecord(
        data=where,
        examples=len(examples),
        main_metric=spec.main_metric,
        pytorch=metrics["pytorch"],
        onnx_fp32=metrics["onnx_fp32"],
        onnx_int8=metrics.get("onnx_int8"),
        fp32_max_abs_diff=_max_diff(logits["onnx_fp32"], logits["pytorch"]),
        int8_agreement=agreement,
        int8_max_abs_diff=diff8,
    )


def _quantized(tmp: Path, batches: list[dict[str, np.ndarray]], threads: int | None) -> GraphRecord:
    """Write the int8 graph beside the fp32 one and compare their logits on the export's check batches."""
    from stark.deploy.export import ort_session

    excluded = quantize_int8(tmp / ONNX_FILE, tmp / INT8_FILE)
    fp32, int8 = ort_session(tmp / ONNX_FILE, threads), ort_session(tmp / INT8_FILE, threads)
    diff = max(_max_diff(int8.run(["logits"], b)[0], fp32.run(["logits"], b)[0]) for b in batches)
    return GraphRecord(INT8_FILE, (tmp / INT8_FILE).stat().st_size, diff, "fp32", excluded)


def export_folder(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    quantize: str | None = None,
    evaluate: bool = False,
    dev: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
    threads: int | None = BenchConfig.threads,
    warmup: int = BenchConfig.warmup,
    repeats: int = BenchConfig.repeats,
    log: Callable[[str], None] | None = None,
) -> ExportRecord:
    """Write the ONNX folder of a model folder (see the module docstring) and its ``export.json``.

    Args:
        model_dir: model folder (a stage output of stark, or any Hugging Face classifier in safetensors).
        out_dir: the folder to write; an earlier export there is replaced, any other non-empty folder refused.
        opset: ONNX opset.
        atol: largest accepted |ONNX fp32 - PyTorch| logit on the check sentences; above it nothing is written.
        quantize: ``int8`` adds ``model_quantized.onnx``; None writes fp32 only.
        evaluate: score PyTorch and every graph on dev (``dev``, or the GLUE dev split of the model's task).
        dev: a dev file with the columns the model was trained on (implies ``evaluate``).
        batch_size, max_length: dev evaluation batches and truncation (as in training).
        threads: ONNX Runtime intra-op threads for the checks, evaluation and timing (None: its default).
        warmup, repeats: latency measurement, see :func:`onnx_latency` (``repeats=0``: no timing).
        log: receives progress lines.

    Returns:
        The record also written to ``OUT/export.json``.

    Raises:
        StarkInputError: bad model folder, --out, dev data or options (before anything is written);
            ExportMismatchError (a subclass) when ONNX disagrees with PyTorch.
    """
    import onnxruntime

    from stark.rundir.provenance import versions

    say = log or (lambda line: None)
    model_dir, out_dir = Path(model_dir).expanduser(), Path(out_dir).expanduser()
    if quantize not in (None, *QUANTIZATIONS):
        raise StarkInputError(f"--quantize {quantize!r}: use one of {', '.join(QUANTIZATIONS)}")
    for name, value, low in (("batch-size", batch_size, 1), ("repeats", repeats, 0), ("warmup", warmup, 0)):
        if value < low:
            raise StarkInputError(f"--{name} must be at least {low}, got {value}")
    source = _checked_source(model_dir, out_dir, evaluate or dev is not None, dev)
    tmp = _new_folder_beside(out_dir)
    try:
        result, fp32, int8, graphs = _write_graphs(source, tmp, opset, atol, quantize, threads, say)
        scored = None
        if source.dev is not None:
            examples, where = source.dev
            say(f"scoring PyTorch and ONNX {' and '.join(graphs)} on {where} ({len(examples)} rows) ...")
            clf = source.classifier()
            onnx_graphs = {f"onnx_{k}": v for k, v in graphs.items()}
            scored = _evaluate(onnx_graphs, clf, source.spec, examples, where, batch_size, max_length, threads)
        latency = None
        if repeats > 0:
            config = source.model.config
            seq_len = min(LATENCY_SEQ_LEN, config.max_position_embeddings - 2)
            say(f"timing {' and '.join(graphs)} at batch {' and '.join(map(str, LATENCY_BATCHES))} ...")
            ms = onnx_latency(graphs, config.vocab_size, LATENCY_BATCHES, seq_len, warmup, repeats, threads)
            latency = LatencyRecord(seq_len, warmup, repeats, threads, ms)
        record = ExportRecord(
            model_dir=str(model_dir),
            inputs=result["inputs"],
            opset=opset,
            atol=atol,
            check_inputs=result["check_inputs"],
            fp32=fp32,
            int8=int8,
            eval=scored,
            latency=latency,
            versions={**versions(), "onnxruntime": onnxruntime.__version__},
        )
        (tmp / RECORD_FILE).write_text(json.dumps(record.to_dict(), indent=2) + "\n")
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


@dataclass
class _Source:
    """The model folder being exported, loaded and checked (and its dev rows where it is evaluated)."""

    model_dir: Path
    model: Any
    tokenizer: Any
    spec: TaskSpec | None
    dev: tuple[Examples, str] | None

    def classifier(self) -> Classifier:
        from stark.deploy.predict import Classifier

        return Classifier(self.model, self.tokenizer, str(self.model_dir), self.spec)


def _checked_source(model_dir: Path, out_dir: Path, evaluate: bool, dev: str | Path | None) -> _Source:
    """Everything the user gave, checked before a file is written: model, --out, task and dev rows."""
    from stark.deploy.export import saved_tokenizer
    from stark.deploy.predict import saved_task
    from stark.models.checkpoint import load_model

    model = load_model(str(model_dir)).float().eval()
    tokenizer = saved_tokenizer(model_dir)
    _check_out(out_dir, model_dir)
    if not evaluate:
        return _Source(model_dir, model, tokenizer, None, None)
    spec = saved_task(model_dir)
    if spec is None:
        raise StarkInputError(f"model {model_dir} has no stark.json naming its task: it cannot be evaluated")
    if tokenizer is None:
        raise StarkInputError(f"model {model_dir} has no tokenizer saved beside it: it cannot be evaluated")
    if model.config.num_labels != spec.num_labels:
        n, need = model.config.num_labels, spec.num_labels
        raise StarkInputError(f"model {model_dir} has {n} outputs; its task {spec.name} needs {need}")
    return _Source(model_dir, model, tokenizer, spec, dev_examples(spec, dev))


def _write_graphs(
    source: _Source,
    tmp: Path,
    opset: int,
    atol: float,
    quantize: str | None,
    threads: int | None,
    say: Callable[[str], None],
) -> tuple[dict, GraphRecord, GraphRecord | None, dict[str, Path]]:
    """The fp32 graph (gated by ``atol``), the int8 one if asked, and the config, tokenizer and stark.json beside
    them; returns the export's check result, both graphs' records and the graphs by name."""
    from stark.deploy.export import export_model

    model_dir, tokenizer = source.model_dir, source.tokenizer
    result, checked = export_model(source.model, tokenizer, tmp / ONNX_FILE, opset, None, atol, threads, model_dir)
    say(f"fp32 {ONNX_FILE}: max abs logit diff vs PyTorch {result['max_abs_diff']:.3g} (limit {atol:g})")
    fp32 = GraphRecord(ONNX_FILE, result["bytes"], result["max_abs_diff"], "pytorch")
    graphs = {"fp32": tmp / ONNX_FILE}
    int8 = None
    if quantize == "int8":
        int8 = _quantized(tmp, [b.inputs for b in checked], threads)
        graphs["int8"] = tmp / INT8_FILE
        say(f"int8 {INT8_FILE}: max abs logit diff vs fp32 {int8.max_abs_diff:.3g} on the check inputs")
    _write_config(model_dir, tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    else:
        say(f"no tokenizer is saved beside {model_dir}: the folder has none (Optimum's pipelines need one)")
    if (model_dir / "stark.json").is_file():
        shutil.copy2(model_dir / "stark.json", tmp / "stark.json")
    return result, fp32, int8, graphs


def read_record(out_dir: str | Path) -> ExportRecord:
    """``OUT/export.json`` as an :class:`ExportRecord`."""
    path = Path(out_dir) / RECORD_FILE
    try:
        return ExportRecord.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise StarkInputError(f"{path} is not a readable export record ({exc})") from None


def summary_lines(record: ExportRecord, out_dir: str | Path) -> list[str]:
    """What ``stark export`` prints at the end: inputs, dev metrics, latency and the files written."""
    lines = [f"inputs: {', '.join(record.inputs)} (batch and sequence axes dynamic); output: logits"]
    ev = record.eval
    if ev is not None:
        m = ev.main_metric
        scores = [f"PyTorch {ev.pytorch[m]:.4f}", f"ONNX fp32 {ev.onnx_fp32[m]:.4f}"]
        if ev.onnx_int8 is not None:
            scores.append(f"int8 {ev.onnx_int8[m]:.4f}")
        line = f"dev {m} ({ev.data}, {ev.examples} rows): {', '.join(scores)}"
        if ev.int8_agreement is not None:
            line += f"; int8 predicts the fp32 class on {100 * ev.int8_agreement:.1f} % of rows"
        lines.append(line)
    elif record.int8 is not None:
        lines.append("int8 accuracy not measured: add --eval (GLUE tasks) or --dev FILE")
    lat = record.latency
    if lat is not None:
        cells = "; ".join(
            f"{name} " + ", ".join(f"{ms:.2f} ms at batch {b}" for b, ms in by_batch.items())
            for name, by_batch in lat.ms.items()
        )
        threads = f"{lat.threads} thread(s)" if lat.threads else "default threads"
        lines.append(f"latency (ONNX Runtime, seq {lat.seq_len}, {threads}, median of {lat.repeats}): {cells}")
    out = Path(out_dir)
    files = [f"{g.file} ({g.bytes / 1e6:.1f} MB)" for g in (record.fp32, record.int8) if g is not None]
    extra = [name for name in ("config.json", "tokenizer_config.json", "stark.json") if (out / name).is_file()]
    shown = ", ".join([*files, *(("tokenizer" if n == "tokenizer_config.json" else n) for n in extra), RECORD_FILE])
    lines.append(f"wrote {out}/: {shown}")
    return lines
