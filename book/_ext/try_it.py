"""Sphinx extension: the files of the in-browser page ``book/try_it.md``, made at every build.

The page runs the default RIS and the embedding model in the reader's browser with
onnxruntime-web. Nothing binary is committed: at ``config-inited`` this extension

* exports the graphs from the shipped checkpoints (``ris_lite.cli.onnx.export_default_onnx``),
* takes onnxruntime-web's classic script, its WebAssembly and the loader of that WebAssembly
  from ``book/demo/node_modules`` (``make book`` installs them with ``npm ci`` from
  ``book/demo/package-lock.json``),
* writes them, with a few test plants, as classic ``<script>`` files into
  ``_build/try_it/ris_demo/``, which Sphinx copies to ``_build/html/_static/ris_demo/``.

Classic scripts, base64 inside, because a page opened from disk (``file://``) may run scripts
next to it but may not ``fetch`` them, nor import ES modules. What was made is kept and remade
only when a checkpoint, the export code, the runtime or ``ris_demo.js`` changes (a stamp of
their hashes, ``_build/try_it.stamp``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "demo"
RUNTIME = DEMO / "node_modules" / "onnxruntime-web"
#: the classic (non-module) build with the WebAssembly backend only, and what it loads
ORT_SCRIPT, ORT_LOADER, ORT_WASM = "ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"
#: test plants offered on the page (the first few of RosetteDataset("test"))
SAMPLES = 6


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _stamp(sources) -> str:
    h = hashlib.sha256()
    for path in sources:
        h.update(path.name.encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def build(out: Path) -> Path:
    """Write the page's scripts into ``out/ris_demo``; returns that folder."""
    import ris_lite.model.onnx_export as onnx_export
    from ris_lite.pretrained import DEFAULT_MODEL, pretrained_path

    dist = RUNTIME / "dist"
    missing = [n for n in (ORT_SCRIPT, ORT_LOADER, ORT_WASM) if not (dist / n).is_file()]
    if missing:
        raise FileNotFoundError(f"onnxruntime-web is not installed in {RUNTIME} (missing {', '.join(missing)}): "
                                "run `make book` (it runs npm ci in book/demo), or `npm ci` in book/demo")
    folder = out / "ris_demo"
    sources = [pretrained_path(DEFAULT_MODEL["name"]), pretrained_path("rosettes_embedding"),
               Path(onnx_export.__file__), DEMO / "ris_demo.js", DEMO / "package-lock.json",
               Path(__file__), *(dist / n for n in (ORT_SCRIPT, ORT_LOADER, ORT_WASM))]
    stamp, stamp_file = _stamp(sources) + json.dumps(DEFAULT_MODEL, sort_keys=True), out.with_suffix(".stamp")
    if folder.is_dir() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    graphs = folder / "graphs"
    from ris_lite import RosetteDataset
    from ris_lite.cli.onnx import export_default_onnx
    from ris_lite.viz import GREEN_HUES, palette_offset

    settings = export_default_onnx(graphs)
    settings["palette"] = {"green_hues": list(GREEN_HUES), "offset": palette_offset()}
    test = RosetteDataset("test")
    samples = []
    for i in range(SAMPLES):
        image = test[i][0].float().contiguous()
        samples.append({"index": i, "height": image.shape[1], "width": image.shape[2],
                        "image": _b64(image.numpy().astype("<f4").tobytes())})
    data = {"settings": settings, "samples": samples,
            "graphs": {n: _b64((graphs / f"{n}.onnx").read_bytes()) for n in ("ris_fcn", "ris_step", "embedding")}}
    (folder / "ris_demo_data.js").write_text("window.RIS_DEMO = " + json.dumps(data) + ";\n")
    runtime = {"loader": (dist / ORT_LOADER).read_text(), "wasm": _b64((dist / ORT_WASM).read_bytes())}
    (folder / "ort_runtime.js").write_text("window.RIS_ORT = " + json.dumps(runtime) + ";\n")
    shutil.copyfile(dist / ORT_SCRIPT, folder / ORT_SCRIPT)
    shutil.copyfile(DEMO / "ris_demo.js", folder / "ris_demo.js")
    meta = json.loads((RUNTIME / "package.json").read_text())
    (folder / "NOTICE.txt").write_text(f"onnxruntime-web {meta['version']} (ort.wasm.min.js, ort_runtime.js): "
                                       f"{meta['license']} licence, Copyright (c) Microsoft Corporation, "
                                       f"{meta['repository']['url']}\n")
    shutil.rmtree(graphs)  # inside the scripts; the .onnx files are remade by `ris-lite export --onnx`
    stamp_file.write_text(stamp)
    return folder


def _add_assets(app, config):
    out = Path(app.outdir).parent / "try_it"
    build(out)
    config.html_static_path.append(str(out))


def setup(app):
    app.connect("config-inited", _add_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
