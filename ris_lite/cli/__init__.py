"""``ris-lite train | evaluate | predict | score | export`` (also ``python -m ris_lite``).

Explained in the book chapters ``book/06_training`` and ``book/08_evaluation``. One module per
command (``train``, ``evaluate``, ``predict``), each adding its parser; what they share is in
``options``.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import evaluate, predict, train
from .options import CLIError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ris-lite", description="Recurrent Instance Segmentation, small.")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (train, evaluate, predict):
        command.add_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"ris-lite {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ris-lite {args.command}: interrupted (the last checkpoint is kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
