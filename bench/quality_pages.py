"""The quality sweep's pages: ``bench/results/quality.md``, ``docs/results.md`` and each cell's figure.

``docs/results.md`` is built from ``bench/results/quality.json`` and, where they have been measured, the
results of the studies that read the sweep (the teachers' curves, the teacher-seed spread, the reproduction)
and the published MPNet run. Every number on the page is computed here from those files: re-running
``python -m bench.quality --rewrite`` after a rendering change rewrites the pages and nothing else.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench.common import SWEEP_SEED, cell_name, row_key, student_label
from bench.store import RESULTS, load_rows, table, write_page

DOCS = Path(__file__).resolve().parents[1] / "docs"


def plot_cell(row: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = row["curve"]
    xs = [p["sparsity"] for p in c]
    mean = [p["dev_mean"] for p in c]
    std = [p["dev_std"] for p in c]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(xs, mean, "o-", color="tab:blue", label=f"student dev ({row['seeds']} seeds, mean)")
    ax.fill_between(
        xs,
        [a - b for a, b in zip(mean, std, strict=True)],
        [a + b for a, b in zip(mean, std, strict=True)],
        color="tab:blue",
        alpha=0.2,
        label="± 1 std",
    )
    ax.axhline(row["vanilla_kd_student_mean"], color="gray", ls="--", label="vanilla KD (0 %)")
    ax.axhline(row["majority_dev"], color="black", ls=":", label="constant predictor")
    teacher = [(p["sparsity"], p["teacher_dev"]) for p in c if p["teacher_dev"] is not None]
    if teacher:
        ax.plot(*zip(*teacher, strict=True), "--", color="tab:orange", label="sparse teacher (dev)")
    ax.scatter(
        [row["sweep_best_sparsity"]],
        [row["sweep_best_dev_mean"]],
        s=120,
        facecolors="none",
        edgecolors="tab:green",
        linewidths=2,
        zorder=4,
        label=f"sweep argmax on selection: {row['sweep_best_sparsity']:g}% (stark run: {row['chosen_sparsity']:g}%)",
    )
    ax.set_xlabel("teacher sparsity (%)")
    ax.set_ylabel(f"dev {row['metric']} (points)")
    ax.set_title(f"{row['task'].upper()} ({row['train_examples']} train), student {student_label(row)}")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


QUALITY_COLUMNS = (
    "task", "student", "metric", "train ex.", "teacher dev", "constant dev", "labels only", "vanilla KD",
    "KD - labels (selection)", "StarK (stark run's choice)", "chosen", "gain", "sweep argmax on selection (dev)",
    "best on dev (bound)", "commit",
)  # fmt: skip


def labels_cells(r: dict) -> tuple[str, str]:
    """The labels-only students' dev (mean ± std) and what distillation adds on selection (± s.e.), or dashes
    where the cell has not been measured yet; ``*`` marks students that started from another fine-tuning of the
    teacher than the cell's KD students (see ``labels_teacher_notes``)."""
    lo = r.get("labels_only")
    if lo is None:
        return "-", "-"
    mark = "*" if other_labels_teacher(r) else ""
    sel = lo.get("kd_minus_labels_select")
    added = "-" if sel is None else f"{sel:+.2f} ± {lo['kd_minus_labels_select_se']:.2f}{mark}"
    return f"{lo['dev_mean']:.2f} ± {lo['dev_std']:.2f}{mark}", added


def same_dev(a: float, b: float) -> bool:
    """Two dev figures (points) that print the same: closer than the pages' two decimals can show."""
    return abs(a - b) < 0.005


def other_labels_teacher(r: dict) -> bool:
    """Whether the cell's labels-only students (bench/labels_only.py, run apart from the sweep) started from a
    teacher fine-tuned again, whose dev differs from the one the KD students learned from."""
    lo = r.get("labels_only") or {}
    return lo.get("teacher_dev") is not None and not same_dev(lo["teacher_dev"], r["teacher_dev"])


