"""One stark process per run folder.

Two runs writing the same ``--out`` would overwrite each other's checkpoints and stage folders, so
every command that writes a run folder first takes an exclusive lock on ``<out>/.lock``. The lock
is an operating-system file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows): the kernel
releases it when the holder exits for any reason, ``kill -9`` included, so a dead run never leaves
a stale lock behind and re-running the same command resumes at once. The holder's PID is written
into the file only to make the refusal message useful; it is never trusted for the locking itself.

The lock also owns the run folder's creation: if the folder did not exist before and the command
fails before it wrote anything but the lock and the resolved config, the folder is removed again,
so refused input leaves nothing behind.

Usage::

    with RunLock(out, enabled=accelerator.is_main_process):
        ...  # the only stark process writing to ``out``
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

from stark.errors import StarkInputError
from stark.rundir.layout import RunDir, work_dir_of

LOCK_NAME = ".lock"
# What a failed start may leave in a folder it created; anything else is real work and is kept.
_SCAFFOLDING = frozenset({LOCK_NAME, "config.yaml", "config.yaml.tmp"})

# Locks held by this process, by resolved folder: {path: [file descriptor, nesting depth]}.
# ``flock`` conflicts between two descriptors of the same process, so nested ``RunLock``s on one
# folder (``stark rewind`` calling ``stark.pipeline.run``) share the first descriptor instead.
_held: dict[Path, list[int]] = {}

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _reason(exc: OSError) -> str:
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return "a file is in the way"
    return exc.strerror or type(exc).__name__


def make_run_folder(out: Path) -> None:
    """Create ``out`` (and its parents), turning OS errors into one-line input errors."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StarkInputError(f"--out {out} is a file, not a folder: choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StarkInputError(f"--out {out} cannot be created ({_reason(exc)}): choose another --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise StarkInputError(f"--out {out} is not writable: choose another --out")


def run_markers(out: Path) -> frozenset[str]:
    """Names of what a stark command writes at the top of a run folder: its saved options, summary, stage
    folders (finished or in progress) and the folders of sparse teachers, students and logit caches."""
    paths = RunDir(Path(out))
    stages = (paths.teacher, paths.student_init, paths.trial, paths.scores)
    groups = (paths.sparse_teacher(0).parent, paths.student(0, 1).parent.parent, paths.cache(None).parent)
    names = {"config.yaml", paths.summary.name}
    names |= {d.name for d in (*stages, *groups)} | {work_dir_of(d).name for d in stages}
    return frozenset(names)


def check_run_folder(out: Path) -> None:
    """Refuse an existing folder that holds files but nothing stark wrote: the run's stages would land among
    the user's files (and deleting the run folder later would take those along). A missing or empty folder
    is a new run; one with stark's config.yaml or a stage folder is a run to resume.

    Raises:
        StarkInputError: naming the folder and a few of the files in it.
    """
    out = Path(out)
    if not out.is_dir():
        return  # missing: the lock creates it; a file: make_run_folder refuses it
    try:
        names = {p.name for p in out.iterdir()} - {LOCK_NAME, "config.yaml.tmp"}
    except OSError as exc:
        raise StarkInputError(f"--out {out} cannot be read ({_reason(exc)}): choose another --out") from None
    if not names or names & run_markers(out):
        return
    shown = ", ".join(sorted(names)[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise StarkInputError(
        f"--out {out} is a folder with other files in it ({shown}), not a stark run folder: "
        "choose a new or empty folder"
    )


def holder_pid(out: Path) -> int | None:
    """The PID written by the process that holds (or last held) the lock of ``out``, if readable."""
    try:
        return int((Path(out) / LOCK_NAME).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """Exclusive, crash-safe lock on a run folder (a context manager; re-entrant within a process).

    Args:
        out: the run folder; created on entry if missing.
        enabled: False on every process but the main one of a multi-process launch, which all share
            the main process's lock (the launcher stops the others if the main one refuses).

    Raises:
        StarkInputError: on entry, if the folder cannot be created, holds other files but no stark run
            (``check_run_folder``) or another process holds the lock.
    """

    def __init__(self, out: str | Path, enabled: bool = True):
        self.out = Path(out)
        self.enabled = enabled
        self._key: Path | None = None
        self._created = False

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        check_run_folder(self.out)
        self._created = not self.out.exists()
        make_run_folder(self.out)
        key = self.out.resolve()
        if key in _held:
            _held[key][1] += 1
            self._key = key
            return self
        try:
            fd = os.open(self.out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self._cleanup()
            raise StarkInputError(f"--out {self.out}: cannot create its lock file ({_reason(exc)})") from None
        if not _try_lock(fd):
            os.close(fd)
            pid = holder_pid(self.out)
            who = f"another stark process (pid {pid})" if pid else "another stark process"
            raise StarkInputError(
                f"run folder {self.out} is in use by {who}; wait for it to finish or choose another --out"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[key] = [fd, 1]
        self._key = key
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._key is None:
            return
        entry = _held[self._key]
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[self._key]
        try:
            if exc_type is not None:
                self._cleanup()
        finally:
            # The file itself stays: deleting it while another process has it open would let two
            # processes hold locks on two different inodes of the "same" file.
            _unlock(entry[0])
            os.close(entry[0])

    def _cleanup(self) -> None:
        """Remove a folder this lock created if the failed command left only scaffolding in it."""
        if not self._created or not self.out.is_dir():
            return
        if {p.name for p in self.out.iterdir()} <= _SCAFFOLDING:
            shutil.rmtree(self.out, ignore_errors=True)
