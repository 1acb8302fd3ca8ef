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


def test_the_notebooks_are_exactly_the_chapters_of_the_toc():
    """Every chapter the TOC lists is a notebook here, and every notebook is a chapter of it."""
    chapters = {f for f in TOC_FILES if Path(f).name[:2].isdigit()}
    notebooks = {str(nb.relative_to(ROOT).with_suffix("")) for nb in NOTEBOOKS}
    assert notebooks == chapters, f"only in the TOC: {chapters - notebooks}; only on disk: {notebooks - chapters}"


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


# ---------------------------------------------------------------------------------------------
# Numbers in prose (issue 43): every number the prose states about our code or our runs comes
# from a stored result or a live output, so a re-run cannot leave a stale one behind.

_FENCE = re.compile(r"^(`{3,}|~{3,})(.*?)$(.*?)^\1\s*$", re.M | re.S)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$(?:\s*\([\w-]+\))?", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\$)[^$\n]+?(?<!\\)\$|\\\(.*?\\\)")
_CITE = re.compile(r"\{cite(?::\w+)?\}`[^`]*`")
_ROLE_OR_CODE = re.compile(r"(?:\{[\w:-]+\})?(`+)[^`].*?\1", re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+(?=[A-Z(*\[])|\n\s*\n|\n\s*(?:[*-]|\d+\.)\s+")
# a number right after these words names a part of a paper, not a measurement
_PART = re.compile(r"(?:Sec|Secs|Section|Fig|Figs|Table|Tables|eq|eqs|Eq|App|Appendix|Algorithm)\.?\s*$")
# a signed or unsigned number that is not part of a word or a name (A1, fc6, FCN-8s)
_NUMBER = r"(?:(?<![\w.,])[+\-−]|(?<![\w.,+\-−]))\d+(?:,\d{3})*(?:\.\d+)?"
_MEASURED = re.compile(
    rf"{_NUMBER}(?=\s?%)"  # a percentage
    rf"|(?:(?<![\w.,])[+\-−]|(?<![\w.,+\-−]))\d+\.\d+"  # a decimal
    rf"|{_NUMBER}(?=\s?[x×](?![\w])(?!\s*\d))"  # a ratio, 1.8x (not a size, 9 × 9)
    rf"|(?<![\w.,])\d{{1,3}}(?:,\d{{3}})+(?!\d)"  # a count with a thousands separator
    rf"|{_NUMBER}(?=\s?(?:images/s|img/s|seconds|s|ms|minutes|min)\b)"  # a time or a speed
    rf"|(?<=SBD\s){_NUMBER}|(?<=DiC\|\s){_NUMBER}|(?<=DiC\s){_NUMBER}|(?<=IoU\s){_NUMBER}"
    rf"|{_NUMBER}(?=\s(?:SBD|DiC|\|DiC\||IoU)\b)"  # any number beside a score
)
_OUTPUT_NUMBER = re.compile(r"[+\-−]?\d+(?:,\d{3})*(?:\.\d+)?")


def _normal(number: str) -> str:
    return number.replace(",", "").lstrip("+-−")


def _printed(cell: dict) -> set:
    """The numbers a code cell printed (stream text, text/plain results; glue data excluded)."""
    texts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            texts.append("".join(out["text"]))
        elif "scrapbook" not in out.get("metadata", {}):
            texts.append("".join(out.get("data", {}).get("text/plain", "")))
    return {_normal(n) for n in _OUTPUT_NUMBER.findall("\n".join(texts))}


def unsourced_numbers(markdown: str, printed_above: set = frozenset()) -> list:
    """The measured-looking numbers of a Markdown text that nothing vouches for.

    Measured-looking: a decimal (0.36), a percentage (13.7 %), a ratio (1.8x), a count with a
    thousands separator (18,041), or any number beside SBD, DiC, IoU, images/s, s, ms, seconds
    or minutes. Allowed where
    * it is glued, {glue:text}`key:.1f` (a role: code, like every other literal),
    * it is inside math ($...$, $$...$$) or code (`...`, fenced blocks), a literal,
    * the cell just above printed it (``printed_above``: the numbers of its outputs),
    * it is a **marked quote**: its sentence carries a {cite} role ({cite:p}`romera2016ris`),
      which says whose number it is (the paper's, or another paper's), or
    * it names a part of a paper (Sec. 4.2, Fig. 11, Table 2, eq. 5).
    Returns ``(number, sentence)`` pairs.
    """
    text = _FENCE.sub(lambda m: _directive_body(m.group(2), m.group(3)), markdown)
    text = re.sub(r"^\([\w-]+\)=\s*$", "", text, flags=re.M)  # labels
    text = _DISPLAY_MATH.sub(" MATH ", text)
    text = _INLINE_MATH.sub(" MATH ", text)
    text = _CITE.sub(" CITE ", text)
    text = _ROLE_OR_CODE.sub(" CODE ", text)
    found = []
    for sentence in _SENTENCE_END.split(text):
        if "CITE" in sentence:
            continue
        for m in _MEASURED.finditer(sentence):
            if _PART.search(sentence[:m.start()]) or _normal(m.group()) in printed_above:
                continue
            found.append((m.group(), " ".join(sentence.split())[:160]))
    return found


def _directive_body(info: str, body: str) -> str:
    """A MyST directive's content is prose (a figure's caption, a dropdown), its options are
    not; a plain code fence is code."""
    if not info.strip().startswith("{"):
        return " CODE "
    return re.sub(r"^:[\w-]+:.*$", "", body, flags=re.M)


def test_the_prose_number_check_finds_what_it_should():
    """The check on a page of known answers: each unsourced kind is caught, each allowed form passes."""
    caught = [n for n, _ in unsourced_numbers(
        "It is 1.8x faster. We saw 18,041 images. SBD 62 on test; 13.7 % of the foreground.\n"
        "It ran for 40 s at 3 images/s, with |DiC| 2 and a matched soft IoU 0.43, in 12 minutes.\n")]
    assert caught == ["1.8", "18,041", "62", "13.7", "40", "3", "2", "0.43", "12"]
    allowed = unsourced_numbers(
        "Glued: {glue:text}`sbd:.1f` %. Math $0.85$ and $$x = 0.8$$ (eq-x). Code `lr=5e-4`, ``2.5``.\n"
        "The paper reached SBD 56.8 % {cite:p}`romera2016ris`. See Sec. 4.2 and Table 2.\n"
        "A 9 × 9 filter on 106 × 100 pixels, 22 steps, batch 4, FCN-8s, leaf 1 second, A1, fc6.\n"
        "Printed above: 0.629.\n\n```bash\nris-lite train --max-steps 4500 --lr 0.002\n```\n"
        "```{figure} figures/x.png\n:width: 95%\n\nA caption.\n```\n", printed_above={"0.629"})
    assert allowed == []


PROSE_PAGES = [nb for nb in NOTEBOOKS] + [ROOT / "book" / "changes.md", ROOT / "book" / "glossary.md"]


@pytest.mark.parametrize("page", PROSE_PAGES, ids=lambda p: p.stem)
def test_numbers_in_prose_come_from_outputs(page):
    """Issue 43's rule on every chapter and on the reference pages that state results."""
    if page.suffix == ".md":
        found = unsourced_numbers(page.read_text())
    else:
        found, printed = [], set()
        for cell in json.loads(page.read_text())["cells"]:
            if cell["cell_type"] == "code":
                printed = _printed(cell)
            elif cell["cell_type"] == "markdown":
                found += unsourced_numbers("".join(cell["source"]), printed)
    assert not found, (f"{page.name}: {len(found)} numbers with no stored output behind them; glue them "
                       f"(myst_nb.glue + {{glue:text}}), print them in the cell above, or mark a quote "
                       f"with {{cite}}: " + "; ".join(f"{n!r} in {s!r}" for n, s in found[:8]))
