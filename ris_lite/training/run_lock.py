"""One writer per run folder: ``OUT/train.lock``, held while a run trains into ``OUT``.

Explained in the book chapter ``book/06_training`` (section "Checkpoints").

Two runs writing one folder would interleave ``log.csv`` and overwrite each other's
``last.pt``. The lock file is created atomically (``O_CREAT | O_EXCL``: of two runs starting
at once, exactly one creates it) and says who holds it, as JSON: the process id, the host, the
process's start time (``start``, in clock ticks since boot from ``/proc``: it tells a reused id),
when the run took the folder (``started``) and its command line. It is removed when the run
ends, also on an error, Ctrl-C or SIGTERM.

A lock is *stale*, and the next run takes it over and says so, when its process is gone, or when
the process now holding that id is another one: its start time or command line differ from the
lock's (an id reused, e.g. pid 1 after a container restarts). A lock written before the lock
held more than the id (the pid alone) is stale unless that process is a ``ris-lite train`` of
this very folder. A lock of another host cannot be checked from here and counts as held.
Processes are looked up in ``/proc`` where there is one; elsewhere a live id counts as held.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
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


def _proc_start(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # after the command name, which may hold spaces


def _proc_argv(pid: int) -> Optional[list]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _trains_folder(pid: int, argv: list, folder: Path) -> bool:
    """Whether ``argv`` (process ``pid``'s command line) is a ``ris-lite train`` writing ``folder``."""
    if "train" not in argv or not any("ris_lite" in a or "ris-lite" in a for a in argv):
        return False
    out = "runs/ris"  # train's default --out
    for i, a in enumerate(argv):
        if a == "--out" and i + 1 < len(argv):
            out = argv[i + 1]
        elif a.startswith("--out="):
            out = a.partition("=")[2]
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return True  # its working folder is hidden from us: it may be this folder
    return (Path(cwd) / out).resolve() == folder.resolve()


def _read(path: Path) -> Optional[dict]:
    """The lock's record (``{"pid": ...}`` alone for a lock of the old format), or None when it
    is gone or holds neither."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if text.isdigit():
        return {"pid": int(text)}
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def _gone_because(record: dict, folder: Path) -> Optional[str]:
    """Why the lock ``record`` is stale, or None when its process may still be training here."""
    pid = record["pid"]
    if record.get("host", socket.gethostname()) != socket.gethostname():
        return None
    if not _pid_alive(pid):
        return f"process {pid} is gone"
    argv, start = _proc_argv(pid), _proc_start(pid)
    if argv is None:  # no /proc: a live id is all we can tell
        return None
    if "start" not in record:  # the old lock: the pid alone
        return None if _trains_folder(pid, argv, folder) else f"process {pid} is not a ris-lite train of {folder}"
    if record["start"] != start:
        return f"process {pid} started after the lock was written: its id was reused"
    if record.get("command") != shlex.join(argv):
        return f"process {pid} is another program now ({shlex.join(argv)[:80]})"
    return None


def _this_process() -> dict:
    argv = _proc_argv(os.getpid()) or [sys.executable, *sys.argv]
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _proc_start(os.getpid()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": shlex.join(argv)}


class RunLock:
    """``with RunLock(out):`` -- hold ``out/train.lock`` for the block (creating ``out``; a
    folder this lock created and left empty is removed again).

    Raises :class:`RunFolderBusy` when a live process holds it; a stale lock (module docstring)
    is taken over with a note on stderr."""

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
            f.write(json.dumps(_this_process()) + "\n")
        return True

    def _younger_than(self, seconds: float) -> bool:
        """Whether the lock file was written in the last ``seconds`` (a run that has created
        it may not have written its record yet)."""
        try:
            return time.time() - self.path.stat().st_mtime < seconds
        except FileNotFoundError:
            return False

    def _busy(self, record: Optional[dict]) -> RunFolderBusy:
        if record is None:
            holder = "a process starting now"
        else:
            holder = ", ".join([f"process {record['pid']}"] + [f"{k} {record[k]}" for k in ("host", "started")
                                                              if k in record])
            holder += f": {record['command']}" if "command" in record else ""
        return RunFolderBusy(f"{self.folder} is in use by another training run ({holder}; lock file {self.path}): "
                             f"wait for it, or choose another --out; if that process does not train here, "
                             f"delete {self.path}")

    def acquire(self) -> None:
        self.created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._create():
            return
        record = _read(self.path)
        gone = "it holds no process id" if record is None else _gone_because(record, self.folder)
        if gone is None or (record is None and self._younger_than(5.0)):
            raise self._busy(record)
        # stale: remove it only if it still holds what we judged (another run may have taken
        # it over since), then create ours as any run would
        if _read(self.path) == record:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        if not self._create():
            raise RunFolderBusy(f"{self.folder} was just taken by another training run (lock file {self.path})")
        print(f"note: took over the stale lock {self.path} ({gone}: a run that was killed)", file=sys.stderr)

    def release(self) -> None:
        record = _read(self.path)
        if record is not None and record["pid"] == os.getpid():
            self.path.unlink()
        if self.created_folder and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
