"""Hook-based mask gradients equal a plain-autograd reference; normalisation and mixing follow docs/method.md."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_model

from stark.data import Encoded, TaskSpec, TaskType, collate, length_grouped_batches
from stark.method.scores import TeacherScores, normalize_rows, score_teacher
from stark.models.families import family_of
from stark.training import losses as stark_losses
from stark.training.losses import kd_loss, task_loss

SPEC_CLS = TaskSpec("t", TaskType.CLASSIFICATION, ("a", "b", "c"), ("accuracy",), "accuracy")
SPEC_REG = TaskSpec("t", TaskType.REGRESSION, (), ("pearson",), "pearson")


def _data(n: int = 11, regression: bool = False, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    ids = [
        torch.randint(3, 100, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]
    labels = torch.rand(n, generator=g).tolist() if regression else torch.randint(0, 3, (n,), generator=g).tolist()
    return Encoded(ids, None, labels)


def _reference_scores(model, data, spec, batch_size, student_logits=None, temperature=2.0):
    """Mask gradients without masks: a head mask m_h scales the attention-output columns of head h, so
    dL/dm_h = sum over those columns of W * dL/dW; likewise a neuron mask scales an FFN-out column."""
    d = 8
    family = family_of(model.config)
    layers = family.layer_list(model)
    e_heads, e_neurons = torch.zeros(len(layers), 4), torch.zeros(len(layers), 40)
    f_heads, f_neurons = torch.zeros(len(layers), 4), torch.zeros(len(layers), 40)
    for indices in length_grouped_batches(data.lengths(), batch_size, 0, 0, shuffle=False):
        batch = collate(data, indices, pad_id=0)
        labels, idx = batch.pop("labels"), batch.pop("idx")
        losses = [(task_loss(model(**batch).logits, labels, spec.task_type), e_heads, e_neurons)]
        if student_logits is not None:
            kd = kd_loss(student_logits[idx], model(**batch).logits, labels, spec.task_type, temperature)
            losses.append((kd, f_heads, f_neurons))
        for loss, acc_h, acc_n in losses:
            model.zero_grad()
            loss.backward()
            for i, layer in enumerate(layers):
                w_attn = family.parts(layer).attn_out.weight
                w_ffn = family.parts(layer).ffn_out.weight
                per_col_attn = (w_attn * w_attn.grad).sum(0)
                acc_h[i] += per_col_attn.view(4, d).sum(1).abs()
                acc_n[i] += (w_ffn * w_ffn.grad).sum(0).abs()
    return e_heads, e_neurons, f_heads, f_neurons


@pytest.mark.parametrize("spec", [SPEC_CLS, SPEC_REG], ids=["classification", "regression"])
def test_scores_match_plain_autograd(arch, spec):
    regression = spec.task_type == TaskType.REGRESSION
    model = tiny_model(arch, num_labels=1 if regression else 3)
    data = _data(regression=regression)
    student_logits = torch.randn(len(data), 1 if regression else 3)
    got = score_teacher(model, data, spec, pad_id=0, batch_size=4, student_logits=student_logits)
    e_h, e_n, f_h, f_n = _reference_scores(model, data, spec, 4, student_logits)
    for a, b in (
        (got.expressive_heads, e_h),
        (got.expressive_neurons, e_n),
        (got.friendly_heads, f_h),
        (got.friendly_neurons, f_n),
    ):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert float(got.friendly_heads.sum()) > 0
    # Scoring must leave the teacher as it found it.
    assert all(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_sum_is_over_batches_of_absolute_values():
    """|g1| + |g2| (per batch), not |g1 + g2|: scoring two halves separately adds up."""
    model = tiny_model("bert")
    data = _data(n=8)
    whole = score_teacher(model, data, SPEC_CLS, 0, batch_size=4)
    order = length_grouped_batches(data.lengths(), 4, 0, 0, shuffle=False)
    parts = [
        score_teacher(
            model,
            Encoded([data.input_ids[i] for i in b], None, [data.labels[i] for i in b]),
            SPEC_CLS,
            0,
            batch_size=4,
        )
        for b in order
    ]
    torch.testing.assert_close(whole.expressive_heads, sum(p.expressive_heads for p in parts), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(whole.expressive_neurons, sum(p.expressive_neurons for p in parts), atol=1e-6, rtol=1e-5)


def test_normalize_and_combine_by_hand():
    e = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    n_e = normalize_rows(e)
    assert n_e[0].tolist() == pytest.approx([3 / (5 + 1e-7), 4 / (5 + 1e-7)])
    assert n_e[1].tolist() == [0.0, 0.0]  # the epsilon keeps an all-zero layer at zero
    scores = TeacherScores(e, e, f, f)
    heads, _ = scores.combined(0.25)
    expected = [[0.25 * 0.6 + 0.75 * 1.0, 0.25 * 0.8 + 0.0], [0.0, 0.75 * 1.0]]
    for row, want in zip(heads.tolist(), expected, strict=True):
        assert row == pytest.approx(want, abs=1e-6)
    only_e, _ = TeacherScores(e, e).combined(1.0)
    torch.testing.assert_close(only_e, n_e)
    with pytest.raises(ValueError, match="friendliness"):
        TeacherScores(e, e).combined(0.5)


def test_scores_save_load(tmp_path):
    s = TeacherScores(torch.rand(2, 4), torch.rand(2, 40), torch.rand(2, 4), torch.rand(2, 40))
    s.save(tmp_path / "s.safetensors")
    t = TeacherScores.load(tmp_path / "s.safetensors")
    assert torch.equal(s.friendly_neurons, t.friendly_neurons) and torch.equal(s.expressive_heads, t.expressive_heads)
    assert not (tmp_path / "s.safetensors.tmp").exists()


def test_kd_loss_classification_by_hand():
    z_s, z_t, y, t = [1.0, 2.0, 0.5], [3.0, 1.0, -1.0], 0, 2.0

    def softmax(z):
        m = [math.exp(v) for v in z]
        return [v / sum(m) for v in m]

    p_t = softmax([v / t for v in z_t])
    q_s = softmax([v / t for v in z_s])
    soft = -sum(p * math.log(q) for p, q in zip(p_t, q_s, strict=True)) * t * t
    hard = -math.log(softmax(z_s)[y])
    expected = 0.5 * (soft + hard)
    got = kd_loss(torch.tensor([z_s]), torch.tensor([z_t]), torch.tensor([y]), TaskType.CLASSIFICATION, t)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Batch mean: duplicating the row changes nothing.
    got2 = kd_loss(torch.tensor([z_s, z_s]), torch.tensor([z_t, z_t]), torch.tensor([y, y]), TaskType.CLASSIFICATION, t)
    assert got2.item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_regression_by_hand():
    z_s, z_t, y = [0.5, 2.0], [1.0, 1.0], [0.0, 3.0]
    mse_t = ((0.5 - 1.0) ** 2 + (2.0 - 1.0) ** 2) / 2
    mse_y = ((0.5 - 0.0) ** 2 + (2.0 - 3.0) ** 2) / 2
    got = kd_loss(torch.tensor(z_s).view(2, 1), torch.tensor(z_t).view(2, 1), torch.tensor(y), TaskType.REGRESSION)
    assert got.item() == pytest.approx(0.5 * (mse_t + mse_y), rel=1e-6)


def test_kd_loss_teacher_equals_student_soft_term_is_entropy():
    z = torch.tensor([[0.3, -1.2, 2.0]])
    t = 2.0
    p = torch.softmax(z / t, -1)
    entropy = -(p * p.log()).sum().item()
    hard = torch.nn.functional.cross_entropy(z, torch.tensor([2])).item()
    got = kd_loss(z, z, torch.tensor([2]), TaskType.CLASSIFICATION, t).item()
    assert got == pytest.approx(0.5 * (t * t * entropy + hard), rel=1e-6)


@pytest.mark.parametrize("task_type", [TaskType.CLASSIFICATION, TaskType.REGRESSION])
def test_kd_loss_soft_weight_default_is_the_reference_bit_for_bit(task_type):
    g = torch.Generator().manual_seed(0)
    width = 3 if task_type == TaskType.CLASSIFICATION else 1
    z_s = torch.randn(5, width, generator=g, requires_grad=True)
    z_t = torch.randn(5, width, generator=g)
    y = torch.tensor([0, 2, 1, 1, 0]) if width == 3 else torch.randn(5, generator=g)
    hard = task_loss(z_s, y, task_type)
    soft = (
        torch.nn.functional.mse_loss(z_s.reshape(-1), z_t.reshape(-1))
        if width == 1
        else stark_losses.soft_cross_entropy(z_s, z_t, 2.0)
    )
    reference = 0.5 * (soft + hard)
    (ref_grad,) = torch.autograd.grad(reference, z_s)
    got = kd_loss(z_s, z_t, y, task_type, 2.0)
    (got_grad,) = torch.autograd.grad(got, z_s)
    assert torch.equal(got, reference) and torch.equal(got_grad, ref_grad)


@pytest.mark.parametrize("w", [0.0, 0.25, 1.0])
def test_kd_loss_soft_weight_by_hand(w):
    z_s, z_t, y = [0.5, 2.0], [1.0, 1.0], [0.0, 3.0]
    mse_t = ((0.5 - 1.0) ** 2 + (2.0 - 1.0) ** 2) / 2
    mse_y = ((0.5 - 0.0) ** 2 + (2.0 - 3.0) ** 2) / 2
    got = kd_loss(
        torch.tensor(z_s).view(2, 1), torch.tensor(z_t).view(2, 1), torch.tensor(y), TaskType.REGRESSION, 2.0, w
    )
    assert got.item() == pytest.approx(w * mse_t + (1 - w) * mse_y, rel=1e-6)
    # Classification: w = 1 is the soft term alone, w = 0 plain cross-entropy against the labels.
    zc_s, zc_t = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[3.0, 1.0, -1.0]])
    soft = stark_losses.soft_cross_entropy(zc_s, zc_t, 2.0).item()
    hard = torch.nn.functional.cross_entropy(zc_s, torch.tensor([0])).item()
    got_c = kd_loss(zc_s, zc_t, torch.tensor([0]), TaskType.CLASSIFICATION, 2.0, w).item()
    assert got_c == pytest.approx(w * soft + (1 - w) * hard, rel=1e-6)
