"""The bench library (results store, machine probes) and the studies' pure parts: pages, replays, re-timing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import quality, quality_pages, reproduce, search_cost, teacher_curves
from bench.common import cell_name, row_key
from bench.machine import PEAK_BY_CPU, quiet, reference_peak
from bench.store import RESULTS, compact_json, load_rows, save_rows, table


def test_compact_json_puts_number_lists_and_logit_matrices_on_one_line() -> None:
    obj = {"logits": [[1.5, -2], [3e-05, 4]], "mixed": [1, [3, 4]], "empty": [], "rows": [{"x": [1, 2]}]}
    text = compact_json(obj)
    assert json.loads(text) == obj
    lines = text.splitlines()
    assert '  "logits": [[1.5, -2], [3e-05, 4]],' in lines
    assert '      "x": [1, 2]' in lines
    # A list that mixes numbers and lists keeps one item per line (only pure number lists fold).
    assert '  "mixed": [' in lines


def test_compact_json_leaves_strings_alone() -> None:
    obj = {"note": "[1,2] and [[3],[4]]", "values": [1, 2]}
    assert json.loads(compact_json(obj)) == obj


def test_save_rows_round_trips(tmp_path: Path) -> None:
    rows = [{"task": "sst2", "select_pred": [[0.1234, -0.5], [2.0, 1.0]], "evals": [[3, 50.0, 0.69, None]]}]
    save_rows(tmp_path / "r.json", rows)
    assert load_rows(tmp_path / "r.json") == rows
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left beside it
    save_rows(tmp_path / "deeper" / "r.json", rows)  # a missing folder is made
    assert load_rows(tmp_path / "deeper" / "r.json") == rows


def test_table_writes_markdown_rows_and_refuses_ragged_ones() -> None:
    assert table(("a", "b", "c"), "lrc", [(1, "x", 2.5)]) == ["| a | b | c |", "|---|---:|:---:|", "| 1 | x | 2.5 |"]
    with pytest.raises(ValueError, match="a row of 2 cells under 3 columns"):
        table(("a", "b", "c"), "lll", [(1, 2)])
    with pytest.raises(ValueError, match="3 columns but alignment 'll'"):
        table(("a", "b", "c"), "ll", [])


def _repro_row(shift: float) -> dict:
    return {
        "task": "mrpc",
        "student": "pruned70",
        "commit": "abc",
        "teacher_dev": 87.0,
        "vanilla_kd_student_mean": 85.0,
        "vanilla_kd_student_std": 0.5,
        "stark_student_mean": 85.0,
        "chosen_sparsity": 0,
        "sweep_best_sparsity": 60,
        "curve": [{"sparsity": 0, "dev_mean": 85.0}, {"sparsity": 60, "dev_mean": 85.5 + shift}],
    }


def test_reproduce_compares_headline_and_every_level() -> None:
    assert reproduce.compare(_repro_row(0.0), _repro_row(0.0))["max_abs_diff"] == 0.0
    result = reproduce.compare(_repro_row(0.0), _repro_row(-0.25))
    assert result["max_abs_diff"] == 0.25
    assert result["levels"][1] == {"sparsity": 60, "committed": 85.5, "rerun": 85.25}
    assert result["same_choice"] and "**0.2500** points" in reproduce.markdown(result)
    assert "vanilla KD by +0.00 (0.0 of its seed-std 0.50), the sparse levels by -0.25 to -0.25" in reproduce.summary(
        result
    )
    moved = _repro_row(0.0) | {"chosen_sparsity": 60}
    assert not reproduce.compare(_repro_row(0.0), moved)["same_choice"]
    with pytest.raises(SystemExit, match="different settings"):
        reproduce.compare(_repro_row(0.0), _repro_row(0.0) | {"train_examples": 10})


def test_results_page_reads_the_reproduction_when_there_is_one(tmp_path: Path) -> None:
    assert quality_pages.reproduction_section(tmp_path) == []
    save_rows(tmp_path / "reproduce.json", [reproduce.compare(_repro_row(0.0), _repro_row(-0.25))])
    page = quality_pages.results_page([], results=tmp_path)
    assert "## Reproduction" in page and "**0.2500** points" in page
    assert "| dev mean at 60% | 85.5000 | 85.2500 |" in page


def test_harvest_copies_only_missing_cells_with_their_figures(tmp_path: Path) -> None:
    committed = load_rows(RESULTS / "quality.json")
    here, there = tmp_path / "main", tmp_path / "wt"
    for root in (here, there):
        (root / "bench" / "results").mkdir(parents=True)
        (root / "docs" / "figures").mkdir(parents=True)
    # The worktree finished every committed cell; this checkout lacks the last one (and holds an older copy of
    # the first, which must not be overwritten).
    save_rows(there / "bench" / "results" / "quality.json", committed)
    mine = [committed[0] | {"note": "mine"}, *committed[1:-1]]
    save_rows(here / "bench" / "results" / "quality.json", mine)
    last = committed[-1]
    figure = f"quality_{cell_name(*row_key(last)).replace('-', '_')}.png"  # a mean-pooled cell's says so
    (there / "docs" / "figures" / figure).write_bytes(b"png")
    folders = (here / "bench" / "results", here / "docs")
    assert quality.harvest(there, *folders) == [(last["task"], last["student"])]
    rows = load_rows(here / "bench" / "results" / "quality.json")
    assert rows == [*mine, last]
    assert (here / "docs" / "figures" / figure).read_bytes() == b"png"
    assert f"| {last['task']} |" in (here / "bench" / "results" / "quality.md").read_text()
    assert (here / "docs" / "results.md").is_file()
    assert quality.harvest(there, *folders) == []
    with pytest.raises(SystemExit, match="not a sweep worktree"):
        quality.harvest(tmp_path / "nowhere", *folders)
    # A finished row whose figure is missing copies nothing at all.
    save_rows(here / "bench" / "results" / "quality.json", mine)
    (there / "docs" / "figures" / figure).unlink()
    with pytest.raises(SystemExit, match="missing; nothing copied"):
        quality.harvest(there, *folders)
    assert load_rows(here / "bench" / "results" / "quality.json") == mine


def test_level_gains_averages_each_level_over_cells() -> None:
    def row(devs: list[float], std: float) -> dict:
        curve = [{"sparsity": s, "dev_mean": d} for s, d in zip((0, 50, 90), devs, strict=True)]
        return {"curve": curve, "vanilla_kd_student_mean": devs[0], "vanilla_kd_student_std": std}

    gains = quality_pages.level_gains([row([80.0, 81.0, 79.0], 0.5), row([60.0, 60.2, 62.0], 0.5)])
    assert list(gains) == [50, 90]
    assert gains[50] == (pytest.approx(0.6), 1, 2)  # +1.0 clears 0.5; +0.2 does not
    assert gains[90] == (pytest.approx(0.5), 1, 2)  # -1.0 and +2.0
    # A cell without a level is left out of that level's mean, not an error.
    short = row([70.0, 73.0, 70.0], 1.0)
    short["curve"] = short["curve"][:2]
    assert quality_pages.level_gains([row([80.0, 81.0, 79.0], 0.5), short])[90] == (pytest.approx(-1.0), 0, 1)
    assert quality_pages.signed(-0.001) == "+0.00" and quality_pages.signed(-0.01) == "-0.01"


def test_teacher_dependence_reads_the_sparsest_level() -> None:
    row = {
        "task": "mrpc",
        "student": "pruned70",
        "teacher_dev": 87.0,
        "majority_dev": 81.2,
        "vanilla_kd_student_mean": 85.0,
        "vanilla_kd_student_std": 0.3,
        "curve": [
            {"sparsity": 0, "teacher_dev": 87.0, "dev_mean": 85.0},
            {"sparsity": 90, "teacher_dev": 81.2, "dev_mean": 84.6},
        ],
    }
    line = quality_pages.teacher_dependence(
        [row, row | {"task": "rte", "curve": [{"sparsity": 90, "teacher_dev": None}]}]
    )
    assert "mrpc/pruned70 teacher 81.20 (dense 87.00, constant 81.20), students 84.60 vs 85.00" in line
    assert "rte/" not in line  # a sparsest teacher never evaluated on dev is left out
    assert "In 0 of 1 cells" in line  # 84.6 < 85.0 - 0.3
    assert "In 1 of 1 cells" in quality_pages.teacher_dependence([row | {"vanilla_kd_student_std": 0.5}])


def test_teacher_curves_refuses_to_drop_recorded_teachers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = load_rows(teacher_curves.RESULTS / "teacher_curves.json")
    assert len(recorded) > 1
    # A reading that finds all but the first recorded teacher (a fresh machine without its run folder).
    assert teacher_curves.dropped(recorded, recorded[1:]) == [recorded[0]]
    assert teacher_curves.dropped(recorded, recorded) == []
    results = tmp_path / "results"
    save_rows(results / "teacher_curves.json", recorded)
    before = (results / "teacher_curves.json").read_text()
    monkeypatch.setattr(teacher_curves, "RESULTS", results)
    monkeypatch.setattr(teacher_curves, "find_teachers", lambda roots: ["one"])
    monkeypatch.setattr(teacher_curves, "teacher_row", lambda t: recorded[1])
    with pytest.raises(SystemExit, match=rf"{len(recorded) - 1} recorded teacher\(s\) are not under --roots"):
        teacher_curves.main(["--roots", str(tmp_path)])
    assert (results / "teacher_curves.json").read_text() == before


def test_teacher_differences_names_tasks_whose_cells_had_other_teachers() -> None:
    same = {"teacher_epochs": 3, "train_examples": 3301, "max_length": 128}
    a = {"task": "mrpc", "student": "pruned70", "teacher_dev": 87.0337, "commit": "b53833e", **same}
    b = {**a, "student": "layers2", "teacher_dev": 86.4198, "commit": "bf3e270", "cpu": "AMD EPYC family 25"}
    c = {"task": "sst2", "student": "pruned70", "teacher_dev": 87.3853, "commit": "a8b86c0", **same}
    d = {**c, "student": "layers2"}
    e = {**c, "student": "layers2", "teacher_epochs": 1, "teacher_dev": 80.0}  # other settings: not compared
    lines = quality_pages.teacher_differences([a, b, c, d, e])
    assert len(lines) == 1 and lines[0].startswith("- mrpc: the cells' teachers differ (dev pruned70 87.03")
    assert "layers2 86.42 (commit bf3e270, CPU AMD EPYC family 25)" in lines[0]
    assert "CPU not recorded" in lines[0]


def test_quiet_judges_a_timing_by_its_own_cpu_kinds_peak() -> None:
    kind = next(iter(PEAK_BY_CPU))
    peak = PEAK_BY_CPU[kind][2]
    alone = {"cpu": kind, "threads": 2, "others_busy": 0.01, "load_avg_1m": 1.8, "matmul_gflops": peak - 1}
    # Recorded at timing time against the first kind's 160 GFLOP/s: judged against this kind's own peak.
    alone["reference_gflops"] = 160.0
    assert reference_peak(kind, 2) == peak and quiet(alone, alone)
    assert not quiet({**alone, "others_busy": 0.5}, alone)
    assert not quiet(alone, {**alone, "matmul_gflops": 0.5 * peak})
    # Records without a CPU kind keep the first kind's reference; an unknown kind falls back to the stored one.
    old = {"others_busy": 0.0, "load_avg_1m": 0.2, "matmul_gflops": 150.0, "reference_gflops": 160.0}
    assert quiet(old, old) and reference_peak(None, 2) == 160.0
    assert not quiet({**alone, "cpu": "another kind"}, alone)


def test_search_cost_table_shows_the_proxy_beside_halving() -> None:
    markdown = search_cost.markdown
    kind = next(iter(PEAK_BY_CPU))
    probe = {"cpu": kind, "threads": 2, "others_busy": 0.01, "load_avg_1m": 1.8, "matmul_gflops": 105.0}
    machine = {"before": probe, "after": probe, "quiet": True}
    row = {
        "task": "mrpc", "student": "pruned70", "train_examples": 3301, "subsampled": False, "one_kd_s": 400.0,
        "halving_pipeline_s": 1200.0, "pipeline_over_one_kd": 3.0, "halving_sparsity": 60, "halving_dev": 0.858,
        "seed_std": 0.005, "machine": [machine], "commit": "abc1234",
    }  # fmt: skip
    assert "proxy" not in markdown([row])
    row["proxy"] = {
        "pipeline_s": 1000.0, "pipeline_over_one_kd": 2.5, "kd_student_epochs": 6.5, "sparsity": 0, "dev": 0.85,
        "commit": "def5678", "machine": {**machine, "after": {**probe, "matmul_gflops": 20.0}},
    }  # fmt: skip
    table = markdown([row])
    first, proxy = table.split("\n\n", 1)
    assert "| 1200 | 3.00 | - | 60% (85.80) | 0.50 | - | yes | abc1234 |" in first
    # The proxy's own probes judge it (a busy after-probe), and its own commit is shown.
    assert "| mrpc | pruned70 | 400 | 3.00 | 1000 | 2.50 | 6.50 | 60% (85.80) | 0% (85.00) | NO | def5678 |" in proxy
    # A quiet proxy run is still no valid ratio when the vanilla-KD time it divides by was busy.
    row["proxy"]["machine"] = machine
    assert "| 0% (85.00) | yes | def5678 |" in markdown([row])
    row["machine"] = [{**machine, "after": {**probe, "matmul_gflops": 20.0}}]
    assert "| 0% (85.00) | NO | def5678 |" in markdown([row])


def test_search_cost_adds_the_proxy_to_a_finished_row_without_retiming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def row(task: str) -> dict:
        return {
            "task": task, "student": "pruned70", "metric": "f1", "train_examples": 10, "subsampled": False,
            "one_kd_s": 100.0, "halving_pipeline_s": 300.0, "pipeline_over_one_kd": 3.0, "halving_sparsity": 0,
            "halving_dev": 0.8, "seed_std": 0.01, "machine": [], "commit": "old1234", "proxy": None,
        }  # fmt: skip

    save_rows(tmp_path / "search_cost.json", [row("mrpc")])
    timed, proxied = [], []
    monkeypatch.setattr(search_cost, "bench_task", lambda task, args: timed.append(task) or row(task))

    def time_proxy(task: str, teacher_dir: Path, args, r: dict) -> dict:
        proxied.append((task, r["one_kd_s"]))
        return {"pipeline_s": 250.0, "pipeline_over_one_kd": 2.5, "kd_student_epochs": 6.5, "sparsity": 0,
                "dev": 0.8, "commit": "new5678", "machine": None}  # fmt: skip

    monkeypatch.setattr(search_cost, "time_proxy", time_proxy)
    # A finished row's teacher is the shared one (fine-tuned once, excluded from every timing).
    monkeypatch.setattr(search_cost, "shared_teacher", lambda task, samples, epochs, **_: (None, tmp_path / task))
    argv = ["--tasks", "mrpc,cola", "--results", str(tmp_path), "--no-full"]
    search_cost.main(argv)
    # Without --proxy: the finished row is skipped, the missing one timed without a proxy.
    assert timed == ["cola"] and proxied == []
    search_cost.main([*argv, "--proxy"])
    # With --proxy: both rows get the proxy timed against their own vanilla KD; nothing else re-runs.
    assert timed == ["cola"] and proxied == [("mrpc", 100.0), ("cola", 100.0)]
    rows = load_rows(tmp_path / "search_cost.json")
    assert [(r["task"], r["commit"], r["proxy"]["commit"]) for r in rows] == [
        ("mrpc", "old1234", "new5678"),
        ("cola", "old1234", "new5678"),
    ]
    search_cost.main([*argv, "--proxy"])
    assert len(proxied) == 2  # a row with its proxy is done


def test_reading_flags_a_cell_whose_students_have_not_learned_the_task() -> None:

    def cell(mean: float, std: float, constant: float, teacher: float) -> dict:
        return {
            "vanilla_kd_student_mean": mean,
            "vanilla_kd_student_std": std,
            "majority_dev": constant,
            "teacher_dev": teacher,
        }

    # MRPC / 2-layer: vanilla KD F1 81.35 +- 0.47 against 81.22 for always answering "paraphrase".
    assert "+0.13 points" in quality_pages.weak_student(cell(81.35, 0.47, 81.22, 86.42))
    # STS-B / 2-layer: Pearson 24.29 +- 11.07, teacher 85.91, constant 0: 28 % of the teacher's lead.
    assert "recover only 28% of the teacher's lead" in quality_pages.weak_student(cell(24.29, 11.07, 0.0, 85.91))
    # MRPC / 70 %-pruned: F1 85.02 against 81.22 and the teacher's 87.03 (65 % of its lead): no warning.
    assert quality_pages.weak_student(cell(85.02, 0.53, 81.22, 87.03)) == ""


def test_search_cost_retimes_a_row_not_taken_alone_in_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    kind = next(iter(PEAK_BY_CPU))
    probe = {"cpu": kind, "threads": 2, "others_busy": 0.01, "load_avg_1m": 0.5, "matmul_gflops": PEAK_BY_CPU[kind][2]}
    alone = {"before": probe, "after": probe, "quiet": True}
    busy = {**alone, "after": {**probe, "matmul_gflops": 0.5 * probe["matmul_gflops"]}, "quiet": False}

    def row(task: str, machine: dict, commit: str = "old1234") -> dict:
        return {
            "task": task, "student": "pruned70", "metric": "f1", "train_examples": 10, "subsampled": False,
            "one_kd_s": 100.0, "one_kd_s_per_seed": [99.5, 100.5], "halving_pipeline_s": 300.0,
            "pipeline_over_one_kd": 3.0, "halving_sparsity": 0, "halving_dev": 0.8, "seed_std": 0.01,
            "machine": [alone, machine], "commit": commit,
            "proxy": {"pipeline_s": 250.0, "pipeline_over_one_kd": 2.5, "kd_student_epochs": 6.5, "sparsity": 0,
                      "dev": 0.8, "commit": commit, "machine": alone, "quiet": True},
        }  # fmt: skip

    save_rows(tmp_path / "search_cost.json", [row("mrpc", busy), row("cola", alone), row("stsb", alone)])
    # MRPC's work folder: the old row's stamps, and one of a re-timing interrupted earlier (another wall time).
    work = tmp_path / "work" / "mrpc-all-pruned70"
    # Halving ran alone with this code (kept, read back); the proxy alone with other code, seed 0 busy.
    stamps = {
        "vanilla/kd_seed0.time.json": {"wall_s": 99.5, "machine": busy},
        "vanilla/kd_seed1.time.json": {"wall_s": 101.25, "machine": alone},
        "halving/pipeline.time.json": {"wall_s": 300.0, "machine": alone, "commit": "old1234"},
        "proxy/pipeline.time.json": {"wall_s": 250.0, "machine": alone, "commit": "older99"},
    }
    for name, record in stamps.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(json.dumps(record))
    monkeypatch.setattr(search_cost, "commit", lambda: "old1234")
    timed = []

    def bench_task(task: str, args) -> dict:
        timed.append((task, args.proxy, sorted(str(p.relative_to(work)) for p in work.rglob("*.json"))))
        return row(task, alone, commit="new5678")

    monkeypatch.setattr(search_cost, "bench_task", bench_task)
    argv = ["--tasks", "mrpc,cola,stsb", "--results", str(tmp_path), "--work", str(tmp_path / "work"), "--no-full"]
    search_cost.main(argv)
    assert timed == []  # finished rows are skipped unless asked
    search_cost.main([*argv, "--retime-unquiet"])
    # Only the busy row is timed again, proxy included (it had one); of the old row's own stamps only those
    # taken alone with this code stay.
    assert timed == [("mrpc", True, ["halving/pipeline.time.json", "vanilla/kd_seed1.time.json"])]
    rows = load_rows(tmp_path / "search_cost.json")
    assert [(r["task"], r["commit"]) for r in rows] == [("mrpc", "new5678"), ("cola", "old1234"), ("stsb", "old1234")]
    search_cost.main([*argv, "--retime-unquiet"])
    assert len(timed) == 1  # now every row was taken alone


def test_search_cost_times_an_interrupted_cell_from_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "metrics.json").write_text("{}")
    work = tmp_path / "work"
    (work / "halving" / "students").mkdir(parents=True)
    (work / "halving" / "students" / "checkpoint").write_text("left by an interrupted run")
    (work / "proxy").mkdir()
    (work / "proxy" / "pipeline.time.json").write_text(json.dumps({"wall_s": 5.0, "machine": None}))
    (work / "proxy" / "summary.json").write_text(json.dumps({"search": "proxy"}))
    (work / "proxy" / "kept").write_text("a timed cell's folder stays")
    seen = []

    def run(cfg) -> None:
        out = Path(cfg.out)
        seen.append(sorted(p.name for p in out.iterdir()))
        (out / "summary.json").write_text(json.dumps({"search": out.name}))

    monkeypatch.setattr(search_cost, "run", run)
    monkeypatch.setattr(search_cost, "timed_cell", lambda fn: (fn(), None))
    args = argparse.Namespace(epochs=1, teacher_epochs=1, student="pruned70")
    out = search_cost.time_pipelines("mrpc", None, teacher, work, args, ("halving", "proxy"))
    # The halving run started from its seeded teacher alone; the proxy was read back, not run again.
    assert seen == [["teacher"]] and (work / "proxy" / "kept").is_file()
    assert out["proxy"]["bench_wall_s"] == 5.0 and out["halving"]["search"] == "halving"


def test_default_run_segments_resume_only_the_same_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from bench import default_run

    probe = {"cpu": "x", "others_busy": 0.0, "load_avg_1m": 0.1, "threads": 2, "matmul_gflops": 1.0}
    monkeypatch.setattr(default_run, "machine_state", lambda: probe)
    out, seg_path = tmp_path / "run", tmp_path / "run.segments.json"
    (out / "teacher").mkdir(parents=True)
    (out / "teacher" / "ckpt").write_text("step 100")
    # A first segment that was killed: no end; it ends at the run folder's last write.
    save_rows(seg_path, [{"commit": "abc", "start": 1000.0, "end": None, "before": probe}])
    os.utime(out / "teacher" / "ckpt", (1600.0, 1600.0))
    for d in (out / "teacher", out):
        os.utime(d, (1500.0, 1500.0))
    segments = default_run.start_segment(seg_path, out, resume=True, code_commit="abc")
    assert (out / "teacher" / "ckpt").is_file()  # kept for stark run to resume from
    assert segments[0] | {"before": None} == {
        "commit": "abc",
        "start": 1000.0,
        "end": 1600.0,
        "wall_s": 600.0,
        "end_estimated": True,
        "before": None,
    }
    assert segments[1]["end"] is None and load_rows(seg_path) == segments
    # The killed segment has no after-probe: the run cannot count as quiet.
    segments[1].update(after=probe, wall_s=60.0)
    assert default_run.machine_record(segments) == {"segments": segments, "quiet": False}
    with pytest.raises(SystemExit, match="started at commit abc, this checkout is def"):
        default_run.start_segment(seg_path, out, resume=True, code_commit="def")
    # Without --resume the folder and the earlier segments go: a fresh, single-segment timing.
    assert len(default_run.start_segment(seg_path, out, resume=False, code_commit="def")) == 1
    assert not out.exists()


def test_results_page_reads_the_mpnet_run_when_published(tmp_path: Path) -> None:
    assert quality_pages.mpnet_section(tmp_path) == []
    record = {
        "commit": "abc1234",
        "command": "stark run --config recipes/mpnet_mrpc.yaml",
        "wall_s": 9000.0,
        "chosen_sparsity": 30,
        "metric": "f1",
        "teacher_dev": 0.9,
        "constant_dev": 0.8122,
        "vanilla_kd_dev": 0.85,
        "chosen_dev": 0.8612,
        "choice": "the best sparse level (30%) leads",
        "machine": {"segments": [{}, {}], "quiet": False},
    }
    (tmp_path / "mpnet_mrpc").mkdir()
    (tmp_path / "mpnet_mrpc" / "time.json").write_text(json.dumps(record))
    page = quality_pages.results_page([], results=tmp_path, docs=tmp_path)
    assert "| f1 | 90.00 | 81.22 | 85.00 | 30% | 86.12 | 2 h 30 min | NO |" in page
    assert "wall (2 segment(s))" in page and "at commit abc1234" in page
    assert "- Not quiet: 2 segment(s) ended with their session" in page
    levels = [
        {"teacher_sparsity": 0.0, "student_full_budget": True, "student_dev_mean": 0.85},
        {"teacher_sparsity": 10.0, "student_full_budget": False, "student_dev_mean": None},
        {"teacher_sparsity": 30.0, "student_full_budget": True, "student_dev_mean": 0.8612},
    ]
    summary = {"metric": "f1", "levels": levels, "stage_wall_s": {"finetune": 2700.0, "score": 30.0}}
    (tmp_path / "mpnet_mrpc" / "summary.json").write_text(json.dumps(summary))
    page = quality_pages.results_page([], results=tmp_path, docs=tmp_path)
    assert "- Students distilled to the end (dev f1): 0 % 85.00, 30 % 86.12; one seed each." in page
    assert "- Stages (the last segment): finetune 0 h 45 min." in page


def test_moved_renderers_write_the_committed_pages_from_the_committed_results() -> None:
    """quality.md and peers.md are rendered by modules split out of their studies: same text, number for number
    (peers.md's third line names the command, which changed with the split)."""
    from bench.peers.render import render

    assert quality_pages.quality_page(load_rows(RESULTS / "quality.json")) == (RESULTS / "quality.md").read_text()
    page = render(json.loads((RESULTS / "peers.json").read_text())).splitlines()
    committed = (RESULTS / "peers.md").read_text().splitlines()
    assert len(page) == len(committed) and page[3:] == committed[3:] and page[:2] == committed[:2]
    assert "python -m bench.peers" in page[2]


def test_peers_results_keep_one_run_per_settings(tmp_path: Path) -> None:
    from bench.peers.context import PeersResults

    kind = next(iter(PEAK_BY_CPU))
    probe = {"cpu": kind, "threads": 2, "others_busy": 0.01, "load_avg_1m": 0.3, "matmul_gflops": PEAK_BY_CPU[kind][2]}
    one = PeersResults(tmp_path, {"threads": 1})
    one.record("peak", {"gflops": 80.0}, peaks=[81.0])
    two = PeersResults(tmp_path, {"threads": 2})
    two.record("kd_stark", {"wall_s": 5.0, "before": probe, "after": probe}, peaks=[79.0])
    two.record("ft_stark", {"wall_s": 9.0, "before": probe, "after": {**probe, "matmul_gflops": 1.0}}, peaks=[])
    # A re-run with the same settings resumes its own run; the other run stays beside it.
    again = PeersResults(tmp_path, {"threads": 2})
    assert [r["settings"] for r in again.file["runs"]] == [{"threads": 1}, {"threads": 2}]
    assert again.run["cells"]["kd_stark"]["quiet"] and not again.run["cells"]["ft_stark"]["quiet"]
    assert (
        again.run["peak_seen_gflops"] == 79.0 and PeersResults(tmp_path, {"threads": 1}).run["peak_seen_gflops"] == 81.0
    )
    # --report with unknown settings adds no run to the file; a file from before runs were kept is one run.
    assert len(PeersResults(tmp_path, {"threads": 4}, keep=False).file["runs"]) == 2
    (tmp_path / "peers.json").write_text(json.dumps({"settings": {"threads": 1}, "env": {}, "cells": {"peak": {}}}))
    assert PeersResults(tmp_path, {"threads": 1}).run["cells"] == {"peak": {}}


def test_the_results_page_opens_with_a_verdict_computed_from_the_rows() -> None:
    from bench.quality_pages import labels_cells, verdict

    def row(task: str, kd: float, kd_std: float, stark: float, chosen: float, labels: float | None) -> dict:
        r = {
            "task": task,
            "student": "pruned70",
            "vanilla_kd_student_mean": kd,
            "vanilla_kd_student_std": kd_std,
            "stark_student_mean": stark,
            "chosen_sparsity": chosen,
        }
        if labels is not None:
            r["labels_only"] = {
                "dev_mean": labels,
                "dev_std": 0.5,
                "kd_minus_labels_select": 1.0,
                "kd_minus_labels_select_se": 0.25,
            }
        return r

    rows = [
        row("mrpc", 85.0, 0.5, 85.0, 0, 85.3),
        row("rte", 60.0, 1.0, 61.5, 30, 58.0),
        row("cola", 20.0, 1.0, 20.0, 0, None),
    ]
    text = "\n".join(verdict(rows))
    assert "measured on 2 of 3 cells" in text and "mrpc/pruned70 -0.30, rte/pruned70 +2.00" in text
    assert "more than one seed-std of vanilla KD on 1 of them" in text
    assert "kept a sparse teacher on 1 of 3 cells; dev gain +0.00 to +1.50 points" in text
    assert labels_cells(rows[0]) == ("85.30 ± 0.50", "+1.00 ± 0.25") and labels_cells(rows[2]) == ("-", "-")


def test_budget_replay_follows_the_loops_early_stopping_rule():
    """bench/budget.py replays early stopping on recorded runs: metric first, loss as tie-break, never before the
    floor; and it runs a cell once only where the old and new budgets are the same run."""
    from bench.budget import same_run, stopped_at
    from stark.data.tasks import GLUE_TASKS

    spec = GLUE_TASKS["mrpc"]
    rising = [[s, s / 10, 1.0] for s in range(10, 110, 10)]
    assert stopped_at(spec, rising, per_epoch=40, eval_every=10, floor=0, patience=1.0) == (10.0, 100)
    flat = [[s, 5.0, 1.0] for s in range(10, 110, 10)]
    assert stopped_at(spec, flat, per_epoch=40, eval_every=10, floor=0, patience=0.5) == (5.0, 30)
    assert stopped_at(spec, flat, per_epoch=40, eval_every=10, floor=70, patience=0.5) == (5.0, 70)
    falling_loss = [[s, 5.0, 1.0 - s / 1000] for s in range(10, 110, 10)]
    assert stopped_at(spec, falling_loss, per_epoch=40, eval_every=10, floor=0, patience=0.5) == (5.0, 100)
    assert same_run(3301, "distill") and same_run(3301, "finetune")  # full MRPC: 621 steps either way
    assert not same_run(1000, "finetune")  # 189 steps -> the floor


def test_quality_cells_are_keyed_by_pooling():
    """A mean-pooled cell is a new cell beside the first-token one (rows from before pooling read the first token)."""
    from bench.common import cell_name, row_key, student_label

    old = {"task": "mrpc", "student": "layers2"}
    new = {**old, "pooling": "mean"}
    assert row_key(old) == ("minilm", "mrpc", "layers2", "first") != row_key(new)
    assert cell_name(*row_key(old)) == "mrpc-layers2" and cell_name(*row_key(new)) == "mrpc-layers2-mean"
    assert cell_name("mpnet", "rte", "layers4", "mean") == "mpnet-rte-layers4-mean"
    assert (student_label(old), student_label(new)) == ("layers2", "layers2 (mean)")


def test_default_run_reads_the_bytes_written_from_gnu_time() -> None:
    from bench import default_run

    report = "\tElapsed (wall clock) time (h:mm:ss or m:ss): 20:58.79\n\tFile system outputs: 28277376\n"
    assert default_run.elapsed_s(report) == pytest.approx(1258.79)
    assert default_run.written_gb(report) == 14.48  # 512-byte blocks
    assert default_run.written_gb("no such line") is None
    assert default_run.sum_or_none([1.0, 2.5]) == 3.5 and default_run.sum_or_none([1.0, None]) is None


def test_budget_page_describes_each_arm_by_the_settings_its_rows_recorded() -> None:
    """The page says what the rows ran, not what today's preset would run (the preset may change later)."""
    from bench.budget import _arm_text

    old = {"epochs": 3.0, "min_steps": 0, "patience_epochs": 0.0, "lr": 5e-05}
    new = {"epochs": 3.0, "min_steps": 600, "patience_epochs": 1.0, "lr": 5e-05}
    rows = [{"kind": "teacher", "arm": "old", "settings": old}, {"kind": "teacher", "arm": "new", "settings": new}]
    assert _arm_text(rows, "teacher", "old") == "3 epochs, no floor, no early stopping, lr 5e-05"
    assert _arm_text(rows, "teacher", "new").startswith("3 epochs, at least 600 steps, early stopping after 1 epochs")
    assert _arm_text(rows, "student", "long") == "not run yet"
    mixed = [*rows, {"kind": "teacher", "arm": "new", "settings": {**new, "lr": 1e-4}}]
    assert "differ" in _arm_text(mixed, "teacher", "new")


def test_budget_cells_are_keyed_by_their_pooling_and_new_epochs_come_from_the_old_arm() -> None:
    """A teacher cell fine-tuned with mean pooling is not the first-token cell of the same subset (rows from before
    pooling was recorded read the first token), and the new arm's passes over a subset are its steps against the
    old arm's steps per recorded epoch."""
    from bench.budget import _epochs, key_of

    first = {"kind": "teacher", "task": "mrpc", "size": 500, "seed": 0, "arm": "new"}
    mean = {**first, "pooling": "mean"}
    assert key_of(first) == ("teacher", "mrpc", "500/first", 0, "new")
    assert key_of(mean) == ("teacher", "mrpc", "500/mean", 0, "new")
    student = {"kind": "student", "task": "stsb", "student": "layers2", "pooling": "mean", "seed": 1, "arm": "old"}
    assert key_of(student) == ("student", "stsb", "layers2/mean", 1, "old")
    old = [{"steps": 72, "settings": {"epochs": 3.0}}, {"steps": 78, "settings": {"epochs": 3.0}}]
    assert _epochs(old, [{"steps": 600}, {"steps": 600}]) == "24.0"  # 25 steps per epoch on average
    assert _epochs([], [{"steps": 600}]) == "-"


def test_budget_tries_six_epochs_only_where_the_new_teacher_did_not_learn(monkeypatch) -> None:
    """The goal's condition ("where 6 epochs get it there") is measured, not assumed: a 6-epoch cell follows each
    new-budget teacher the guard left at the constant predictor, and the page sets the two side by side."""
    import argparse

    from bench import budget

    monkeypatch.setattr(budget, "_run_pooling", lambda: "mean")
    args = argparse.Namespace(seeds=1, parts=["teachers"], sizes=[500], tasks=["mrpc", "sst2"], students=[])
    base = {"kind": "teacher", "size": 500, "pooling": "mean", "seed": 0, "constant_dev": 81.22, "steps": 600}
    rows = [
        {**base, "task": "mrpc", "arm": "new", "dev": 81.0, "learned": False},
        {**base, "task": "sst2", "arm": "new", "dev": 79.6, "learned": True},
    ]
    keys = [key for key, _ in budget.cells(args, rows)]
    assert ("teacher", "mrpc", "500/mean", 0, "six") in keys
    assert ("teacher", "sst2", "500/mean", 0, "six") not in keys
    assert budget.six_epochs(rows) == []
    rows.append({**base, "task": "mrpc", "arm": "six", "dev": 83.5, "learned": True, "steps": 144})
    page = "\n".join(budget.six_epochs(rows))
    assert "| mrpc | 500 | 0 | 81.22 | 81.00 | no | 83.50 | yes | 144 |" in page
