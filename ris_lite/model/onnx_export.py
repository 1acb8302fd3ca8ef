"""RIS and the embedding model as ONNX graphs, for the book's in-browser page (ours).

Explained in the book chapter ``book/07_inference``, whose loop the book's in-browser page
(``try_it.md``, "Try it in the page") runs with these graphs. RIS is exported as two graphs so that the caller runs the recurrence and can show every
step as it comes:

* ``ris_fcn.onnx``: ``image (1, 3, H, W)`` -> ``features (1, d, h', w')`` and ``proj0 (1, 4d, h', w')``,
  the first ConvLSTM layer's gate pre-activations from the features (fixed for the whole
  sequence, so computed once, as ``RIS.forward`` does);
* ``ris_step.onnx``: one iteration, ``(frame (1, H, W), proj0, union, h_0, c_0, ..., h_L-1, c_L-1)``
  -> ``(mask (1, H, W), score (1,), union, h_0, c_0, ...)``; ``frame`` only carries the image's
  size, the state starts at zero, ``union`` (the running max of the masks emitted, at the
  feature grid; ours, ``ris_lite.model.counting``) too. Both graphs take any image size.
  The caller stops at the first ``score`` below the stop threshold and assembles the label map
  by the model's rule (``ris_lite.model.assembly``).

The embedding model (ours) is one graph, ``embedding.onnx``: ``image`` -> ``embeddings (1, E, H, W)``
and ``foreground`` probabilities ``(1, H, W)``; the clustering (``cluster_embeddings``) is the
caller's. ``settings.json`` holds what a caller needs besides the graphs: the input size, the
stop and mask thresholds, the assembly, the clustering's bandwidth and minimum size, each
graph's input and output names.

``torch.onnx`` writes the graphs; the ``onnx`` package must be installed (``pip install
'ris_lite[onnx]'``). ``OnnxRIS`` runs the two graphs with ``onnxruntime`` in Python, the same loop
as the page's script: the parity test (``tests/test_onnx.py``) holds it to ``RIS.predict``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from .assembly import assemble
from .convlstm import ConvLSTMCell

OPSET = 17


class _FCNGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        features = self.model.fcn(image)
        return features, self.model.lstm.cells[0].project_input(features)


class _StepGraph(nn.Module):
    """One iteration of ``RIS.forward``'s loop (no feedback, skip, coordinates or canvas). ``frame
    (1, H, W)`` only carries the image's size (the mask is upsampled to it), so one graph serves
    every input size."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, frame, proj0, union, *flat_states):
        m = self.model
        H, W = frame.shape[1], frame.shape[2]
        states = [(flat_states[2 * i], flat_states[2 * i + 1]) for i in range(len(flat_states) // 2)]
        proj = proj0 if m.union_input is None else proj0 + m.union_input(union)
        states = m.lstm.step(None, states, proj)  # layer 0 reads proj0 (the features' part) only
        h = states[-1][0]
        mask, st = m.inhibition(h, m.fcn.frame_size(H, W) if m.config.upsample else None, return_stages=True)
        small = torch.sigmoid(st["log_softmax_b"])
        z = m.confidence(h, logits=True)
        if m.union_score is not None:
            z = z + m.union_score(h, small, union)
        return (mask[:, :H, :W], torch.sigmoid(z), torch.maximum(union, small), *[t for s in states for t in s])


class _EmbeddingGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        emb, fg = self.model(image)
        return emb, torch.sigmoid(fg)


def check_exportable(model) -> None:
    """A RIS the two graphs can hold: the plant FCN or FCN-8s, fused ConvLSTM cells, no mask
    feedback, boundary skip, coordinates or canvas (one-line error naming the option)."""
    c = model.config
    for name, on in (("feedback", c.feedback), ("coords", c.coords), ("canvas", c.canvas),
                     ("skip", c.skip != "none")):
        if on:
            raise ValueError(f"ONNX export: a RIS with {name} is not supported (the page runs the paper's loop, "
                             "with or without the union options)")
    if not isinstance(model.lstm.cells[0], ConvLSTMCell):
        raise ValueError("ONNX export needs fused ConvLSTMCell layers")


def _export(module: nn.Module, args: tuple, path: Path, inputs: List[str], outputs: List[str],
            dynamic: Dict[str, Dict[int, str]]) -> List[str]:
    """Trace ``module`` on ``args`` into ``path``; returns the graph's input names: an input the
    computation never reads is not in the graph (the tracer drops it)."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'ris_lite[onnx]'") from None
    with torch.no_grad(), warnings.catch_warnings():
        # the shape checks of forward() run once while tracing, on the fixed input size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=OPSET,
                          dynamic_axes=dynamic, dynamo=False, do_constant_folding=True)
    return [i.name for i in onnx.load(str(path)).graph.input]


def ris_input_names(layers: int) -> List[str]:
    return ["frame", "proj0", "union"] + [f"{k}{i}" for i in range(layers) for k in ("h", "c")]


def ris_output_names(layers: int) -> List[str]:
    return ["mask", "score", "union_out"] + [f"{k}{i}_out" for i in range(layers) for k in ("h", "c")]


def export_ris(model, out_dir: str | Path) -> dict:
    """Write ``ris_fcn.onnx`` and ``ris_step.onnx`` of RIS ``model`` into ``out_dir``, both for any
    image size; returns their part of the settings (input size, state shapes, names)."""
    check_exportable(model)
    model = model.cpu().float().eval()
    out = Path(out_dir)
    H, W = model.config.input_size
    image = torch.rand(1, model.config.in_channels, H, W)
    with torch.no_grad():
        features, proj0 = _FCNGraph(model)(image)
    grid = {2: "h", 3: "w"}
    _export(_FCNGraph(model), (image,), out / "ris_fcn.onnx", ["image"], ["features", "proj0"],
            {"image": {2: "H", 3: "W"}, "features": grid, "proj0": grid})
    layers = len(model.lstm.cells)
    _, d, h, w = features.shape
    states = [torch.zeros(1, d, h, w) for _ in range(2 * layers)]
    names, outputs = ris_input_names(layers), ris_output_names(layers)
    dynamic = {"frame": {1: "H", 2: "W"}, "union": {1: "h", 2: "w"}, "union_out": {1: "h", 2: "w"},
               "mask": {1: "H", 2: "W"}, **{n: grid for n in names[1:2] + names[3:] + outputs[3:]}}
    used = _export(_StepGraph(model), (torch.zeros(1, H, W), proj0, torch.zeros(1, h, w), *states),
                   out / "ris_step.onnx", names, outputs, dynamic)
    return {"input_size": [H, W], "channels": d, "layers": layers, "step_inputs": used, "step_outputs": outputs}


def export_embedding(model, out_dir: str | Path) -> dict:
    """Write ``embedding.onnx`` of an embedding model; returns its part of the settings."""
    model = model.cpu().float().eval()
    H, W = model.config.input_size
    _export(_EmbeddingGraph(model), (torch.rand(1, model.config.in_channels, H, W),), Path(out_dir) / "embedding.onnx",
            ["image"], ["embeddings", "foreground"],
            {"image": {2: "H", 3: "W"}, "embeddings": {2: "H", 3: "W"}, "foreground": {1: "H", 2: "W"}})
    c = model.config
    return {"input_size": [H, W], "bandwidth": float(c.radius), "min_size": int(c.min_cluster_size),
            "fg_threshold": 0.5, "max_clusters": 64, "iterations": 10}


def export_onnx(out_dir: str | Path, ris, embedding=None, zoom: float = 1.0, names: Tuple[str, str] = ("ris", "embedding"),
                assembly: str = "first", min_size: int = 0, score_threshold: float = 0.5,
                mask_threshold: float = 0.5, max_steps: int = 30) -> dict:
    """The page's graphs and ``settings.json`` in ``out_dir``: RIS model ``ris`` and, unless None,
    the ``embedding`` model; ``names`` label them on the page. ``zoom``: the scale the RIS learned
    (its training data's zoom): a photo is read whole at the input size times ``zoom``, as the
    real-data reader reads a frame (``ris_lite.data.folder``). Returns the settings."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    H, W = ris.config.input_size
    settings = {"ris": {"name": names[0], **export_ris(ris, out), "assembly": assembly, "min_size": min_size,
                        "score_threshold": score_threshold, "mask_threshold": mask_threshold,
                        "max_steps": max_steps, "zoom": zoom,
                        "photo_size": [max(round(zoom * H), 1), max(round(zoom * W), 1)]}}
    if embedding is not None:
        settings["embedding"] = {"name": names[1], **export_embedding(embedding, out)}
    (out / "settings.json").write_text(json.dumps(settings, indent=1) + "\n")
    return settings


class OnnxRIS:
    """The two RIS graphs run by ``onnxruntime`` (one thread), step by step, as the page does."""

    def __init__(self, folder: str | Path):
        import onnxruntime as ort

        folder = Path(folder)
        self.settings = json.loads((folder / "settings.json").read_text())["ris"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.fcn = ort.InferenceSession(str(folder / "ris_fcn.onnx"), options, providers=["CPUExecutionProvider"])
        self.step = ort.InferenceSession(str(folder / "ris_step.onnx"), options, providers=["CPUExecutionProvider"])

    def kept(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``image (3, H, W)`` float32 in [0, 1], any size -> the kept ``masks (k, H, W)`` and
        ``scores (k,)``: the steps before the first score below the stop threshold."""
        s = self.settings
        H, W = image.shape[1:]
        features, proj0 = self.fcn.run(None, {"image": image[None].astype(np.float32)})
        _, d, h, w = features.shape
        state = {"frame": np.zeros((1, H, W), np.float32), "proj0": proj0, "union": np.zeros((1, h, w), np.float32)}
        for k in range(s["layers"]):
            state[f"h{k}"] = state[f"c{k}"] = np.zeros((1, d, h, w), np.float32)
        masks, scores = [], []
        for _ in range(s["max_steps"]):
            outs = dict(zip(s["step_outputs"], self.step.run(s["step_outputs"], {k: state[k] for k in s["step_inputs"]})))
            if float(outs["score"][0]) < s["score_threshold"]:
                break
            masks.append(outs["mask"][0])
            scores.append(float(outs["score"][0]))
            for name in ["union"] + [f"{x}{k}" for k in range(s["layers"]) for x in "hc"]:
                state[name] = outs[f"{name}_out"]
        return (np.stack(masks) if masks else np.zeros((0, H, W), np.float32)), np.array(scores, np.float32)

    def predict(self, image: np.ndarray) -> torch.Tensor:
        """``(H, W)`` int64 labels by the settings' assembly and minimum size."""
        masks, scores = self.kept(image)
        s = self.settings
        return assemble(torch.from_numpy(masks), torch.from_numpy(scores), s["assembly"], s["mask_threshold"],
                        s["min_size"])
