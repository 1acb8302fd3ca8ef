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
