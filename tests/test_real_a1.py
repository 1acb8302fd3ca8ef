"""Issue #50: ``benchmarks/real_a1.py`` measures every row of the real-A1 table on an A1-format
folder by one command. Run end to end on the six-plant fixture (two fine-tuning steps), its JSON is
checked: the split, every row in range with per-plant rows that make its means, rows equal to what
the commands they name print, the constant guess recomputed from the label files, and the keys
book chapter 10 reads (the shipped ``real_a1_measured.json`` and this output alike)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ris_lite.cli import main
from ris_lite.model.checkpoint import load_checkpoint
from ris_lite.pretrained import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
A1 = REPO / "data" / "fixtures" / "cvppp_a1"
MEASURED = REPO / "ris_lite" / "pretrained" / "real_a1_measured.json"
METRICS = ("sbd", "fgbg_dice", "abs_dic", "dic")


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    """``(the JSON, the working folder it kept)`` of one run on the fixture, at 1 thread."""
    tmp = tmp_path_factory.mktemp("real_a1")
    before = sorted(p.name for p in A1.iterdir())
    subprocess.run([sys.executable, "benchmarks/real_a1.py", "--a1", str(A1), "--out", str(tmp / "real_a1.json"),
                    "--finetune-steps", "2", "--threads", "1", "--work", str(tmp / "work")],
                   cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, timeout=600)
    assert sorted(p.name for p in A1.iterdir()) == before  # nothing written into the reader's folder
    return json.loads((tmp / "real_a1.json").read_text()), tmp / "work"


def leaf_count(path: Path) -> int:
    """Leaves of one A1 label file: its distinct non-zero palette indices."""
    ids = np.unique(np.asarray(Image.open(path)))
    return int((ids != 0).sum())


def test_split_is_three_quarters_by_plant_id(benchmark):
    report, work = benchmark
    plants = sorted(p.name[:-len("_rgb.png")] for p in A1.glob("plant*_rgb.png"))
    data = report["data"]
    assert data["train_ids"] == plants[:4] and data["test_ids"] == plants[4:]
    assert set(data["validation_ids"]) < set(data["train_ids"]) and data["validation_ids"]
    for side, ids in (("TRAIN", plants[:4]), ("TEST", plants[4:])):
        assert sorted(p.name for p in (work / side).iterdir()) == sorted(
            f"{i}_{part}.png" for i in ids for part in ("fg", "label", "rgb"))
    assert report["measured_outside_this_repository"] is False  # the repository ships the fixture
    assert report["machine"]["threads"] == 1 and report["machine"]["cpu"] and report["date"]


def test_every_row_is_measured_per_plant(benchmark):
    report, work = benchmark
    rows = {r["key"]: r for r in report["rows"] + report["more_rows"]}
    assert [r["key"] for r in report["rows"]] == ["default", "rosettes_styles", "finetuned_default", "watershed"]
    others = {"rosettes", "rosettes_set", "rosettes_embedding"} - {DEFAULT_MODEL["name"]}
    assert set(rows) == {"default", "rosettes_styles", "finetuned_default", "watershed", "default_crf",
                         "default_frame_plant", "watershed_train", "finetuned_embedding", *others}
    test_ids = report["data"]["test_ids"]
    for key, row in rows.items():
        plants = row["per_plant"]
        assert [p["plant"] for p in plants] == test_ids and row["n_images"] == len(test_ids), key
        for p in plants:
            assert 0 <= p["sbd"] <= 1 and 0 <= p["fgbg_dice"] <= 1 and p["abs_dic"] == abs(p["dic"]), (key, p)
        for metric in METRICS:  # the means are the plants' (rounded to 4 places)
            assert row[metric] == pytest.approx(np.mean([p[metric] for p in plants]), abs=2e-4), (key, metric)
        assert row["sbd"] > 0.05 and row["fgbg_dice"] > 0.5, key  # every model finds the fixture's plants
        assert row["seconds"] > 0 and row["commands"] and row["what"], key
        assert all(c.startswith(("ris-lite ", "then ")) for c in row["commands"]), key
    assert rows["default_crf"]["crf"]["backend"] == "auto"
    for key in ("finetuned_default", "finetuned_embedding"):
        assert rows[key]["commands"][0].startswith("ris-lite train --data cvppp:TRAIN")
        assert "--max-steps 2 --batch-size 4" in rows[key]["commands"][0]
        assert isinstance(rows[key]["train_minutes"], int) and rows[key]["train_seconds"] > 0
    knobs = rows["finetuned_embedding"]["knobs"]
    assert rows["finetuned_embedding"]["knobs_chosen_on"]["val_plants"] == len(report["data"]["validation_ids"])
    model = load_checkpoint(work / "runs" / "finetune_rosettes_embedding" / "tuned.pt")["config"]["model"]
    assert (model["bandwidth"], model["min_cluster_size"]) == (knobs["bandwidth"], knobs["min_size"])
    assert rows["watershed_train"]["tuned_on"] == report["data"]["validation_ids"]


def test_rows_are_what_their_commands_print(benchmark, monkeypatch, capsys):
    report, work = benchmark
    monkeypatch.chdir(work)  # where the commands ran: cvppp:TEST, runs/...
    rows = {r["key"]: r for r in report["rows"] + report["more_rows"]}
    for key in ("default", "finetuned_default"):
        argv = rows[key]["commands"][-1].removeprefix("then ").split()[1:]
        assert main(argv) == 0
        printed = json.loads(capsys.readouterr().out)
        for metric in METRICS:
            assert rows[key][metric] == pytest.approx(printed[metric], abs=1e-4), (key, metric)
    assert main(rows["watershed"]["commands"][0].split()[1:]) == 0
    printed = json.loads(capsys.readouterr().out)["watershed"]
    assert rows["watershed"]["params"] == printed["params"]
    assert rows["watershed"]["sbd"] == pytest.approx(printed["sbd"], abs=1e-4)


def test_constant_guess_is_the_training_counts_best(benchmark):
    report, _ = benchmark
    train = [leaf_count(A1 / f"{i}_label.png") for i in report["data"]["train_ids"]]
    test = [leaf_count(A1 / f"{i}_label.png") for i in report["data"]["test_ids"]]
    cost = {c: np.mean([abs(c - n) for n in train]) for c in range(0, 256)}
    best = min(cost, key=lambda c: (cost[c], c))
    guess = report["constant_guess"]
    assert (guess["train_counts"], guess["test_counts"], guess["value"]) == (train, test, best)
    assert guess["abs_dic"] == pytest.approx(np.mean([abs(best - n) for n in test]))
    assert [p["dic"] for p in guess["per_plant"]] == [best - n for n in test]


def chapter_table(real_a1: dict) -> list:
    """What book chapter 10 takes from a real-A1 JSON (its print and glue cell)."""
    assert real_a1["measured_outside_this_repository"]
    lines = [f"{row['what']:50s} {100 * row['sbd']:6.1f} {100 * row['fgbg_dice']:6.1f} {row['abs_dic']:5.2f}"
             + "".join(f"\n    {command}" for command in row["commands"]) for row in real_a1["rows"]]
    assert f"{real_a1['rows'][2]['train_minutes']:d}"
    return lines


def test_the_chapter_reads_the_shipped_file_and_the_benchmarks(benchmark):
    report, _ = benchmark
    shipped = json.loads(MEASURED.read_text())
    assert shipped["command"].startswith("python benchmarks/real_a1.py --a1 PATH --out ")
    assert len(chapter_table(shipped)) == 4
    # a superset: every key the shipped file holds, at the top, in its data and in each of its rows
    assert set(shipped) <= set(report) and set(shipped["data"]) <= set(report["data"])
    ours = {r["key"]: r for r in report["rows"] + report["more_rows"]}
    for theirs in shipped["rows"] + shipped["more_rows"]:
        if theirs["key"] in ours:  # the shipped file also holds rows of checkpoints outside the benchmark
            assert set(theirs) <= set(ours[theirs["key"]]), theirs["key"]
    assert [r["key"] for r in report["rows"]] == [r["key"] for r in shipped["rows"]]
    assert len(chapter_table({**report, "measured_outside_this_repository": True})) == 4
