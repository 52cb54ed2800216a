"""The row-wise embedding gradient gives the same training, bit for bit, as the dense one."""

from __future__ import annotations

import copy

import torch
from conftest import random_batch, tiny_model

from stark.training.embedding_grad import EmbeddingGrad


def _steps(model, optimizer, batches, emb: EmbeddingGrad | None) -> None:
    for batch in batches:
        loss = model(**batch).logits.logsumexp(-1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)  # clipping sees the whole dense gradient
        optimizer.step()
        if emb is None:
            optimizer.zero_grad(set_to_none=True)
        else:
            emb.zero_grad(optimizer, batch["input_ids"])


def test_same_weights_and_optimizer_state_as_dense(one_thread) -> None:
    dense = tiny_model().train()
    rows = copy.deepcopy(dense)
    opt_d = torch.optim.AdamW(dense.parameters(), lr=1e-2, weight_decay=0.1)
    opt_r = torch.optim.AdamW(rows.parameters(), lr=1e-2, weight_decay=0.1)
    batches = [random_batch(batch=4, length=7, seed=s) for s in range(6)]  # repeated ids within and across
    torch.manual_seed(0)
    _steps(dense, opt_d, batches, None)
    emb = EmbeddingGrad(rows, enabled=True)
    assert emb.active
    torch.manual_seed(0)  # the same dropout masks
    _steps(rows, opt_r, batches, emb)
    grad = rows.get_input_embeddings().weight.grad
    assert grad is not None and not grad.is_sparse and int(grad.count_nonzero()) == 0  # every used row cleared
    emb.close()
    for (name, a), b in zip(dense.state_dict().items(), rows.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for p_d, p_r in zip(dense.parameters(), rows.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_d.state[p_d][key], opt_r.state[p_r][key])
    embedding = rows.get_input_embeddings()
    assert not embedding.sparse and embedding.weight.grad is None  # handed back as it came


def test_left_alone_when_disabled_or_tied() -> None:
    model = tiny_model()
    assert not EmbeddingGrad(model, enabled=False).active
    model.get_output_embeddings = lambda: model.get_input_embeddings()  # e.g. an MLM head sharing the matrix
    assert not EmbeddingGrad(model, enabled=True).active
    assert not model.get_input_embeddings().sparse
