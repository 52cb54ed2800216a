"""Knowledgeable scores of a teacher's heads and FFN neurons (docs/method.md, step 4).

For masks ``M`` (all ones) on heads and neurons, summed over the scoring data batch by batch:

* expressiveness   ``E = sum_batches |dL_task / dM|``  (the teacher's own task loss)
* friendliness     ``F = sum_batches |dL_kd / dM|``    (KD loss between the masked teacher's logits
  and the frozen trial student's logits; only the teacher's masks receive gradient)

Each score matrix is normalised per layer to unit L2 norm (+1e-7), then
``S = lam * E + (1 - lam) * F``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import PreTrainedModel

from stark.data.batching import Encoded, collate, length_grouped_batches
from stark.data.tasks import TaskSpec
from stark.errors import StarkInputError
from stark.method.masks import masked, ones_masks
from stark.models.checkpoint import load_safetensors
from stark.models.families import layer_widths
from stark.training.log import progress_enabled
from stark.training.losses import kd_loss, task_loss

NORM_EPS = 1e-7


@dataclass
class TeacherScores:
    """Raw (unnormalised) gradient sums; (L, H) for heads and (L, F) for neurons."""

    expressive_heads: torch.Tensor
    expressive_neurons: torch.Tensor
    friendly_heads: torch.Tensor | None = None
    friendly_neurons: torch.Tensor | None = None

    def combined(self, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``S = lam * norm(E) + (1 - lam) * norm(F)``; lam = 1 needs no friendliness score."""
        if lam < 1.0 and self.friendly_heads is None:
            raise ValueError("friendliness scores are missing; they need a trial student (or use lam=1)")
        heads = lam * normalize_rows(self.expressive_heads)
        neurons = lam * normalize_rows(self.expressive_neurons)
        if lam < 1.0:
            heads = heads + (1.0 - lam) * normalize_rows(self.friendly_heads)
            neurons = neurons + (1.0 - lam) * normalize_rows(self.friendly_neurons)
        return heads, neurons

    def save(self, path: Path) -> None:
        tensors = {
            "expressive_heads": self.expressive_heads,
            "expressive_neurons": self.expressive_neurons,
        }
        if self.friendly_heads is not None:
            tensors["friendly_heads"] = self.friendly_heads
            tensors["friendly_neurons"] = self.friendly_neurons
        from stark.rundir.io import replace_atomically

        replace_atomically(path, lambda tmp: save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp)))

    @classmethod
    def load(cls, path: Path) -> TeacherScores:
        t = load_safetensors(Path(path), fix="run stark score again")
        return cls(t["expressive_heads"], t["expressive_neurons"], t.get("friendly_heads"), t.get("friendly_neurons"))


def normalize_rows(scores: torch.Tensor) -> torch.Tensor:
    """Each layer (row) scaled to unit L2 norm; the epsilon keeps an all-zero row at zero."""
    return scores / (scores.norm(dim=-1, keepdim=True) + NORM_EPS)


@contextlib.contextmanager
def _frozen(model: PreTrainedModel) -> Iterator[None]:
    """Eval mode and no weight gradients inside the block (only the masks are differentiated); restored after."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def _add_abs(sums: list[torch.Tensor], grads: tuple[torch.Tensor, ...]) -> None:
    for acc, g in zip(sums, grads, strict=True):
        acc += g.abs()


def score_teacher(
    teacher: PreTrainedModel,
    data: Encoded,
    spec: TaskSpec,
    pad_id: int,
    batch_size: int = 32,
    student_logits: torch.Tensor | None = None,
    temperature: float = 2.0,
    accelerator=None,
) -> TeacherScores:
    """Sum |mask gradients| of the task loss (and, given a student, of the KD loss) over ``data``.

    One forward pass per batch serves both scores: the two losses share the teacher's masked logits
    and each is differentiated with respect to the masks only (weights are frozen, so no weight
    gradients are computed).

    Args:
        teacher: a dense fine-tuned teacher (every layer the same width).
        data: the scoring data (held-out slice of train by default).
        student_logits: (N, C) frozen trial-student logits for every example of ``data``, in the
            order of ``data``; None computes expressiveness only.
        accelerator: an ``accelerate.Accelerator``; scores are summed across processes.

    Returns:
        Raw scores; (L, H) and (L, F) tensors on the CPU.
    """
    from tqdm.auto import tqdm

    heads, ffn = layer_widths(teacher)
    if len(set(heads)) > 1 or len(set(ffn)) > 1:
        raise StarkInputError("scoring needs a dense teacher (equal widths in every layer)")
    device = next(teacher.parameters()).device
    batches = length_grouped_batches(data.lengths(), batch_size, seed=0, epoch=0, shuffle=False)
    if accelerator is not None:
        batches = batches[accelerator.process_index :: accelerator.num_processes]
    with _frozen(teacher):
        head_mask, neuron_mask = ones_masks(teacher, requires_grad=True)
        masks = [*head_mask, *neuron_mask]
        e_sum = [torch.zeros_like(m) for m in masks]
        f_sum = [torch.zeros_like(m) for m in masks] if student_logits is not None else None
        with masked(teacher, head_mask, neuron_mask):
            for indices in tqdm(batches, desc="score", disable=not progress_enabled(), leave=False):
                batch = {k: v.to(device) for k, v in collate(data, indices, pad_id).items()}
                labels, idx = batch.pop("labels"), batch.pop("idx")
                logits = teacher(**batch).logits
                loss_task = task_loss(logits, labels, spec.task_type)
                _add_abs(e_sum, torch.autograd.grad(loss_task, masks, retain_graph=f_sum is not None))
                if f_sum is not None:
                    z_s = student_logits[idx.cpu()].to(device)
                    # Roles per docs/method.md: the student's logits are the fixed target side of L_kd and the
                    # masked teacher is differentiated; the hard-label term has no teacher dependence.
                    loss_kd = kd_loss(z_s, logits, labels, spec.task_type, temperature)
                    _add_abs(f_sum, torch.autograd.grad(loss_kd, masks))

    def stacked(parts: list[torch.Tensor]) -> torch.Tensor:
        out = torch.stack([p.detach() for p in parts])
        if accelerator is not None and accelerator.num_processes > 1:
            out = accelerator.reduce(out, reduction="sum")
        return out.cpu()

    n_layers = len(heads)
    return TeacherScores(
        expressive_heads=stacked(e_sum[:n_layers]),
        expressive_neurons=stacked(e_sum[n_layers:]),
        friendly_heads=stacked(f_sum[:n_layers]) if f_sum is not None else None,
        friendly_neurons=stacked(f_sum[n_layers:]) if f_sum is not None else None,
    )
