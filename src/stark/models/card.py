"""Model cards: a README.md with YAML front matter beside every saved model, as the Hugging Face tools expect.

The front matter follows the Hub's model-card metadata (``base_model``, ``library_name``,
``pipeline_tag``, ``tags``, ``license``, ``model-index`` with the dev metrics); the body says what the
model is, how it was made (stage, teacher sparsity, parameters), its dev and selection metrics and the
paper to cite. Everything comes from the stage's ``metrics.json``, so the card can never disagree
with the numbers stark reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CITATION = """@inproceedings{yang2022sparse,
  title     = {Sparse Teachers Can Be Dense with Knowledge},
  author    = {Yang, Yi and Zhang, Chen and Song, Dawei},
  booktitle = {Proceedings of the 2022 Conference on Empirical Methods in Natural Language Processing},
  year      = {2022}
}"""

GLUE = {"rte", "mrpc", "stsb", "cola", "sst2"}

WHAT = {
    "finetune": "the teacher, fine-tuned on the task",
    "adopted": "the teacher, a classifier already fine-tuned for the task's labels and used as it is",
    "distill": "a student distilled with stark (StarK: student-friendly sparse teachers)",
    "sparsify": "a sparse teacher: the fine-tuned teacher with its lowest-scored heads and FFN neurons removed",
}


def front_matter(metrics: dict[str, Any], base_model: str | None, license_id: str | None) -> dict[str, Any]:
    """The YAML metadata of a card, from a stage's metrics."""
    task = (metrics.get("task") or {}).get("name", "custom")
    results = [
        {"type": name, "value": round(float(value), 6), "name": f"dev {name}"}
        for name, value in (metrics.get("dev") or {}).items()
        if name != "task_loss"
    ]
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "license": license_id or "other",
        "tags": ["stark", "knowledge-distillation", "structured-pruning", "sparse-teacher"],
    }
    if base_model:
        meta["base_model"] = base_model
    dataset = {"name": f"GLUE {task.upper()}", "type": "glue", "config": task, "split": "validation"}
    if task not in GLUE:
        dataset = {"name": task, "type": task, "split": "dev"}
    else:
        meta["datasets"] = ["glue"]
    if results:
        meta["model-index"] = [
            {
                "name": f"stark-{task}-{metrics.get('stage', 'model')}",
                "results": [{"task": {"type": "text-classification"}, "dataset": dataset, "metrics": results}],
            }
        ]
    return meta


def _pct(metrics: dict | None) -> str:
    if not metrics:
        return "-"
    return ", ".join(f"{k} {100 * v:.2f}" for k, v in metrics.items() if k != "task_loss")


def card_text(
    metrics: dict[str, Any], base_model: str | None = None, license_id: str | None = None, pooling: str = "first"
) -> str:
    """The whole README.md: front matter, then a short description (``pooling``: the config's ``stark_pooling``)."""
    stage = metrics.get("stage", "model")
    task = (metrics.get("task") or {}).get("name", "custom")
    lines = [
        "---",
        yaml.safe_dump(front_matter(metrics, base_model, license_id), sort_keys=False).rstrip(),
        "---",
        "",
        f"# {task}: {WHAT.get(stage, stage)}",
        "",
        f"Made by [stark](https://arxiv.org/abs/2210.03923) (stage `{stage}`) from `{base_model or 'unknown'}`.",
        "",
        f"- dev: {_pct(metrics.get('dev'))}",
        f"- selection split (held out from train, used to choose checkpoints): {_pct(metrics.get('select'))}",
    ]
    if metrics.get("teacher_sparsity") is not None:
        lines.append(f"- distilled from the teacher at {metrics['teacher_sparsity']:g}% sparsity")
    if metrics.get("sparsity") is not None:
        lines.append(f"- teacher sparsity: {metrics['sparsity']:g}% of heads and FFN neurons removed")
    if metrics.get("params") is not None:
        lines.append(f"- parameters: {metrics['params']:,}")
    lines += [
        "",
        "Per-layer widths are in `config.json` (`stark_heads`, `stark_ffn`); load with stark (`stark.load(path)`) or",
        "with transformers (`AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`).",
    ]
    if pooling == "mean":
        lines += [
            "The classifier reads the mean of the token vectors (`stark_pooling: mean`), which the modeling file",
            "applies: without `trust_remote_code=True` transformers would read the first token and predict wrongly.",
        ]
    lines += [
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)


def license_of(model: str | None) -> str | None:
    """The licence in a local base model's own card, if it has one (a derived model keeps its terms)."""
    if not model:
        return None
    try:
        from stark.models.checkpoint import resolve_model_path

        card = Path(resolve_model_path(model)) / "README.md"
        lic = read_front_matter(card).get("license") if card.is_file() else None
    except Exception:  # a hub id offline, an unreadable card: no licence known
        return None
    return str(lic) if lic else None


def base_model_of(metrics: dict[str, Any]) -> str | None:
    """The pretrained encoder a stage started from (its recorded source; older runs: the run's teacher),
    with the bundled teacher's alias spelled as its Hub id, which is what the Hub's tools look up."""
    from stark.models.checkpoint import BUNDLED_HUB_ID, BUNDLED_NAMES
    from stark.rundir.records import recorded_source

    base = recorded_source(metrics)
    return BUNDLED_HUB_ID if base in BUNDLED_NAMES else base


def write_card(folder: Path, metrics: dict[str, Any]) -> Path:
    """Write ``folder/README.md`` from the stage's metrics (temp file, then rename)."""
    base = base_model_of(metrics)
    from stark.rundir.io import write_text

    config = Path(folder) / "config.json"
    pooling = json.loads(config.read_text()).get("stark_pooling", "first") if config.is_file() else "first"
    return write_text(Path(folder) / "README.md", card_text(metrics, base, license_of(base), pooling))


def read_front_matter(path: Path) -> dict[str, Any]:
    """The YAML metadata of a card (what the Hub's tools read)."""
    text = Path(path).read_text()
    if not text.startswith("---\n"):
        raise ValueError(f"{path} has no YAML front matter")
    return yaml.safe_load(text.split("---\n", 2)[1])