def labels_teacher_notes(rows: list[dict]) -> list[str]:
    """One line per cell marked ``*``: the two teachers, so KD minus labels-only is read with that in mind."""
    return [
        f"- `*` {r['task']}/{student_label(r)}: the labels-only students are built from another fine-tuning of the "
        f"teacher (dev {r['labels_only']['teacher_dev']:.2f}, commit {r['labels_only'].get('commit', '?')}, "
        f"{r['labels_only'].get('threads', '?')} thread(s)) than the KD students' teacher (dev {r['teacher_dev']:.2f},"
        f" commit {r['commit']}): part of KD minus labels-only may be that difference."
        for r in rows
        if other_labels_teacher(r)
    ]


def verdict(rows: list[dict]) -> list[str]:
    """The three-line answer the page opens with, computed from the rows."""
    measured = [r for r in rows if r.get("labels_only") is not None]
    beyond = [
        r for r in measured if r["vanilla_kd_student_mean"] - r["labels_only"]["dev_mean"] > r["vanilla_kd_student_std"]
    ]
    kept = [r for r in rows if r["chosen_sparsity"] != 0]
    gains = [r["stark_student_mean"] - r["vanilla_kd_student_mean"] for r in rows] or [0.0]
    teachers = sorted({r.get("teacher", "minilm") for r in rows})
    reads = {"first": "the first token", "mean": "the mean of the token vectors (cells marked mean)"}
    poolings = " or ".join(reads[p] for p in sorted({row_key(r)[3] for r in rows}))
    adds = ", ".join(
        f"{r['task']}/{student_label(r)} {r['vanilla_kd_student_mean'] - r['labels_only']['dev_mean']:+.2f}"
        for r in measured
    )
    return [
        "> **What distillation adds over the labels alone:** "
        + (
            f"measured on {len(measured)} of {len(rows)} cells (vanilla KD minus labels-only, dev points: {adds}); "
            f"more than one seed-std of vanilla KD on {len(beyond)} of them."
            if measured
            else "not measured yet on these cells."
        ),
        f"> **What StarK adds over vanilla KD:** stark run kept a sparse teacher on {len(kept)} of {len(rows)} cells; "
        f"dev gain {min(gains):+.2f} to {max(gains):+.2f} points.",
        f"> **Regime:** teacher(s) {', '.join(teachers)}; students the teacher's bottom layers or 70 %-pruned; 3 seeds;"
        f" full training sets (SST-2 8,000); the classifier reads {poolings}.",
        "",
    ]


def markdown(rows: list[dict]) -> str:
    """quality.md: one line per cell, vanilla KD against stark run's choice (dev, points)."""
    cells = []
    for r in rows:
        gain = r["stark_student_mean"] - r["vanilla_kd_student_mean"]
        cells.append(
            (
                r["task"],
                student_label(r),
                r["metric"],
                f"{r['train_examples']}{' (subset)' if r['subsampled'] else ''}",
                f"{r['teacher_dev']:.2f}",
                f"{r['majority_dev']:.2f}",
                labels_cells(r)[0],
                f"{r['vanilla_kd_student_mean']:.2f} ± {r['vanilla_kd_student_std']:.2f}",
                labels_cells(r)[1],
                f"{r['stark_student_mean']:.2f} ± {r['stark_student_std']:.2f}",
                f"{r['chosen_sparsity']:g}%",
                f"{gain:+.2f}",
                f"{r['sweep_best_sparsity']:g}% ({r['sweep_best_dev_mean']:.2f})",
                f"{r['oracle_best_dev_mean']:.2f} ({r['oracle_best_sparsity']:g}%)",
                r["commit"],
            )
        )
    return "\n".join(table(QUALITY_COLUMNS, "lllrrrrrrrrrrrl", cells)) + "\n"


def curves_table(row: dict) -> str:
    """A cell's curve: per teacher sparsity the sparse teacher's dev and its students' dev and selection."""
    header = ("sparsity", "teacher dev", "student dev (mean ± std)", "student select", "select loss")
    rows = [
        (
            f"{p['sparsity']:g}%",
            "-" if p["teacher_dev"] is None else f"{p['teacher_dev']:.2f}",
            f"{p['dev_mean']:.2f} ± {p['dev_std']:.2f}",
            f"{p['select_mean']:.2f}",
            f"{p['select_loss_mean']:.4f}",
        )
        for p in row["curve"]
    ]
    return "\n".join(table(header, "rrrrr", rows)) + "\n"


