"""Issue 49, part one: nothing a user has is lost. The rows of the issue's table about what
``ris-lite`` writes -- through links, over another run, over the shipped models, over its own
input -- about training that diverges, and about the run folder's lock; one test (or case) per
row, each failing on the code before the change (``test_hostile_writers.py`` runs the DATA LOSS
rows again, checking every input file's md5)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_bad_input import A1, TINY_RUN, a1_copy, one_line_error

from ris_lite.cli import main
from ris_lite.data.cvppp import write_label_png
from ris_lite.model.ris import RISConfig
from ris_lite.training.config import TrainConfig
from ris_lite.training.trainer import Trainer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-step training run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("writers") / "run"
    assert main(["train", "--out", str(out), *TINY_RUN]) == 0
    return out


@pytest.fixture
def run_copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def contents(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----- DATA LOSS ----------------------------------------------------------------------------
def test_predict_never_writes_through_a_link_into_the_data(tmp_path, capsys):
    root = a1_copy(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("plant003", "plant010"):  # links named as predict's outputs, pointing at the truth
        (out / f"{name}_label.png").symlink_to(root / f"{name}_label.png")
    before = contents(root)
    one_line_error(["predict", "--data", f"cvppp:{root}", "--out", str(out), "--max-steps", "1", "--quiet"],
                   capsys, "--out", "plant003_label.png", "link")
    assert contents(root) == before


def test_label_writers_replace_a_link_never_write_through_it(tmp_path):
    target = tmp_path / "kept.png"
    shutil.copy(A1 / "plant003_label.png", target)
    link = tmp_path / "pred_label.png"
    link.symlink_to(target)
    write_label_png(torch.zeros(4, 5, dtype=torch.int64), link)
    assert target.read_bytes() == (A1 / "plant003_label.png").read_bytes()
    assert not link.is_symlink() and link.is_file()


def test_resume_into_another_runs_folder_is_refused(run, tmp_path, capsys):
    other = tmp_path / "r3"
    assert main(["train", "--out", str(other), *TINY_RUN, "--seed", "3"]) == 0
    capsys.readouterr()
    before = contents(other)
    one_line_error(["train", "--resume", str(run / "last.pt"), "--out", str(other), "--max-steps", "3", "--quiet"],
                   capsys, "--out", str(other), "another run")
    assert contents(other) == before


def test_resume_into_a_new_folder_is_allowed(run, tmp_path, capsys):
    out = tmp_path / "copy"
    assert main(["train", "--resume", str(run / "last.pt"), "--out", str(out), "--max-steps", "3", "--quiet"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["trainer"]["step"] == 3


def test_export_by_default_never_writes_the_shipped_models(run, tmp_path, monkeypatch, capsys):
    """From a checkout's root (an editable install), the old default --out was the package's own
    ``ris_lite/pretrained``: ``load_pretrained()`` then loaded the export."""
    shipped = tmp_path / "ris_lite" / "pretrained"
    shipped.mkdir(parents=True)
    for name in ("rosettes.pt", "rosettes_config.json", "rosettes_log.csv"):
        shutil.copy(Path(__file__).resolve().parents[1] / "ris_lite" / "pretrained" / name, shipped / name)
    before = contents(shipped)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--run", str(run)]) == 0
    assert contents(shipped) == before
    assert (tmp_path / "exported" / "rosettes.pt").is_file()


def test_export_refuses_to_overwrite_without_force(run, tmp_path, capsys):
    out = tmp_path / "shipped"
    assert main(["export", "--run", str(run), "--out", str(out), "--name", "mini"]) == 0
    (out / "mini_log.csv").write_text("kept\n")
    before = contents(out)
    capsys.readouterr()
    one_line_error(["export", "--run", str(run), "--out", str(out), "--name", "mini"], capsys, "--force", "mini.pt")
    assert contents(out) == before
    assert main(["export", "--run", str(run), "--out", str(out), "--name", "mini", "--force"]) == 0
    assert (out / "mini_log.csv").read_bytes() == (run / "log.csv").read_bytes()


def test_export_into_the_installed_package_needs_force(run, tmp_path, capsys):
    from ris_lite.pretrained import pretrained_path

    package = pretrained_path("rosettes").parent
    try:
        one_line_error(["export", "--run", str(run), "--out", str(package), "--name", "never_shipped"], capsys,
                       "--force", str(package))
    finally:  # a failure of this test must not leave files in the package
        written = sorted(package.glob("never_shipped*"))
        for p in written:
            p.unlink()
    assert not written


def test_export_over_its_own_checkpoint_is_refused(run_copy, capsys):
    before = contents(run_copy)
    for force in ([], ["--force"]):
        one_line_error(["export", "--run", str(run_copy), "--out", str(run_copy), "--name", "last", *force], capsys,
                       "last.pt", "--name")
    assert contents(run_copy) == before
    assert main(["train", "--out", str(run_copy), "--resume", "auto", "--max-steps", "3", "--quiet"]) == 0


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ""])
def test_export_name_cannot_leave_out(run, tmp_path, capsys, name):
    out = tmp_path / "deep" / "out"
    one_line_error(["export", "--run", str(run), "--out", str(out), "--name", name], capsys, "--name")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# ----- CRASH: export's --out ------------------------------------------------------------------
@pytest.mark.parametrize("where", ["file", "proc"])
def test_export_out_that_cannot_be_a_folder(run, tmp_path, capsys, where):
    out = tmp_path / "a_file" if where == "file" else Path("/proc/x")
    if where == "file":
        out.write_text("mine\n")
    one_line_error(["export", "--run", str(run), "--out", str(out)], capsys, "--out", str(out))
    if where == "file":
        assert out.read_text() == "mine\n"


# ----- CRASH: non-finite training -------------------------------------------------------------
def test_a_diverging_run_stops_saves_nothing_and_the_corrected_rerun_starts(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY_RUN, "--lr", "1e10"]) == 2
    started, *rest = capsys.readouterr().err.strip().splitlines()  # the run had started: one line says so
    assert started.startswith("training on") and len(rest) == 1, rest
    assert rest[0].startswith("ris-lite train: error: training diverged at step 2") and "--lr 1e+10" in rest[0]
    assert not (out / "last.pt").exists() and not (out / "train.lock").exists()
    assert main(["train", "--out", str(out), *TINY_RUN]) == 0  # the corrected command


@pytest.mark.parametrize("flag,value", [("--overlap-weight", "nan"), ("--monotonic-weight", "inf"),
                                        ("--overlap-weight", "-inf")])
def test_non_finite_loss_weights_are_refused_before_anything_is_written(tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    one_line_error(["train", "--out", str(out), *TINY_RUN, f"{flag}={value}"], capsys, flag, value)
    assert not out.exists()


def test_the_trainer_stops_on_the_first_non_finite_step(tmp_path):
    from ris_lite.training.divergence import TrainingDiverged

    cfg = TrainConfig(model=RISConfig(channels=4).to_dict(), curriculum=[[2, 1, 3]], batch_size=1,
                      train_images=2, val_images=2, lr=1e10)
    trainer = Trainer(cfg, tmp_path / "run")
    with pytest.raises(TrainingDiverged, match="step 2") as e:
        trainer.run(max_steps=5, progress=False)
    assert e.value.step == 2 and "lr" in e.value.suspects
    assert trainer.step == 1  # the failed step is not counted
    assert not (tmp_path / "run" / "last.pt").exists()
    with pytest.raises(ValueError, match="overlap_weight"):
        TrainConfig(overlap_weight=float("nan"))


# ----- MINOR: SIGTERM -------------------------------------------------------------------------
def test_sigterm_saves_releases_the_lock_and_exits_143(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "ris_lite", "train", "--out", str(out), *TINY_RUN, "--max-steps", "100000",
            "--eval-every", "100000"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # until a logged step: training has begun
        if (out / "log.csv").is_file() and len((out / "log.csv").read_text().splitlines()) > 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM" in err
    assert not (out / "train.lock").exists()
    assert torch.load(out / "last.pt", weights_only=True)["trainer"]["step"] >= 10


# ----- UNCLEAR: the lock ----------------------------------------------------------------------
def test_the_lock_says_who_holds_it(tmp_path):
    from ris_lite.training.run_lock import RunLock

    with RunLock(tmp_path / "run") as lock:
        held = json.loads(lock.path.read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert held["started"] and held["command"]


def test_a_busy_folder_names_its_lock_and_how_to_clear_it(run_copy, capsys):
    from ris_lite.training.run_lock import RunLock

    with RunLock(run_copy) as lock:  # this process holds it, as a run in a notebook would
        one_line_error(["train", "--out", str(run_copy), "--resume", "auto", "--max-steps", "3", "--quiet"],
                       capsys, "in use by another training run", str(os.getpid()), str(lock.path), "delete")


@pytest.mark.parametrize("lock", ["pid 1", "pid reused", "another folder"])
def test_a_lock_of_a_live_process_that_is_not_this_run_is_stale(run_copy, capsys, lock):
    sleeper = None
    if lock == "pid 1":  # a container restarted: pid 1 lives, and is no training run
        text = "1\n"
    elif lock == "pid reused":  # this very process, but the lock says it started at another time
        text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "start": 1, "started": "then",
                           "command": "ris-lite train"})
    else:  # a live `ris-lite train` (old lock format: the pid alone) of another folder
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ris_lite", "train",
                                    "--out", str(run_copy.parent / "elsewhere")])
        text = f"{sleeper.pid}\n"
    (run_copy / "train.lock").write_text(text)
    try:
        assert main(["train", "--out", str(run_copy), "--resume", "auto", "--max-steps", "3", "--quiet"]) == 0
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
    assert "took over the stale lock" in capsys.readouterr().err
    assert not (run_copy / "train.lock").exists()


def test_an_old_lock_of_a_live_training_of_this_folder_is_respected(run_copy, capsys):
    """Runs started before the lock held more than its pid (the ones training now) keep their folder."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ris_lite", "train",
                                "--out", str(run_copy)])
    try:
        (run_copy / "train.lock").write_text(f"{sleeper.pid}\n")
        one_line_error(["train", "--out", str(run_copy), "--resume", "auto", "--max-steps", "3", "--quiet"],
                       capsys, "in use by another training run", str(sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait()


# ----- SILENT WRONG: nothing to train ---------------------------------------------------------
def test_resume_past_max_steps_says_so(run_copy, capsys):
    before = contents(run_copy)
    one_line_error(["train", "--out", str(run_copy), "--resume", "auto", "--max-steps", "1", "--quiet"], capsys,
                   "--max-steps 1", "step 2")
    assert contents(run_copy) == before
