"""The modeling file saved beside every stark checkpoint (see ``modeling_stark.py``)."""

from __future__ import annotations

from pathlib import Path

from transformers import PretrainedConfig

TEMPLATE = Path(__file__).with_name("modeling_stark.py")
POOLING = Path(__file__).with_name("stark_pooling.py")
"""Imported by the modeling file (mean pooling); copied beside it unchanged."""
MODULE = "modeling_stark"
CLASS = "StarkForSequenceClassification"


def base_class_name(config: PretrainedConfig) -> str:
    """The stock sequence-classification class that the remote class extends (BertForSequenceClassification...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES[config.model_type]


def write_remote_code(model_dir: Path, config: PretrainedConfig) -> None:
    """Write modeling_stark.py (and the stark_pooling.py it imports) into ``model_dir``; register it in auto_map.

    The config is updated in memory and then re-saved, so call this after ``save_pretrained``.
    """
    text = TEMPLATE.read_text().replace("__BASE__", base_class_name(config))
    (Path(model_dir) / f"{MODULE}.py").write_text(text)
    (Path(model_dir) / POOLING.name).write_text(POOLING.read_text())
    config.auto_map = {"AutoModelForSequenceClassification": f"{MODULE}.{CLASS}"}
    config.save_pretrained(model_dir)
