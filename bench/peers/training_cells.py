"""The peers benchmark's training cells: stark against ``transformers.Trainer`` and TextBrewer.

``ft_stark`` / ``ft_trainer``: teacher fine-tuning with ``stark.training.fit`` and with the Trainer
(``DataCollatorWithPadding``, no evaluation, no saves): examples per second and dev accuracy.
``kd_stark`` / ``kd_textbrewer``: vanilla KD with ``teacher_logits_full`` + ``distill`` and with TextBrewer's
``GeneralDistiller`` (teacher forward at every step); both keep the best of 4 checkpoints per epoch on the
held-out slice. Each cell returns its record for ``peers.json``, with the machine before and after it.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import replace

import numpy as np
import torch

from bench.machine import Clock, log
from bench.peers.context import Context, forward_flops


def ensure_teacher(ctx: Context) -> None:
    """The KD and FLOP cells need stark's fine-tuned teacher; re-make it if the work dir was wiped."""
    if not (ctx.teacher_dir / "config.json").is_file():
        log("peers", "fine-tuned teacher missing from the work folder: running ft_stark again")
        ctx.cells.pop("ft_stark", None)
        ctx.record("ft_stark", cell_ft_stark(ctx))


def ensure_student(ctx: Context) -> None:
    from stark.method.pruning import drop_layers
    from stark.models.checkpoint import load_model, save_model

    ensure_teacher(ctx)
    if not (ctx.student_dir / "config.json").is_file():
        student = drop_layers(load_model(str(ctx.teacher_dir)), ctx.settings["student_layers"])
        save_model(student, ctx.data.tokenizer, ctx.student_dir)


def cell_ft_stark(ctx: Context) -> dict:
    from stark.models.checkpoint import load_model
    from stark.training import fit, progress_bars, total_steps_for

    cfg, data = ctx.cfg, ctx.data
    total = total_steps_for(len(data.train), cfg.finetune)
    # Like the Trainer side: no evaluation during training (fit still evaluates once at the end
    # to keep a "best" model). It keeps its resumable checkpoints (the Trainer side saves none): what a user gets.
    train_cfg = replace(cfg.finetune, eval_every=total, patience_epochs=0.0, seed=cfg.seed)
    work = ctx.work / "ft_stark.work"
    shutil.rmtree(work, ignore_errors=True)
    before = ctx.conditions()
    clock = Clock()
    torch.manual_seed(cfg.seed)
    model = load_model(cfg.teacher, data.spec)
    with progress_bars(False):
        result = fit(model, data, train_cfg, work, facts={"stage": "finetune"})
    wall, cpu = clock.wall(), clock.cpu()
    after = ctx.conditions()
    shutil.rmtree(ctx.teacher_dir, ignore_errors=True)
    os.replace(work / "best", ctx.teacher_dir)
    shutil.rmtree(ctx.student_dir, ignore_errors=True)  # the student is cut from this teacher
    teacher = load_model(str(ctx.teacher_dir))
    dev = ctx.dev_metrics(teacher)
    n_examples = len(data.train) * cfg.finetune.epochs
    # Work done: every training batch in stark's (deterministic) order, padded to its own longest.
    widths, sizes = stark_batch_shapes(ctx, cfg.finetune, result.steps)
    train_flops = 3 * forward_flops(teacher, widths, sizes)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "fit_wall_s": result.wall_s,
        "steps": result.steps,
        "examples": n_examples,
        "examples_per_s": n_examples / wall,
        "examples_per_cpu_s": n_examples / cpu,
        "dev": dev,
        "padded_tokens": int(sum(w * n for w, n in zip(widths, sizes, strict=True))),
        "real_tokens": int(sum(data.train.lengths()) * cfg.finetune.epochs),
        "train_gflops_per_s": train_flops / wall / 1e9,
        "before": before,
        "after": after,
        "threads": torch.get_num_threads(),
        "checkpoints": f"every {train_cfg.checkpoint_minutes:g} minutes and at the end",
    }


def stark_batch_shapes(ctx: Context, train_cfg, steps: int) -> tuple[list[int], list[int]]:
    """Batch sizes and padded widths of the first ``steps`` steps of ``fit`` (one process)."""
    from stark.data import length_grouped_batches

    lengths = ctx.data.train.lengths()
    widths, sizes, epoch = [], [], 0
    while len(widths) < steps:
        for batch in length_grouped_batches(lengths, train_cfg.batch_size, train_cfg.seed, epoch, shuffle=True):
            widths.append(max(lengths[i] for i in batch))
            sizes.append(len(batch))
        epoch += 1
    return widths[:steps], sizes[:steps]


def cell_ft_trainer(ctx: Context) -> dict:
    import transformers
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from stark.models.checkpoint import load_model

    cfg, data, s = ctx.cfg, ctx.data, ctx.settings
    out = ctx.work / "trainer"
    shutil.rmtree(out, ignore_errors=True)
    rows = ctx.hf_rows(data.train)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=s["batch_size"],
        num_train_epochs=s["ft_epochs"],
        learning_rate=s["ft_lr"],
        weight_decay=s["weight_decay"],
        warmup_steps=s["warmup_ratio"],  # a float below 1 is a ratio in transformers 5
        max_grad_norm=s["max_grad_norm"],
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=s["seed"],
        disable_tqdm=True,
    )
    before = ctx.conditions()
    clock = Clock()
    torch.manual_seed(s["seed"])
    model = load_model(cfg.teacher, data.spec)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=DataCollatorWithPadding(data.tokenizer),
    )
    output = trainer.train()
    wall, cpu = clock.wall(), clock.cpu()
    after = ctx.conditions()
    dev = ctx.dev_metrics(trainer.model)
    padded = trainer_padded_tokens(ctx, trainer)
    n_examples = len(data.train) * s["ft_epochs"]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "train_runtime_s": output.metrics.get("train_runtime"),
        "steps": output.global_step,
        "examples": n_examples,
        "examples_per_s": n_examples / wall,
        "examples_per_cpu_s": n_examples / cpu,
        "dev": dev,
        "optim": str(args.optim),
        "padded_tokens_est": padded,
        "before": before,
        "after": after,
        "threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
    }


