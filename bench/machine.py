"""The machine a timing ran on: matmul probes, others' load, the quiet-machine verdict, the environment.

A timing on a shared CPU means something only beside the state of the machine when it was taken. Every
timed cell of the studies carries ``machine_state()`` before and after it (``timed_cell``), and
``quiet`` judges from those two probes whether it was taken alone: the matmul probe near the CPU kind's
quiet peak (``PEAK_BY_CPU``), and no other job using the CPU when it started. ``environment`` is what a
results file records once about the software and hardware; ``Clock`` measures a cell's wall and CPU time;
``log`` prints a study's timestamped progress lines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REFERENCE_PEAK_GFLOPS = {1: 88.0, 2: 160.0}
"""fp32 2048^3 matmul GFLOP/s of the machine kind the earlier timings ran on, when nothing else runs
(measured, 1 and 2 threads; its CPU kind was not recorded then)."""
PEAK_BY_CPU = {
    "AMD EPYC family 25 model 1 stepping 1 (avx2 fma)": {2: 107.0},
    "Intel(R) Xeon(R) Processor family 6 model 167 stepping 8 (avx2 fma avx512f avx512_bf16 amx_tile)": {2: 200.0},
}
"""The same probe on later machine kinds, by ``provenance.cpu_kind()``: 2026-12-02, best of the probes taken
before three vanilla-KD timings while other jobs used 0.5-1 % of the CPU (101-107 GFLOP/s; 160 is out of
this kind's reach, so judging it by the first kind's peak marked every timing busy). The Intel kind of
2026-12-02: 201-204 GFLOP/s before and after a 16-minute default run with others at 0-0.5 % of the CPU
(likely the first kind too: its earlier default runs probed 189-200)."""


def log(study: str, msg: str) -> None:
    """One progress line of a long study, with the time of day (its output goes to a log file)."""
    print(f"[{study} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Clock:
    """Wall time and this process's CPU time (all threads) since it was made: on a shared CPU the CPU time
    is less disturbed by other jobs than the wall time."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def wall(self) -> float:
        return time.perf_counter() - self.wall0

    def cpu(self) -> float:
        return time.process_time() - self.cpu0


def reference_peak(cpu: str | None, threads: int) -> float | None:
    """The quiet-machine matmul probe of this CPU kind (the first kind's when unrecorded), or None."""
    if cpu is None:
        return REFERENCE_PEAK_GFLOPS.get(threads)
    return PEAK_BY_CPU.get(cpu, {}).get(threads)


def matmul_probe(n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of an n x n matmul on the current thread count (~0.5 s)."""
    return matmul_gflops(n, n, n, repeats)


def matmul_gflops(m: int, k: int, n: int, repeats: int) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of an (m x k) @ (k x n) matmul, after one untimed warm-up."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


def load_average() -> float:
    """The 1-minute load average (NaN where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def others_busy(window_s: float = 1.0) -> float | None:
    """Share of the machine's CPU time spent busy over ``window_s`` while this process sleeps: the load of
    other jobs, now. (The 1-minute load average also carries our own previous cell for a minute or two, so
    back-to-back cells of one benchmark looked busy by it.) None where /proc/stat does not exist."""

    def snapshot() -> tuple[int, int]:
        values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        return values[3] + values[4], sum(values)  # idle + iowait, all

    try:
        idle0, total0 = snapshot()
        time.sleep(window_s)
        idle1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    return round(1.0 - (idle1 - idle0) / max(1, total1 - total0), 3)


def machine_state() -> dict:
    """Others' CPU use, load average and a matmul probe: what a timing needs beside it to be believed."""
    import torch

    from stark.rundir.provenance import cpu_kind

    threads, cpu = torch.get_num_threads(), cpu_kind()
    return {
        "cpu": cpu,
        "others_busy": others_busy(),
        "load_avg_1m": round(load_average(), 2),
        "threads": threads,
        "matmul_gflops": round(matmul_probe(), 1),
        "reference_gflops": reference_peak(cpu, threads),
    }


def quiet(before: dict, after: dict, share: float = 0.85, busy: float = 0.15) -> bool:
    """A timing was taken alone: the probe reached ``share`` of the reference peak before and after, and
    nothing else used the CPU when it started (others under ``busy`` of it over a second while we slept;
    records without that measure fall back to a 1-minute load average under 1)."""
    # Judged by the record's own CPU kind where known; otherwise by the reference stored with it.
    known = reference_peak(before["cpu"], before.get("threads", 2)) if "cpu" in before else None
    ref = known or before.get("reference_gflops")
    if ref is None:
        return False
    probes_ok = min(before["matmul_gflops"], after["matmul_gflops"]) >= share * ref
    others = before.get("others_busy")
    alone = others < busy if others is not None else before["load_avg_1m"] < 1.0
    return probes_ok and alone


def settle(max_wait_s: float = 240.0, below: float = 1.0) -> float:
    """Wait (at most ``max_wait_s``) until the 1-minute load average falls below ``below``: a timing that
    starts right after our own heavy step would otherwise be marked busy by our own load. Returns it."""
    deadline = time.monotonic() + max_wait_s
    while load_average() >= below and time.monotonic() < deadline:
        time.sleep(5)
    return load_average()


def timed_cell(fn: Callable[[], T]) -> tuple[T, dict]:
    """Run ``fn()`` between two machine probes; returns (its result, {"before", "after", "quiet"})."""
    before = machine_state()
    result = fn()
    after = machine_state()
    return result, {"before": before, "after": after, "quiet": quiet(before, after)}


def machine_line(machine: dict) -> str:
    """The machine state around a timing, in words: load, matmul probe, and whether it can be believed."""
    b, a = machine["before"], machine["after"]
    verdict = "quiet" if machine["quiet"] else "BUSY, not a valid timing"
    return (
        f"load {b['load_avg_1m']} -> {a['load_avg_1m']}, matmul {b['matmul_gflops']} -> {a['matmul_gflops']} "
        f"GFLOP/s: {verdict}"
    )


def environment(*packages: str) -> dict:
    """What a results file records once about where it ran: stark's own ``versions()`` (libraries, Python,
    CPU kind), the version of each of ``packages`` (or why it failed to import: the other cells still run),
    the visible cores and torch's thread count."""
    import importlib

    import torch

    from stark.rundir.provenance import versions

    env: dict = dict(versions())
    for name in packages:
        try:
            env[name] = importlib.import_module(name).__version__
        except Exception as exc:  # reported, not fatal: a peer that fails to import costs only its own cells
            env[name] = f"import failed: {type(exc).__name__}: {exc}"
    env["cores_visible"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env["torch_threads"] = torch.get_num_threads()
    return env