def reading(rows: list[dict]) -> list[str]:
    """What the table shows, computed from the numbers: gain over vanilla KD against the seed spread."""
    out = ["## Reading the table", ""]
    learned = [r for r in rows if r["teacher_check"]["learned"]]
    for r in rows:
        gain = r["stark_student_mean"] - r["vanilla_kd_student_mean"]
        noise = max(r["stark_student_std"], r["vanilla_kd_student_std"])
        verdict = "within one seed-std" if abs(gain) <= noise else ("better" if gain > 0 else "worse")
        teacher = "teacher learned" if r["teacher_check"]["learned"] else "TEACHER DID NOT CLEARLY LEARN"
        bound = r["oracle_best_dev_mean"] - r["vanilla_kd_student_mean"]
        out.append(
            f"- {r['task']}/{student_label(r)} ({teacher}: dev {r['teacher_dev']:.2f} vs constant "
            f"{r['majority_dev']:.2f}): StarK at {r['chosen_sparsity']:g}% minus vanilla KD = {gain:+.2f} points, "
            f"{verdict} (seed std up to {noise:.2f}); the best level on dev would have given {bound:+.2f}."
            + (f" stark run: {r['choice']['reason']}." if r.get("choice") else "")
            + weak_student(r)
        )
    for student in sorted({student_label(r) for r in learned}):
        gains = [r["stark_student_mean"] - r["vanilla_kd_student_mean"] for r in learned if student_label(r) == student]
        out.append(
            f"- Mean gain over tasks where the teacher learned, student {student}: {statistics.fmean(gains):+.2f} "
            f"points over {len(gains)} task(s)."
        )
    for student in sorted({student_label(r) for r in learned}):
        cells = [r for r in learned if student_label(r) == student]
        per_level = ", ".join(
            f"{sparsity:g}% {signed(mean)} ({above}/{n})" for sparsity, (mean, above, n) in level_gains(cells).items()
        )
        out.append(
            f"- Would one fixed sparsity do without a search? Student {student}, dev gain of each level's students "
            "over vanilla KD, mean over the tasks where the teacher learned (tasks where it exceeds the vanilla-KD "
            f"seed-std / tasks): {per_level}."
        )
    out.append(teacher_dependence(rows))
    out += teacher_differences(rows)
    out += labels_teacher_notes(rows)
    return [*out, ""]


def weak_student(r: dict) -> str:
    """A warning when the vanilla-KD students have not learned the task: within one seed-std (or 1 point) of the
    constant predictor, or short of half the teacher's lead over it. Such a student cannot show what a teacher
    adds, and its seed-std (the bar every comparison uses) is wide, so the cell says little."""
    margin = r["vanilla_kd_student_mean"] - r["majority_dev"]
    if margin <= max(r["vanilla_kd_student_std"], 1.0):
        return (
            f" The vanilla-KD students barely beat the constant predictor ({margin:+.2f} points): this student has "
            "not learned the task, so the cell cannot show what a sparse teacher adds."
        )
    share = margin / (r["teacher_dev"] - r["majority_dev"])
    if share >= 0.5:
        return ""
    return (
        f" The vanilla-KD students recover only {share:.0%} of the teacher's lead over the constant predictor "
        f"({r['vanilla_kd_student_mean']:.2f} ± {r['vanilla_kd_student_std']:.2f} against the teacher's "
        f"{r['teacher_dev']:.2f}): this student has barely learned the task at this budget, so the cell says more "
        "about its training than about what a sparse teacher adds."
    )