def trainer_padded_tokens(ctx: Context, trainer) -> int:
    """Padded tokens over all epochs of the Trainer's own dataloader (random batches, re-drawn)."""
    loader = trainer.get_train_dataloader()
    per_epoch = [sum(b["input_ids"].numel() for b in loader) for _ in range(2)]
    return int(np.mean(per_epoch) * ctx.settings["ft_epochs"])


def cell_kd_stark(ctx: Context) -> dict:
    from stark.pipeline.stages import distill, teacher_logits_full
    from stark.rundir.io import read_metrics

    ensure_student(ctx)
    cfg, data = ctx.cfg, ctx.data
    out = ctx.work / "kd_stark"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name(out.name + ".work"), ignore_errors=True)
    before = ctx.conditions()
    clock = Clock()
    logits = teacher_logits_full(ctx.teacher_dir, data, cfg.distill.eval_batch_size)
    logits_s = clock.wall()
    result, _ = distill(cfg.student_training(), data, ctx.student_dir, logits, out)
    wall, cpu = clock.wall(), clock.cpu()
    after = ctx.conditions()
    metrics = read_metrics(out)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "teacher_logits_s": logits_s,
        "distill_s": wall - logits_s,
        "fit_wall_s": result.wall_s,
        "steps": result.steps,
        "best_step": result.best_step,
        "select": metrics["select"],
        "dev": metrics["dev"],
        "before": before,
        "after": after,
    }


def cell_kd_textbrewer(ctx: Context) -> dict:
    import textbrewer
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
    from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

    from stark.models.checkpoint import load_model
    from stark.training import evaluate, make_optimizer

    ensure_student(ctx)
    cfg, data, s = ctx.cfg, ctx.data, ctx.settings
    out = ctx.work / "textbrewer"
    shutil.rmtree(out, ignore_errors=True)
    t = s["temperature"]
    before = ctx.conditions()
    clock = Clock()
    teacher = load_model(str(ctx.teacher_dir))
    student = load_model(str(ctx.student_dir))
    generator = torch.Generator().manual_seed(s["seed"])
    loader = torch.utils.data.DataLoader(
        ctx.hf_rows(data.train),
        batch_size=s["batch_size"],
        shuffle=True,
        generator=generator,
        collate_fn=DataCollatorWithPadding(data.tokenizer),
    )

    def adaptor(batch, outputs):
        # Logits for the KD term; the model's own CE on the labels in the batch for the hard term.
        return {"logits": outputs.logits, "losses": outputs.loss}

    # TextBrewer's 'ce' KD loss has no T^2 factor, so T^2/2 and 1/2 give stark's
    # 0.5 * (T^2 * soft CE + hard CE).
    distill_config = DistillationConfig(
        temperature=t, kd_loss_type="ce", kd_loss_weight=0.5 * t * t, hard_label_weight=0.5
    )
    # Selection as on stark's side: 4 checkpoints per epoch, each scored on the held-out slice.
    train_config = TrainingConfig(device="cpu", output_dir=str(out), log_dir=None, ckpt_frequency=4)
    distiller = GeneralDistiller(
        train_config=train_config,
        distill_config=distill_config,
        model_T=teacher,
        model_S=student,
        adaptor_T=adaptor,
        adaptor_S=adaptor,
    )
    # The same optimizer as stark (AdamW, no decay on biases/LayerNorm, fused), so the comparison
    # isolates the distillation loop; a default torch AdamW would make TextBrewer slower still.
    optimizer = make_optimizer(student, cfg.distill)
    total = len(loader) * int(s["kd_epochs"])
    best: dict = {"metric": None}

    def callback(model, step):
        metrics = evaluate(model, data.select, data.spec, data.pad_id, 64)
        value = metrics[data.spec.main_metric]
        if best["metric"] is None or value > best["metric"]:
            best.update(metric=value, step=step, select=metrics, state=copy.deepcopy(model.state_dict()))

    torch.manual_seed(s["seed"])
    with distiller:
        distiller.train(
            optimizer,
            loader,
            num_epochs=int(s["kd_epochs"]),
            scheduler_class=get_linear_schedule_with_warmup,
            scheduler_args={"num_warmup_steps": int(s["warmup_ratio"] * total), "num_training_steps": total},
            max_grad_norm=s["max_grad_norm"],
            callback=callback,
            # DataCollatorWithPadding yields a BatchEncoding (a UserDict); TextBrewer tests
            # `type(batch) is dict` and otherwise calls model(*batch), i.e. with the key names.
            batch_postprocessor=dict,
        )
    student.load_state_dict(best["state"])
    dev = ctx.dev_metrics(student)
    wall, cpu = clock.wall(), clock.cpu()
    after = ctx.conditions()
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "steps": total,
        "best_step": best["step"],
        "select": best["select"],
        "dev": dev,
        "textbrewer": textbrewer.__version__,
        "distiller": "GeneralDistiller",
        "kd_loss_weight": 0.5 * t * t,
        "hard_label_weight": 0.5,
        "before": before,
        "after": after,
    }
