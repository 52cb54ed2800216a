"""Forward passes over a whole split: logits (each example once, gathered across processes) and metrics."""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel

from stark.data.batching import Encoded, collate, length_grouped_batches
from stark.data.tasks import TaskSpec
from stark.training.losses import task_loss
from stark.training.metrics import compute_metrics


def on_device(model: torch.nn.Module, accelerator=None) -> torch.nn.Module:
    """The model on the accelerator's device (unchanged without one): where ``predict`` then runs."""
    return model.to(accelerator.device) if accelerator is not None else model


@torch.no_grad()
def predict(
    model: PreTrainedModel, data: Encoded, pad_id: int, batch_size: int = 64, accelerator=None, progress: bool = False
) -> torch.Tensor:
    """Logits for every example, in the order of ``data``; each example computed exactly once.

    Batches are sorted by length (little padding). With several processes each computes a disjoint
    share and the results are gathered.

    Returns:
        (N, C) float32 CPU tensor.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batches = length_grouped_batches(data.lengths(), batch_size, seed=0, epoch=0, shuffle=False)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for indices in tqdm(batches[rank::world], desc="predict", disable=not progress, leave=False):
        batch = {k: v.to(device) for k, v in collate(data, indices, pad_id).items()}
        batch.pop("labels")
        idx = batch.pop("idx")
        logits = model(**batch).logits.float()
        rows.append((idx.cpu().numpy(), logits.cpu().numpy()))
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    out = torch.empty(len(data), model.config.num_labels)
    seen = torch.zeros(len(data), dtype=torch.bool)
    for idx, logits in rows:
        out[idx] = torch.from_numpy(logits)
        seen[idx] = True
    if not bool(seen.all()):
        raise RuntimeError("prediction missed some examples")
    return out


def evaluate(
    model: PreTrainedModel, data: Encoded, spec: TaskSpec, pad_id: int, batch_size: int = 64, accelerator=None
) -> dict[str, float]:
    """The task's metrics on ``data`` plus ``task_loss`` (cross-entropy or MSE against the labels).

    The loss is continuous where the metrics are not: it breaks ties between checkpoints and lets a
    search rank students that all still predict the majority class.
    """
    return metrics_of(predict(model, data, pad_id, batch_size, accelerator), data, spec)


def metrics_of(logits: torch.Tensor, data: Encoded, spec: TaskSpec) -> dict[str, float]:
    """``evaluate``'s metrics and ``task_loss`` from logits already computed on ``data``."""
    metrics = compute_metrics(spec, logits.numpy(), np.asarray(data.labels))
    metrics["task_loss"] = float(task_loss(logits, torch.as_tensor(np.asarray(data.labels)), spec.task_type))
    return metrics
