"""Issue 49's DATA LOSS rows, run the way a hostile tester ran them, on copies of the project's
fixtures: every input file (the data, the runs, the shipped models) keeps its md5.

Each row builds its own scene in ``tmp_path`` (a copy of ``data/fixtures/cvppp_a1``, two tiny
runs, a copy of the shipped ``rosettes`` files laid out as a checkout's ``ris_lite/pretrained``),
records the md5 of every file there, runs the command and compares. What a command may add is
named per row; it must not change or remove anything that was there.
"""

import hashlib
import shutil
from pathlib import Path

import pytest
from test_bad_input import TINY_RUN

from ris_lite.cli import main

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "data" / "fixtures" / "cvppp_a1"
SHIPPED = ("rosettes.pt", "rosettes_config.json", "rosettes_log.csv", "rosettes_curve.csv")


def md5s(root: Path) -> dict:
    """``{path: md5}`` of every file under ``root`` (links are read through, as a reader would)."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs of different seeds, trained once; each row works on copies."""
    root = tmp_path_factory.mktemp("hostile_runs")
    for name, seed in (("r0", "0"), ("r3", "3")):
        assert main(["train", "--out", str(root / name), *TINY_RUN, "--seed", seed]) == 0
    return root


@pytest.fixture
def scene(runs, tmp_path, monkeypatch):
    """The user's files: the data, two runs and a checkout's shipped models; the working
    directory is the checkout's root (an editable install)."""
    shutil.copytree(FIXTURE, tmp_path / "a1")
    for name in ("r0", "r3"):
        shutil.copytree(runs / name, tmp_path / name)
    shipped = tmp_path / "ris_lite" / "pretrained"
    shipped.mkdir(parents=True)
    for name in SHIPPED:
        shutil.copy(REPO / "ris_lite" / "pretrained" / name, shipped / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def links_into_the_labels(scene: Path) -> list:
    out = scene / "links"
    out.mkdir()
    for label in sorted((scene / "a1").glob("*_label.png"))[:2]:
        (out / label.name).symlink_to(label)
    return ["predict", "--data", "cvppp:a1", "--out", "links", "--max-steps", "1", "--quiet"]


#: row -> (the command in a scene, the paths it may add)
ROWS = {
    "predict through links to the labels": (links_into_the_labels, ()),
    "resume one run into another's folder": (
        lambda scene: ["train", "--resume", "r0/last.pt", "--out", "r3", "--max-steps", "3", "--quiet"], ()),
    "export with the default --out": (lambda scene: ["export", "--run", "r0"], ("exported",)),
    "export over the shipped models": (
        lambda scene: ["export", "--run", "r0", "--out", "ris_lite/pretrained"], ()),
    "export over its own checkpoint": (
        lambda scene: ["export", "--run", "r0", "--out", "r0", "--name", "last", "--force"], ()),
    "export out of --out by --name": (
        lambda scene: ["export", "--run", "r0", "--out", "r3", "--name", "../r0/last"], ()),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_no_input_file_changes(scene, row, capsys):
    command, may_add = ROWS[row]
    argv = command(scene)
    before = md5s(scene)
    status = main(argv)
    err = capsys.readouterr().err
    after = md5s(scene)
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"{row}: {' '.join(argv)} (exit {status}) changed or removed {changed}"
    added = sorted(p for p in after if p not in before and not p.startswith(may_add or ("\0",)))
    assert not added, f"{row}: {' '.join(argv)} wrote {added}"
    if status:  # a refusal is one clear line
        assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
