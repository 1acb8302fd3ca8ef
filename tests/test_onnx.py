"""The ONNX graphs of the in-browser page (``ris_lite.model.onnx_export``, ours) against the models.

The RIS pipeline of the page (FCN graph once, then the step graph until the stop, the model's
assembly) run by onnxruntime in Python must give ``RIS.predict``'s label maps: on 20 test plants
at the input size, and on a photo at the working size (the graphs take any size). The embedding
graph with ``cluster_embeddings`` must give ``EmbeddingModel.predict``'s.
"""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="pip install 'ris_lite[onnx]' (the test extra has it)")
pytest.importorskip("onnxruntime", reason="the test extra has onnxruntime")

import onnxruntime as ort

from ris_lite import RosetteDataset
from ris_lite.cli.onnx import export_default_onnx
from ris_lite.data.cvppp import CVPPP
from ris_lite.model.embedding import cluster_embeddings, keep_largest
from ris_lite.model.onnx_export import OnnxRIS, check_exportable, export_onnx
from ris_lite.model.ris import RIS
from ris_lite.pretrained import DEFAULT_MODEL, load_model


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("onnx")
    export_default_onnx(out)
    return out


def test_settings_name_the_default_model_and_its_rule(graphs):
    s = json.loads((graphs / "settings.json").read_text())
    assert s["ris"]["name"] == DEFAULT_MODEL["name"]
    assert (s["ris"]["assembly"], s["ris"]["min_size"]) == (DEFAULT_MODEL["assembly"], DEFAULT_MODEL["min_size"])
    model = load_model(DEFAULT_MODEL["name"])
    assert s["ris"]["input_size"] == list(model.config.input_size)
    zoom = model.data_options.get("zoom", 1.8) if model.data_options else 1.8
    assert s["ris"]["photo_size"] == [round(zoom * model.config.input_size[0]), round(zoom * model.config.input_size[1])]
    assert {p.name for p in graphs.iterdir()} == {"ris_fcn.onnx", "ris_step.onnx", "embedding.onnx", "settings.json"}


def _parity(onnx_ris, plants: int):
    """(smallest pixel agreement, plants whose count differs) of ``onnx_ris`` against
    ``RIS.predict`` with the default model's rule, on the first test plants."""
    model = load_model(DEFAULT_MODEL["name"]).eval()
    test = RosetteDataset("test")
    agree, counts = [], []
    for i in range(plants):
        image = test[i][0]
        want = model.predict(image, assembly=DEFAULT_MODEL["assembly"], min_size=DEFAULT_MODEL["min_size"])[0]
        got = onnx_ris.predict(image.numpy())
        agree.append(float((got == want).float().mean()))
        if int(got.max()) != int(want.max()):
            counts.append(i)
    return min(agree), counts


def test_ris_graphs_give_predicts_label_maps_on_20_test_plants(graphs):
    agreement, other_counts = _parity(OnnxRIS(graphs), 20)
    assert agreement >= 0.999 and not other_counts, (agreement, other_counts)


class _Forgetful:
    """A step session whose caller forgets the ConvLSTM's state: every step starts from zero."""

    def __init__(self, session):
        self.session = session

    def run(self, outputs, feeds):
        state = {k: np.zeros_like(v) for k, v in feeds.items() if k[0] in "hc" and k[1:].isdigit()}
        return self.session.run(outputs, {**feeds, **state})


def test_the_parity_check_fails_on_a_broken_loop(graphs):
    broken = OnnxRIS(graphs)
    broken.step = _Forgetful(broken.step)
    agreement, other_counts = _parity(broken, 3)
    assert agreement < 0.999 or other_counts


def test_ris_graphs_take_a_photo_at_the_working_size(graphs):
    model = load_model(DEFAULT_MODEL["name"]).eval()
    reader = CVPPP("data/fixtures/cvppp_a1", size=model.config.input_size, zoom=1.8)
    image = reader[0][0]
    s = json.loads((graphs / "settings.json").read_text())["ris"]
    assert list(image.shape[1:]) == s["photo_size"]
    want = model.predict(image)[0]
    got = OnnxRIS(graphs).predict(image.numpy())
    assert int(got.max()) == int(want.max()) and float((got == want).float().mean()) >= 0.999


def test_embedding_graph_and_clustering_give_predict(graphs):
    model = load_model("rosettes_embedding").eval()
    s = json.loads((graphs / "settings.json").read_text())["embedding"]
    session = ort.InferenceSession(str(graphs / "embedding.onnx"), providers=["CPUExecutionProvider"])
    test = RosetteDataset("test")
    for i in range(3):
        image = test[i][0]
        emb, fg = session.run(None, {"image": image[None].numpy()})
        got = keep_largest(cluster_embeddings(torch.from_numpy(emb[0]), torch.from_numpy(fg[0]) > s["fg_threshold"],
                                              s["bandwidth"], s["min_size"]), 30)
        want = model.predict(image)[0]
        assert int(got.max()) == int(want.max()) and float((got == want).float().mean()) >= 0.999


def test_unsupported_models_are_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="feedback") as e:
        check_exportable(RIS(feedback=True))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="skip"):
        export_onnx(tmp_path, RIS(skip="input"))


def test_cli_export_onnx_writes_the_graphs_and_overwrites_only_with_force(tmp_path, capsys):
    from ris_lite.cli import main

    out = tmp_path / "graphs"
    (tmp_path / "elsewhere.json").write_text("{}")
    out.mkdir()
    (out / "settings.json").symlink_to(tmp_path / "elsewhere.json")  # replaced, never written through
    assert main(["export", "--onnx", str(out), "--embedding", "none"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--onnx", str(out), "--embedding", "none", "--force"]) == 0
    assert {p.name for p in out.iterdir()} == {"ris_fcn.onnx", "ris_step.onnx", "settings.json"}
    assert not (out / "settings.json").is_symlink() and (tmp_path / "elsewhere.json").read_text() == "{}"
    assert json.loads((out / "settings.json").read_text())["ris"]["name"] == DEFAULT_MODEL["name"]
    capsys.readouterr()
    assert main(["export", "--onnx", str(out), "--run", str(tmp_path)]) == 2
    assert main(["export"]) == 2
    assert "--onnx DIR" in capsys.readouterr().err
