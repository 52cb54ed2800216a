"""Every saved model folder has a model card whose YAML front matter the Hugging Face tools can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stark.models.card import base_model_of, card_text, read_front_matter


def test_cards_of_a_run_match_its_metrics(tiny_run: Path) -> None:
    folders = [tiny_run / "teacher", tiny_run / "trial_student"]
    folders += [p.parent for p in (tiny_run / "teachers").glob("*/model.safetensors")]
    for folder in folders:
        meta = read_front_matter(folder / "README.md")
        metrics = json.loads((folder / "metrics.json").read_text())
        assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
        assert "stark" in meta["tags"] and meta["license"]
        results = meta["model-index"][0]["results"][0]["metrics"]
        assert {r["type"]: r["value"] for r in results} == pytest.approx(
            {k: v for k, v in metrics["dev"].items() if k != "task_loss"}, abs=1e-6
        )
        text = (folder / "README.md").read_text()
        assert "yang2022sparse" in text and "selection split" in text


def test_card_for_a_glue_sparse_teacher_by_hand() -> None:
    metrics = {
        "stage": "sparsify",
        "sparsity": 50.0,
        "params": 1234,
        "task": {"name": "rte"},
        "config": {"teacher": "minilm"},
        "dev": {"accuracy": 0.61},
        "select": {"accuracy": 0.6, "task_loss": 0.7},
    }
    # The bundled teacher's alias is named by its Hub id, from a run of this version (source) or an older one.
    hub_id = "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_of(metrics) == hub_id == base_model_of({"source": "minilm"})
    assert base_model_of({"source": "/models/my-bert"}) == "/models/my-bert"
    text = card_text(metrics, base_model_of(metrics), "apache-2.0")
    meta = read_front_matter_text(text)
    assert meta["base_model"] == hub_id and meta["license"] == "apache-2.0" and meta["datasets"] == ["glue"]
    ds = meta["model-index"][0]["results"][0]["dataset"]
    assert ds == {"name": "GLUE RTE", "type": "glue", "config": "rte", "split": "validation"}
    assert "50% of heads and FFN neurons removed" in text and "1,234" in text


def read_front_matter_text(text: str) -> dict:
    import yaml

    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])