def teacher_differences(rows: list[dict]) -> list[str]:
    """Tasks whose cells were distilled from different teachers (same settings, fine-tuned at another commit
    or on another CPU kind): their cells compare StarK with vanilla KD only within themselves."""

    def teacher_settings(r: dict) -> tuple:
        # Another teacher model or pooling is another teacher, not a re-run of the same one.
        return r["task"], row_key(r)[0], row_key(r)[3], r["teacher_epochs"], r["train_examples"], r["max_length"]

    out = []
    for task, *same in sorted({teacher_settings(r) for r in rows}):
        cells = [r for r in rows if teacher_settings(r) == (task, *same)]
        if all(same_dev(r["teacher_dev"], cells[0]["teacher_dev"]) for r in cells):
            continue
        which = "; ".join(
            f"{student_label(r)} {r['teacher_dev']:.2f} (commit {r['commit']}, CPU {r.get('cpu', 'not recorded')})"
            for r in cells
        )
        out.append(
            f"- {task}: the cells' teachers differ (dev {which}). Same settings and seed, but fine-tuned at "
            "different commits or on a different CPU kind, so each cell compares StarK with vanilla KD on its own "
            "teacher only; the spread is of the same kind as `bench/results/teacher_seeds.md` measures."
        )
    return out


def teacher_dependence(rows: list[dict]) -> str:
    """How much the students depend on their teacher at all: the sparsest teacher's dev score (usually
    near the constant predictor) beside its students' and vanilla KD's, per cell, and in how many cells
    those students stay within one vanilla-KD seed-std of vanilla KD or above it."""
    cells, kept = [], 0
    for r in rows:
        sparsest = max(r["curve"], key=lambda c: c["sparsity"])
        if sparsest.get("teacher_dev") is None:
            continue
        kept += sparsest["dev_mean"] >= r["vanilla_kd_student_mean"] - r["vanilla_kd_student_std"]
        cells.append(
            f"{r['task']}/{student_label(r)} teacher {sparsest['teacher_dev']:.2f} (dense {r['teacher_dev']:.2f}, "
            f"constant {r['majority_dev']:.2f}), students {sparsest['dev_mean']:.2f} vs "
            f"{r['vanilla_kd_student_mean']:.2f}"
        )
    return (
        "- How much do the students need their teacher? At the sparsest level, dev: "
        + "; ".join(cells)
        + f". In {kept} of {len(cells)} cells the sparsest teacher's students stay within one vanilla-KD seed-std"
        " of vanilla KD or above it: where a teacher cut down to near the constant predictor does as well, the"
        " hard-label half of the KD loss carries the student, which bounds what any choice of teacher can add."
    )


def level_gains(rows: list[dict]) -> dict[float, tuple[float, int, int]]:
    """Per sparse level: its students' dev mean minus vanilla KD's, averaged over the ``rows`` that have
    the level; the number of those rows where the gain exceeds the vanilla-KD students' seed-std; and
    the number of rows averaged."""
    out = {}
    for sparsity in sorted({c["sparsity"] for r in rows for c in r["curve"]} - {0}):
        gains = [
            (c["dev_mean"] - r["vanilla_kd_student_mean"], r["vanilla_kd_student_std"])
            for r in rows
            for c in r["curve"]
            if c["sparsity"] == sparsity
        ]
        out[sparsity] = (statistics.fmean(g for g, _ in gains), sum(g > std for g, std in gains), len(gains))
    return out


def signed(x: float) -> str:
    # Rounding a tiny negative mean must not print "-0.00".
    return f"{x:+.2f}".replace("-0.00", "+0.00")


def teachers_section(results: Path = RESULTS) -> list[str]:
    """The teachers' learning curves (bench/teacher_curves.py), when they have been measured."""
    path = results / "teacher_curves.json"
    if not path.is_file():
        return []
    from bench.teacher_curves import reading as curve_reading

    return [
        "## The teachers",
        "",
        "Learning curves of the fine-tuned teachers against the constant predictor and the targets of issue 11",
        "(`bench/teacher_curves.py`, table in `bench/results/teacher_curves.md`; *reference* rows are re-tuning runs",
        "that evaluate on dev at every step, so their curve is the dev curve):",
        "",
        "![teacher curves](figures/teacher_curves.png)",
        "",
        *[f"- {curve_reading(r)}" for r in load_rows(path) if r["dev"] is not None and r["seed"] == SWEEP_SEED],
        "",
        "Other teacher seeds, and the selection slice closed under near-duplicates (`--select-near-dup`): the",
        "tables in `bench/results/teacher_curves.md`.",
        "",
    ]


