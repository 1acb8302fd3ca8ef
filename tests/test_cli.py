import json
import subprocess
import sys
from pathlib import Path

import pytest

from ris_lite.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--out", str(out), "--max-steps", "2", "--quiet", "--train-images", "4",
                 "--curriculum", "2,1,3"]) == 0
    return out


def test_train_then_resume(tiny_run, capsys):
    assert main(["train", "--out", str(tiny_run), "--resume", "auto", "--max-steps", "3", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3


def test_evaluate_json(tiny_run, capsys):
    assert main(["evaluate", "--data", "synthetic", "--split", "val", "--limit", "2", "--json",
                 "--max-steps", "3", "--checkpoint", str(tiny_run / "last.pt")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"sbd", "fgbg_dice", "dic", "abs_dic", "n_images"} <= set(r) and r["n_images"] == 2


def test_predict_writes_official_pngs_and_overlays(tiny_run, tmp_path, capsys):
    assert main(["predict", "--split", "test", "--limit", "1", "--checkpoint", str(tiny_run / "last.pt"),
                 "--out", str(tmp_path), "--max-steps", "2"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["synthetic200000_label.png", "synthetic200000_overlay.png"]


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "--data", "imagenet"], "--data must be"),
    (["evaluate", "--data", "cvppp:/no/such/folder"], "no such folder"),
    (["evaluate", "--checkpoint", "/no/such.pt"], "no checkpoint at /no/such.pt"),
    (["train", "--data", "cvppp:/x"], "no such folder"),
    (["train", "--data", "folder:"], "--data must be"),
    (["train", "--curriculum", "2;x", "--out", "/tmp/ris_cli_bad"], "--curriculum"),
    (["train", "--fcn-dilations", "1,2", "--out", "/tmp/ris_cli_bad"], "--fcn-dilations"),
    (["train", "--channels", "0", "--out", "/tmp/ris_cli_bad"], "--channels must be a positive integer"),
    (["train", "--snapshot-minutes", "0", "--out", "/tmp/ris_cli_bad"], "--snapshot-minutes must be > 0"),
    (["train", "--schedule", "cosine", "--out", "/tmp/ris_cli_bad"], "--schedule cosine needs --max-steps"),
    (["train", "--canvas", "--feedback", "--out", "/tmp/ris_cli_bad"], "does not combine"),
    (["train", "--canvas", "--sampling-final", "2", "--out", "/tmp/ris_cli_bad"], "--sampling-final"),
    (["train", "--fcn-stride", "0", "--out", "/tmp/ris_cli_bad"], "--fcn-stride must be >= 1"),
    (["evaluate", "--model", "nonesuch"], "unknown pretrained model 'nonesuch'"),
    (["evaluate", "--model", "rosettes", "--checkpoint", "x.pt"], "not both"),
    (["evaluate", "--crf-config", "c.json"], "--crf-config needs --crf"),
    (["evaluate", "--crf", "--crf-config", "/no/such.json"], "--crf-config: no such file '/no/such.json'"),
])
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_train_options_reach_the_checkpoint(tmp_path, capsys):
    from ris_lite.model.checkpoint import load_checkpoint

    assert main(["train", "--out", str(tmp_path), "--max-steps", "1", "--quiet", "--train-images", "2",
                 "--curriculum", "2,1,3", "--fcn-dilations", "1,2,4,8", "--feedback", "--coords", "--cpu-bf16",
                 "--val-images", "4", "--patience", "5", "--channels", "12"]) == 0
    cfg = load_checkpoint(tmp_path / "last.pt")["config"]
    assert cfg["model"]["fcn_dilations"] == [1, 2, 4, 8] and cfg["model"]["feedback"] is True
    assert cfg["model"]["channels"] == 12 and cfg["model"]["coords"] is True
    assert (cfg["precision"], cfg["val_images"], cfg["patience"]) == ("bf16", 4, 5)


def test_canvas_options_reach_the_checkpoint(tmp_path, capsys):
    from ris_lite.model.checkpoint import load_checkpoint, model_from_checkpoint

    assert main(["train", "--out", str(tmp_path), "--max-steps", "2", "--quiet", "--train-images", "2",
                 "--curriculum", "2,1,3", "--canvas-memory", "--schedule", "cosine", "--warmup-steps", "1",
                 "--sampling-final", "0.5", "--sampling-start", "0.2", "--val-images", "2"]) == 0
    cfg = load_checkpoint(tmp_path / "last.pt")["config"]
    assert cfg["model"]["canvas"] is True and cfg["model"]["canvas_memory"] is True
    assert (cfg["schedule"], cfg["max_steps"], cfg["warmup_steps"]) == ("cosine", 2, 1)
    assert (cfg["sampling_final"], cfg["sampling_start"]) == (0.5, 0.2)
    assert model_from_checkpoint(tmp_path / "last.pt").config.canvas_memory


def test_existing_run_needs_resume(tiny_run, capsys):
    assert main(["train", "--out", str(tiny_run), "--max-steps", "1"]) == 2
    assert "--resume auto" in capsys.readouterr().err


def test_module_entry_point_and_console_script():
    r = subprocess.run([sys.executable, "-m", "ris_lite", "evaluate", "--data", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("ris-lite evaluate: error:")


def test_evaluate_on_the_cvppp_format_fixture(tiny_run, capsys):
    folder = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "cvppp_a1"
    assert main(["evaluate", "--data", f"cvppp:{folder}", "--json", "--max-steps", "3",
                 "--checkpoint", str(tiny_run / "last.pt"), "--baseline"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ris"]["n_images"] == 6 and r["watershed"]["n_images"] == 6 and r["resolution"] == "original"


def test_predict_on_cvppp_writes_original_size(tiny_run, tmp_path, capsys):
    folder = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "cvppp_a1"
    assert main(["predict", "--data", f"cvppp:{folder}", "--out", str(tmp_path), "--max-steps", "2",
                 "--checkpoint", str(tiny_run / "last.pt")]) == 0
    from PIL import Image
    img = Image.open(tmp_path / "plant010_label.png")
    assert img.size == (500, 530) and img.mode == "P"


def test_export_ships_model_config_and_log(tiny_run, tmp_path, capsys):
    assert main(["export", "--run", str(tiny_run), "--out", str(tmp_path), "--name", "mini"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.pt", "mini_config.json", "mini_log.csv"]
    from ris_lite.model.checkpoint import model_from_checkpoint
    assert not model_from_checkpoint(tmp_path / "mini.pt").training
    assert main(["export", "--run", str(tmp_path / "nope")]) == 2


def test_export_ships_the_learning_curve_when_there_is_one(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "curve.csv").write_text("minutes,step,stage,sbd,abs_dic,dic,fgbg_dice\n0.10,5,0,0.1,3.0,-3.0,0.5\n")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "out"), "--name", "mini"]) == 0
    assert (tmp_path / "out" / "mini_curve.csv").read_text() == (run / "curve.csv").read_text()


def test_evaluate_and_predict_with_crf(tiny_run, tmp_path, capsys):
    from ris_lite.model.crf import CRFConfig

    config = tmp_path / "crf.json"
    CRFConfig(appearance_weight=2.0, iterations=3).save(config)
    assert main(["evaluate", "--split", "val", "--limit", "2", "--json", "--max-steps", "3",
                 "--checkpoint", str(tiny_run / "last.pt"), "--crf", "--crf-config", str(config)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_images"] == 2 and r["crf"]["appearance_weight"] == 2.0 and r["crf"]["iterations"] == 3
    assert main(["evaluate", "--limit", "1", "--max-steps", "3", "--crf", "--baseline",
                 "--checkpoint", str(tiny_run / "last.pt")]) == 0
    assert "ris+crf" in capsys.readouterr().out
    assert main(["predict", "--limit", "1", "--max-steps", "2", "--crf", "--out", str(tmp_path / "p"),
                 "--checkpoint", str(tiny_run / "last.pt")]) == 0
    assert (tmp_path / "p" / "synthetic200000_label.png").is_file()
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["evaluate", "--crf", "--crf-config", str(tmp_path / "bad.json")]) == 2
    assert "not a CRF config JSON" in capsys.readouterr().err
