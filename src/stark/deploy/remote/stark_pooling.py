"""Mean pooling for a stock sequence classifier, by hooks (stark and the saved checkpoint's modeling file share it).

Every supported family's classification head reads the first token of the encoder's output. With
``config.stark_pooling == "mean"`` the encoder's output carries, in the first token's place, the mean of the
token vectors over the attention mask, so the family's own head (pooler, dense, dropout) is used as it is.
ModernBERT pools natively (``config.classifier_pooling``). Standalone (torch only): it is copied beside the
weights of every checkpoint.
"""

import torch

MASK_ATTR = "_stark_mask"
"""Where the backbone's pre-hook leaves the attention mask for the encoder's hook (a plain attribute; one model
object serves one forward pass at a time)."""


def _get(obj, path):
    for name in filter(None, path.split(".")):
        obj = getattr(obj, name)
    return obj


def _keep_mask(base, args, kwargs):
    # On the backbone (every family's classifier calls it with attention_mask=...; a positional mask is the
    # second argument). The mask is put on the encoder, found by path, not captured: a deep copy of the model,
    # such as a student cut from its teacher, must use its own encoder.
    mask = kwargs["attention_mask"] if "attention_mask" in kwargs else (args[1] if len(args) > 1 else None)
    setattr(_get(base, base.stark_encoder_path), MASK_ATTR, mask)


def _mean_in_first(encoder, args, output):
    hidden = output[0]
    mask = getattr(encoder, MASK_ATTR, None)
    if mask is None:
        mean = hidden.mean(dim=1)
    else:
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    setattr(encoder, MASK_ATTR, None)
    pooled = torch.cat([mean.unsqueeze(1), hidden[:, 1:]], dim=1)
    # DeBERTa-v2 reads the last of the per-layer states, not last_hidden_state: that one is replaced too.
    if isinstance(output, tuple):
        rest = list(output[1:])
        if rest and isinstance(rest[0], tuple) and rest[0] and rest[0][-1] is hidden:
            rest[0] = (*rest[0][:-1], pooled)
        return (pooled, *rest)
    output["last_hidden_state"] = pooled
    states = output.get("hidden_states")
    if states is not None and states[-1] is hidden:
        output["hidden_states"] = (*states[:-1], pooled)
    return output


def install_mean_pooling(model, layers_path):
    """Make ``model`` classify from the masked mean of its token vectors (idempotent).

    Args:
        model: a ``...ForSequenceClassification`` of a supported family.
        layers_path: where ``model.base_model`` keeps its list of blocks (``encoder.layer``); the hook sits on
            the module that holds that list, whose output is the last hidden state.
    """
    config = model.config
    config.stark_pooling = "mean"
    if hasattr(config, "classifier_pooling"):  # ModernBERT
        config.classifier_pooling = "mean"
        return model
    base = model.base_model
    if getattr(base, "stark_encoder_path", None) is not None:
        return model
    base.stark_encoder_path = layers_path.rpartition(".")[0]
    base.register_forward_pre_hook(_keep_mask, with_kwargs=True)
    _get(base, base.stark_encoder_path).register_forward_hook(_mean_in_first)
    return model
