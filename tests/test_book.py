"""The book's structure: pairs in sync, kernelspecs, the Colab cell, clean stored outputs, the TOC."""

import json
import re
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").glob("*.ipynb"))
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def _toc_files(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("file", "root"):
                yield v
            else:
                yield from _toc_files(v)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


TOC_FILES = set(_toc_files(TOC))


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 7


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_is_in_sync(nb):
    """Regenerate the .py from the .ipynb and compare (timestamps can't be trusted in a clone)."""
    py = nb.with_suffix(".py")
    assert py.exists(), f"{nb.name} has no .py pair"
    regenerated = jupytext.writes(jupytext.read(nb), fmt="py:percent")
    assert regenerated.strip() == py.read_text().strip(), f"{py.name} and {nb.name} differ: run `jupytext --sync`"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_executed_cleanly_and_complete(nb):
    data = json.loads(nb.read_text())
    assert data["metadata"].get("kernelspec", {}).get("name"), "no kernelspec (Colab needs one)"
    code = [c for c in data["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in code]
    assert None not in counts, "cells without stored outputs"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), "cells executed out of order"
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"stored errors: {errors[:1]}"
    warnings = [o for c in code for o in c["outputs"] if o.get("name") == "stderr" and "Warning" in "".join(o["text"])]
    assert not warnings, "stored warnings (they carry paths and PIDs that break nbval)"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_cell_uses_the_one_repository_url(nb):
    src = "".join(json.loads(nb.read_text())["cells"][1]["source"])
    assert '"google.colab" in sys.modules' in src and "-m\", \"pip\", \"install\"" in src
    assert "%pip" not in src and "-e" not in src.split()
    url = re.search(r'REPO = "([^"]+)"', src).group(1)
    assert url == CONFIG["repository"]["url"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_is_in_the_toc_and_ends_with_back_references(nb):
    assert str(nb.relative_to(ROOT).with_suffix("")) in TOC_FILES
    text = nb.with_suffix(".py").read_text()
    assert "## Exercises" in text and "## What this chapter built in `ris_lite`" in text


def test_toc_lists_no_missing_file():
    for f in TOC_FILES:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".ipynb", ".md")), f"_toc.yml lists missing {f}"


def test_config_renders_from_stored_outputs():
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["only_build_toc_files"] is True
    assert CONFIG["launch_buttons"]["colab_url"]


def test_every_module_names_its_chapter():
    """Each module, and each folder's ``__init__``, names the chapter(s) that explain it."""
    chapters = {p.stem for p in (ROOT / "book").glob("*.py")}
    for mod in (ROOT / "ris_lite").rglob("*.py"):
        if mod.relative_to(ROOT).as_posix() in ("ris_lite/__init__.py", "ris_lite/__main__.py"):
            continue
        doc = mod.read_text().split('"""')[1]
        named = set(re.findall(r"book/(\w+)", doc)) | set(re.findall(r"``(\d\d_\w+)``", doc))
        assert named, f"{mod.relative_to(ROOT)}: the docstring does not name a chapter"
        assert named <= chapters, f"{mod.relative_to(ROOT)} names chapters that do not exist: {named - chapters}"


def test_chapter_files_are_numbered_in_reading_order():
    """Two-digit prefixes 01, 02, ... follow `_toc.yml`, so a Colab user opens them in order."""
    chapters = [f for f in _toc_files(TOC) if Path(f).name[:2].isdigit()]
    assert [Path(f).name[:2] for f in chapters] == [f"{k:02d}" for k in range(1, len(chapters) + 1)]


def _prose(path: Path) -> str:
    """The Markdown a reader sees: whole .md files, markdown cells of .py pairs."""
    if path.suffix == ".md":
        return path.read_text()
    return "\n".join("".join(c["source"]) for c in jupytext.read(path).cells if c["cell_type"] == "markdown")


@pytest.mark.parametrize("page", sorted((ROOT / "book").glob("*.py")) + sorted((ROOT / "book").glob("*.md")),
                         ids=lambda p: p.name)
def test_prose_cross_references_by_role_not_by_typed_number(page):
    """Chapter, section and equation numbers come from Sphinx; only the paper's own are typed."""
    text = _prose(page)
    assert "\\tag{" not in text, "\\tag inside $$ breaks MathJax in Sphinx's split environment: use $$ ... $$ (label)"
    typed = re.findall(r"(?i)\b(?:chapters?|sections?|ch\.)\s+\d+", text)
    assert not typed, f"typed chapter/section numbers: {typed[:3]}"
    bare = re.findall(r"(?i)\b(?:solves?|see|in|by|from|of|and|to) \(\d+(?:\.\d+)?\)", text)
    assert not bare, f"typed equation numbers in brackets: {bare[:3]}"
    for m in re.finditer(r"\beqs?\.\s+\(?\d", text):
        assert "paper's" in text[max(0, m.start() - 12):m.start()], f"typed equation number: {text[m.start() - 30:m.end() + 10]!r}"


def test_every_reference_has_a_title_a_venue_and_a_year():
    bib = (ROOT / "book" / "references.bib").read_text()
    entries = re.findall(r"@\w+\{(\w+),(.*?)\n\}", bib, re.S)
    assert len(entries) >= 20
    for key, body in entries:
        fields = set(re.findall(r"^\s+(\w+) = ", body, re.M))
        assert "title" in fields and "year" in fields, f"{key}: no title or year"
        assert fields & {"booktitle", "journal", "howpublished"}, f"{key}: no venue"
