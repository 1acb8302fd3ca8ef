"""Sphinx extension for the API reference (``book/api.md``).

* Every module's docstring names the chapter that explains it (``tests/test_book.py`` checks
  that), written ``book/06_training`` or ````06_training````; here each such name becomes a
  link to the chapter, so the reference page leads back to the book.
* ``{ris-lite-help}`` puts the ``--help`` text of ``ris-lite`` and of each of its commands on
  the page, from the command's own parser at build time, so it cannot drift from the code.
* Two habits of the docstrings that reStructuredText misreads are mended before napoleon
  parses them: ``|DiC|`` (the book's notation for the absolute difference in count) would be a
  substitution reference, and a note at the start of an attribute's comment ("ours, not the
  paper's: ...", "fcn8s only: ...") would be taken by napoleon for the attribute's *type*, a
  cross-reference that cannot resolve (the build is ``nitpicky``).
"""

from __future__ import annotations

import argparse
import os
import re

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

# ``book/06_training`` (with or without the literal's backticks) or ``06_training``
_CHAPTER = re.compile(r"``book/(\d\d_\w+)``|``(\d\d_\w+)``|(?<![\w/`])book/(\d\d_\w+)")


# what napoleon may take for a type: a class or dotted name, or a builtin, optionally subscripted
_TYPE = re.compile(r"^(?:[A-Z_][\w.]*|[a-z_]\w*(?:\.\w+)+|int|float|str|bool|bytes|list|tuple|dict|set|None)"
                   r"(?:\[.*\])?$")
_ABS_DIC = re.compile(r"(?<!\\)\|DiC\|")
_LITERAL = re.compile(r"(``.*?``)")


def _escape_abs_dic(app, what, name, obj, options, lines) -> None:
    """``|DiC|`` outside ``literals`` becomes ``\\|DiC\\|``, which reST prints as written."""
    lines[:] = ["".join(part if k % 2 else _ABS_DIC.sub(r"\\|DiC\\|", part)
                        for k, part in enumerate(_LITERAL.split(line))) for line in lines]


def _notes_are_not_types(app, what, name, obj, options, lines) -> None:
    """After napoleon: the ``:type:`` lines that are no type go back into the text, in order.

    Napoleon splits ``note: text`` at each colon, nesting, so ``"first" (the paper: first
    claim) or "argmax" (ours: ...)`` comes out as two ``:type:`` lines and the rest."""
    if what not in ("attribute", "data", "property"):
        return
    notes = [line[len(":type: "):].strip() for line in lines
             if line.startswith(":type: ") and not _TYPE.match(line[len(":type: "):].strip())]
    if not notes:
        return
    lines[:] = [line for line in lines if not (line.startswith(":type: ") and line[len(":type: "):].strip() in notes)]
    first = next((k for k, text in enumerate(lines) if text.strip()), None)
    if first is None:
        lines.insert(0, ": ".join(notes))
    else:
        lines[first] = ": ".join([*notes, lines[first]])


def _chapter_links(app, what, name, obj, options, lines) -> None:
    """Turn each chapter name of a docstring into a ``:doc:`` link to that chapter."""
    def link(m: re.Match) -> str:
        chapter = m.group(1) or m.group(2) or m.group(3)
        return f":doc:`/book/{chapter}`"  # the chapter's title as the link's text

    lines[:] = [_CHAPTER.sub(link, line) for line in lines]


class RisLiteHelp(SphinxDirective):
    """The ``--help`` of ``ris-lite`` and of every command, as literal blocks."""

    def run(self) -> list:
        from ris_lite.cli import build_parser

        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"  # argparse wraps at $COLUMNS: the same text on every machine
        try:
            parser = build_parser()
            commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            texts = [parser.format_help()] + [p.format_help() for p in commands.choices.values()]
        finally:
            if old is None:
                os.environ.pop("COLUMNS")
            else:
                os.environ["COLUMNS"] = old
        blocks = []
        for text in texts:
            block = nodes.literal_block(text, text)
            block["language"] = "text"
            blocks.append(block)
        return blocks


def setup(app):
    app.connect("autodoc-process-docstring", _escape_abs_dic, priority=400)  # before napoleon (500)
    app.connect("autodoc-process-docstring", _notes_are_not_types, priority=600)  # after it
    app.connect("autodoc-process-docstring", _chapter_links)
    app.add_directive("ris-lite-help", RisLiteHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
