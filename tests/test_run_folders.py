"""The notebooks' long runs survive a Colab disconnect: a folder on Drive when mounted, resumed."""

import pytest
from test_train import tiny_config

from ris_lite.training import run_folders
from ris_lite.training.run_folders import resume_or_start, run_folder


def test_run_folder_prefers_a_mounted_drive(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folders, "DRIVE", tmp_path / "drive")
    assert run_folder("full") == run_folders.Path("runs") / "full"  # no Drive: a local folder
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)
    assert run_folder("full") == tmp_path / "drive" / "MyDrive" / "ris_lite_runs" / "full"
    assert run_folder("full", root=tmp_path / "mine") == tmp_path / "mine" / "full"
    with pytest.raises(ValueError, match="plain folder name"):
        run_folder("../elsewhere")


def test_resume_or_start_continues_the_run_in_the_folder(tmp_path):
    out = tmp_path / "run"
    first = resume_or_start(tiny_config(), out)
    assert first.step == 0
    first.run(max_steps=2, progress=False)
    again = resume_or_start(tiny_config(), out)  # the cell run again after a disconnect
    assert again.step == 2 and again.images_seen == first.images_seen
    with pytest.raises(ValueError, match="differs in: lr"):
        resume_or_start(tiny_config(lr=5e-4), out)
