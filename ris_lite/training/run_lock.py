"""One writer per run folder: ``OUT/train.lock``, held while a run trains into ``OUT``.

Explained in the book chapter ``book/06_training`` (section "Checkpoints").

Two runs writing one folder would interleave ``log.csv`` and overwrite each other's
``last.pt``. The lock file is created atomically (``O_CREAT | O_EXCL``: of two runs starting
at once, exactly one creates it) and holds the process id of its run; it is removed when the
run ends, also on an error or Ctrl-C. A lock whose process is gone (a killed run) is stale:
the next run takes it over and says so. Processes are looked up on this machine only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

LOCK_NAME = "train.lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, under another user
        return True
    return True


def _read_pid(path: Path) -> Optional[int]:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


class RunLock:
    """``with RunLock(out):`` -- hold ``out/train.lock`` for the block (creating ``out``; a
    folder this lock created and left empty is removed again).

    Raises :class:`RunFolderBusy` when a live process holds it; a stale lock (its process
    gone, or no process id in it) is taken over with a note on stderr."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.created_folder = False

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return True

    def _younger_than(self, seconds: float) -> bool:
        """Whether the lock file was written in the last ``seconds`` (a run that has created
        it may not have written its process id yet)."""
        try:
            return time.time() - self.path.stat().st_mtime < seconds
        except FileNotFoundError:
            return False

    def acquire(self) -> None:
        self.created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._create():
            return
        pid = _read_pid(self.path)
        if (pid is not None and _pid_alive(pid)) or (pid is None and self._younger_than(5.0)):
            holder = f"process {pid}" if pid is not None else "a process starting now"
            raise RunFolderBusy(f"{self.folder} is in use by another training run ({holder}, lock file "
                                f"{self.path}): wait for it, or choose another --out")
        # stale: remove it only if it still names the dead process (another run may have
        # taken it over since), then create ours as any run would
        if _read_pid(self.path) == pid:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        if not self._create():
            raise RunFolderBusy(f"{self.folder} was just taken by another training run (lock file {self.path})")
        gone = f"process {pid} is gone" if pid is not None else "it holds no process id"
        print(f"note: took over the stale lock {self.path} ({gone}: a run that was killed)", file=sys.stderr)

    def release(self) -> None:
        if _read_pid(self.path) == os.getpid():
            self.path.unlink()
        if self.created_folder and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