def teacher_seeds_section(results: Path = RESULTS) -> list[str]:
    """How much the students move with the teacher's seed (bench/teacher_seeds.py), when measured."""
    path = results / "teacher_seeds.json"
    if not path.is_file():
        return []
    from bench.teacher_seeds import markdown as seeds_table
    from bench.teacher_seeds import reading as seeds_reading

    rows = load_rows(path)
    return [
        "## Teacher seeds",
        "",
        "Student seeds alone understate the noise: the teacher fine-tuned with other seeds on the same splits, then",
        "the default `stark run` (proxy search, 3 student seeds) from each (`bench/teacher_seeds.py`; seed 776 is the",
        "sweep's own teacher, its row replayed from the sweep's logs with the default policy):",
        "",
        seeds_table(rows),
        *[f"- {line}" for line in seeds_reading(rows)],
        "",
    ]


def reproduction_section(results: Path = RESULTS) -> list[str]:
    """One finished cell re-run from a clean clone (bench/reproduce.py), when it has been."""
    path = results / "reproduce.json"
    if not path.is_file():
        return []
    from bench.reproduce import summary
    from bench.reproduce import table as repro_table

    return [
        "## Reproduction",
        "",
        *[
            line
            for r in load_rows(path)
            for line in (
                f"{r['task']} / {r['student']} again from a clean clone of main, everything from scratch (the teacher",
                "fine-tuned again, every student distilled again): `STEPS=reproduce bench/run_after_sweep.sh`.",
                summary(r),
                "",
                repro_table(r),
            )
        ],
        "Two causes move the digits between two honest runs: a change of code between the commits, and the CPU",
        "kind (the same wheels round float32 differently across kinds, up to ~1e-6 per value, tests/test_golden.py;",
        "three epochs of fine-tuning grow that into a different teacher, which every student then follows). Where",
        "a row's CPU kind was not recorded, the two cannot be told apart. Either way, a level's lead must clear this",
        "run-to-run spread as well as the student seeds'.",
        "",
    ]


