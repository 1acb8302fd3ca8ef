"""``ris-lite train | evaluate | predict | score | export`` (also ``python -m ris_lite``).

Explained in the book chapters ``book/06_training`` and ``book/08_evaluation``. One module per
command (``train``, ``evaluate``, ``predict``), each adding its parser; what they share is in
``options``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager
from typing import List, Optional, Set

from . import evaluate, predict, train
from .options import CLIError, check_numbers


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ris-lite", description="Recurrent Instance Segmentation, small.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (train, evaluate, predict):
        command.add_parser(sub)
    return p


def given_options(argv: List[str], command: str) -> Set[str]:
    """The options named on the command line, whatever their value: a second parse of the
    command's arguments in which no option has a default (``train --resume`` refuses the
    flags it would ignore, and must tell ``--batch-size 1`` typed from the default 1)."""
    sub = next(x for x in build_parser()._actions if isinstance(x, argparse._SubParsersAction)).choices[command]
    options = {x.dest for x in sub._actions if x.option_strings}
    for x in sub._actions:
        x.default = argparse.SUPPRESS
    return options & set(vars(sub.parse_args(argv[argv.index(command) + 1:])))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch system's time limit), raised where the process stands so that it
    ends as Ctrl-C does: a training run saves its checkpoint and releases its folder."""


def _terminate(signum, frame) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` (only the main thread may set a
    signal handler: elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.given = given_options(argv, args.command)
    try:
        with sigterm_as_interrupt():
            check_numbers(args)
            return args.func(args)
    except CLIError as e:
        print(f"ris-lite {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"ris-lite {args.command}: terminated by SIGTERM (a training run saved its last checkpoint first)",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"ris-lite {args.command}: interrupted (the last checkpoint is kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
