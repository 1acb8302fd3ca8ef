"""Run benchmark arms two at a time, one process per core (used by the ablation scripts)."""

from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Sequence


def run_in_pairs(target: Callable, names: Sequence[str], *args) -> None:
    """``target(name, *args)`` for every name, two spawned processes at a time.

    If the parent is interrupted (Ctrl-C, an exception), the running workers are stopped too,
    so no orphan keeps a core busy and skews the next measurement.
    """
    ctx = mp.get_context("spawn")
    for i in range(0, len(names), 2):
        procs = [ctx.Process(target=target, args=(n, *args)) for n in names[i:i + 2]]
        try:
            for q in procs:
                q.start()
            for q in procs:
                q.join()
        finally:
            for q in procs:
                if q.is_alive():
                    q.terminate()