def _hours(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def mpnet_section(docs: Path = DOCS) -> list[str]:
    """The paper's shape on MRPC (12-layer all-mpnet-base-v2 teacher, 4-layer student), once
    ``bench/default_run.py --config recipes/mpnet_mrpc.yaml --name mpnet_mrpc`` has published it."""
    path = docs / "mpnet_mrpc" / "time.json"
    if not path.is_file():
        return []
    rec = json.loads(path.read_text())
    machine = rec["machine"]
    segments = len(machine.get("segments", [])) or 1

    def pts(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    return [
        "## A 12-layer teacher: all-mpnet-base-v2 on MRPC",
        "",
        "The paper's shape (`recipes/mpnet_mrpc.yaml`: 12-layer, 768-wide teacher fetched with `stark teacher get",
        "mpnet`; its bottom 4 layers as the student; fast preset, default proxy search, one student seed), run as",
        f"`{rec['command']}` at commit {rec['commit']}; report: [docs/mpnet_mrpc/report.md](mpnet_mrpc/report.md).",
        "",
        "| metric | teacher dev | constant | vanilla KD dev | StarK | StarK dev "
        f"| wall ({segments} segment(s)) | quiet |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
        f"| {rec['metric']} | {pts(rec['teacher_dev'])} | {pts(rec['constant_dev'])} | {pts(rec['vanilla_kd_dev'])} "
        f"| {rec['chosen_sparsity']:g}% | {pts(rec['chosen_dev'])} | {_hours(rec['wall_s'])} "
        f"| {'yes' if machine['quiet'] else 'NO'} |",
        "",
        f"- stark run: {rec['choice']}.",
        *_mpnet_reading(docs / "mpnet_mrpc" / "summary.json", machine),
        "",
    ]


def _mpnet_reading(summary_path: Path, machine: dict) -> list[str]:
    """What the published summary adds: every level's student that ran to the end, stage times, quietness."""
    lines = []
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        full = [
            f"{lv['teacher_sparsity']:g} % {100 * lv['student_dev_mean']:.2f}"
            for lv in summary["levels"]
            if lv.get("student_full_budget") and lv.get("student_dev_mean") is not None
        ]
        lines.append(f"- Students distilled to the end (dev {summary['metric']}): {', '.join(full)}; one seed each.")
        walls = summary.get("stage_wall_s") or {}
        lines.append(
            "- Stages (the last segment): " + ", ".join(f"{k} {_hours(v)}" for k, v in walls.items() if v >= 60) + "."
        )
    killed = sum(1 for seg in machine.get("segments", []) if "after" not in seg)
    if killed:
        why = "no after-probe; work redone counted"
        lines.append(f"- Not quiet: {killed} segment(s) ended with their session ({why}).")
    return lines


def results_page(rows: list[dict], results: Path = RESULTS, docs: Path = DOCS) -> str:
    """docs/results.md: settings, the table, a curve table and figure per cell, the old table as an appendix."""
    lines = [
        "# Results: vanilla KD vs StarK at full size",
        "",
        *verdict(rows),
        "Written by `bench/quality.py` from `bench/results/quality.json`. Teacher: all-MiniLM-L6-v2 (6 layers, hidden",
        "384) fine-tuned on the full bundled training set (SST-2: a seeded random 8,000), fast preset; the held-out",
        "selection slice (10 % of train, at least 300 examples) drives early stopping, scoring and the choice; dev is",
        "only reported. Every teacher sparsity 0-90 % is distilled to the full budget (the full sweep) with 3 student",
        "seeds. *StarK* is what `stark run --search full` answers: the level with the best mean selection metric",
        "(the *sweep argmax*), kept only if it leads vanilla KD on the selection split by more than the",
        "paired-bootstrap bar for the best of nine levels (about 2.1 standard errors), else 0 %; reported on dev.",
        "*Best on dev* is an upper bound no honest procedure can reach. The constant predictor (majority class, or",
        "the mean for regression) shows what a student that learned nothing scores.",
        "",
        markdown(rows),
        *reading(rows),
    ]
    for r in rows:
        lines += [
            f"### {r['task']} / {student_label(r)}" + ("" if row_key(r)[0] == "minilm" else f" ({r['teacher']})"),
            "",
            f"![{r['task']} {student_label(r)}](figures/quality_{cell_name(*row_key(r)).replace('-', '_')}.png)",
            "",
            curves_table(r),
        ]
    lines += [
        *teachers_section(results),
        *teacher_seeds_section(results),
        *reproduction_section(results),
        *mpnet_section(docs),
        "## Notes",
        "",
        "- Student budget (`bench/results/student_budget.md`): with a first-token classifier the 2-layer student",
        "  stayed at the constant predictor on full MRPC at lr 1e-4 and 3e-4 (its selection loss rises after the first",
        "  epoch); the 70 %-pruned student learns MRPC.",
        "- Search policies replayed on these curves, with stark run's own check: `bench/results/search_replay.md`.",
        "",
        "## Appendix: the earlier subset table",
        "",
        "Before these runs every figure came from 450-1,800-example subsets on which the teacher learned little or",
        "nothing (RTE 50.2 %, MRPC F1 81.2 = always 'paraphrase', CoLA MCC 0): those cells could not show anything,",
        "and one SST-2 gain did not reproduce. They are kept in `bench/results/quality_subsets.{json,md}`.",
        "",
    ]
    return "\n".join(lines)


def quality_page(rows: list[dict]) -> str:
    """bench/results/quality.md: the table and what its ``*`` marks."""
    notes = labels_teacher_notes(rows)
    return markdown(rows) + ("\n" + "\n".join(notes) + "\n" if notes else "")


def write_pages(rows: list[dict], results: Path = RESULTS, docs: Path = DOCS) -> None:
    """quality.md and docs/results.md, both from ``rows`` (and the other results files results.md reads)."""
    write_page(results / "quality.md", quality_page(rows))
    write_page(docs / "results.md", results_page(rows, results, docs))
