"""Which vector the classifier reads: the first token's (transformers' heads) or the mean of all tokens.

Sentence-transformers encoders (all-MiniLM-L6-v2, all-mpnet-base-v2 ...) were trained to be read through the
mean of their token vectors; their first token was never trained to sum up the text. A full-depth teacher
learns to use it during fine-tuning, but a student cut to the teacher's bottom layers barely does: measured in
bench/results/pooling.md, mean pooling is what lets the 2-layer MiniLM students learn at all. ``auto`` therefore
pools the way the encoder was pretrained to be read (its ``1_Pooling/config.json``), and the first token
otherwise; a stark checkpoint keeps the pooling it was trained with (``config.stark_pooling``), and a student
inherits its teacher's.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import PretrainedConfig, PreTrainedModel

from stark.config.schema import Pooling
from stark.deploy.remote.stark_pooling import install_mean_pooling
from stark.errors import StarkInputError
from stark.models.families import family_of

POOLING_FILE = Path("1_Pooling") / "config.json"
"""Where a sentence-transformers folder states how its token vectors are pooled."""


def pretrained_pooling(path: str | Path) -> Pooling:
    """How the encoder at ``path`` was pretrained to be read: mean where its sentence-transformers pooling config
    says mean tokens, the first token otherwise (no such config: a plain encoder or a classifier)."""
    file = Path(path) / POOLING_FILE
    if not Path(path).is_dir():  # a hub id: its file in the local Hugging Face cache, if it was downloaded
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(str(path), POOLING_FILE.as_posix())
        except ValueError:  # not a valid repo id either: no such file
            cached = None
        file = Path(cached) if isinstance(cached, str) else file
    if not file.is_file():
        return Pooling.FIRST
    try:
        settings = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise StarkInputError(f"{file} is not a readable pooling config: {exc}") from exc
    return Pooling.MEAN if settings.get("pooling_mode_mean_tokens") else Pooling.FIRST


def pooling_of(model: PreTrainedModel | PretrainedConfig) -> Pooling:
    """The pooling a model (or a checkpoint's config) classifies with: a family that pools by itself says so in its
    config (ModernBERT's ``classifier_pooling``, which its head reads whatever stark recorded; ModernBERT-base ships
    "mean"), any other the one stark recorded, else the first token."""
    config = model.config if isinstance(model, PreTrainedModel) else model
    native = getattr(config, "classifier_pooling", None)
    if native is not None:
        return Pooling.MEAN if native == "mean" else Pooling.FIRST
    return Pooling(getattr(config, "stark_pooling", None) or Pooling.FIRST)


def set_pooling(model: PreTrainedModel, pooling: Pooling) -> PreTrainedModel:
    """Make ``model`` classify with ``pooling`` (recorded in its config, so a saved checkpoint keeps it).

    Mean pooling cannot be taken back from a model stark gave it to: its head has learned from the mean. (A
    family's native setting can: a fine-tuned classifier used as it is keeps its own, see ``teacher_head``.)
    """
    pooling = Pooling(pooling)
    if pooling == Pooling.AUTO:
        raise ValueError("resolve 'auto' first (stark.models.checkpoint.concrete_pooling)")
    if pooling == Pooling.MEAN:
        return install_mean_pooling(model, family_of(model.config).layers)
    if getattr(model.config, "stark_pooling", None) == Pooling.MEAN.value:
        raise ValueError("this model classifies from the mean of its tokens; it cannot be switched back")
    if hasattr(model.config, "classifier_pooling"):  # ModernBERT: its head reads what this says
        model.config.classifier_pooling = "cls"
    model.config.stark_pooling = Pooling.FIRST.value
    return model
