// The book's in-browser page (book/try_it.md): RIS and the embedding model run by onnxruntime-web.
//
// Everything this script needs comes in classic <script> files written by make book
// (book/_ext/try_it.py): `ort` (ort.wasm.min.js), window.RIS_ORT (the runtime's WebAssembly
// and its loader, as text) and window.RIS_DEMO (the ONNX graphs, their settings, the sample
// plants). No fetch: a page opened from disk (file://) may not fetch its neighbours.
//
// RIS runs as in ris_lite/model/onnx_export.py's OnnxRIS: the FCN graph once, then the step
// graph until a score falls below the stop threshold; the label map is assembled by the
// model's rule (ris_lite/model/assembly.py). The embedding model's pixels are clustered as
// ris_lite/model/embedding.py's cluster_embeddings does. window.risDemo exposes both for tests.
(function () {
  "use strict";
  const D = window.RIS_DEMO;
  const R = D.settings.ris;
  const E = D.settings.embedding;

  function bytes(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  // ----- the runtime, started once ------------------------------------------------------------
  let sessions = null;
  async function start() {
    if (sessions) return sessions;
    ort.env.wasm.numThreads = 1;  // a page from disk is not cross-origin isolated: no threads
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmBinary = bytes(window.RIS_ORT.wasm);
    const loader = URL.createObjectURL(new Blob([window.RIS_ORT.loader], {type: "text/javascript"}));
    ort.env.wasm.wasmPaths = {mjs: loader};
    const make = (b64) => ort.InferenceSession.create(bytes(b64), {executionProviders: ["wasm"]});
    sessions = {fcn: await make(D.graphs.ris_fcn), step: await make(D.graphs.ris_step),
                embedding: E ? await make(D.graphs.embedding) : null};
    return sessions;
  }

  // ----- RIS ----------------------------------------------------------------------------------
  // image: Float32Array (3, H, W) in [0, 1]. onStep(t, mask Float32Array (H*W), score) after each
  // step the model keeps. Resolves to {labels, height, width, count, scores, ms}.
  async function runRIS(image, H, W, onStep) {
    const s = await start();
    const t0 = performance.now();
    const fcn = await s.fcn.run({image: new ort.Tensor("float32", image, [1, 3, H, W])});
    const [, d, h, w] = fcn.proj0.dims;
    const state = {frame: new ort.Tensor("float32", new Float32Array(H * W), [1, H, W]), proj0: fcn.proj0,
                   union: new ort.Tensor("float32", new Float32Array(h * w), [1, h, w])};
    const channels = R.channels;
    for (let k = 0; k < R.layers; k++) {
      state["h" + k] = new ort.Tensor("float32", new Float32Array(channels * h * w), [1, channels, h, w]);
      state["c" + k] = new ort.Tensor("float32", new Float32Array(channels * h * w), [1, channels, h, w]);
    }
    const masks = [], scores = [];
    for (let t = 0; t < R.max_steps; t++) {
      const feeds = {};
      for (const name of R.step_inputs) feeds[name] = state[name];
      const out = await s.step.run(feeds);
      const score = out.score.data[0];
      if (score < R.score_threshold) break;
      const mask = out.mask.data;
      masks.push(mask);
      scores.push(score);
      state.union = out.union_out;
      for (let k = 0; k < R.layers; k++) {
        state["h" + k] = out["h" + k + "_out"];
        state["c" + k] = out["c" + k + "_out"];
      }
      if (onStep) await onStep(t, mask, score);
    }
    const labels = assemble(masks, scores, H * W, R.assembly, R.mask_threshold, R.min_size);
    return {labels, height: H, width: W, count: maxLabel(labels), scores, ms: performance.now() - t0};
  }

  function assemble(masks, scores, n, rule, thr, minSize) {
    let labels = new Int32Array(n);
    if (rule === "first") {  // a pixel goes to the first mask above thr that claims it
      let next = 0;
      for (const m of masks) {
        let claimed = false;
        for (let p = 0; p < n; p++) if (m[p] > thr && labels[p] === 0) { labels[p] = next + 1; claimed = true; }
        if (claimed) next++;
      }
    } else {  // "argmax" (ours): foreground where some mask is above thr, to the step of highest s_t m_t
      for (let p = 0; p < n; p++) {
        let best = -1, win = -1, top = -Infinity;
        for (let t = 0; t < masks.length; t++) {
          if (masks[t][p] > top) top = masks[t][p];
          const v = masks[t][p] * scores[t];
          if (v > best) { best = v; win = t; }
        }
        if (top > thr) labels[p] = win + 1;
      }
      labels = consecutive(labels);
    }
    return dropSmall(labels, minSize);
  }

  // ids 1..k' in the order of their old ids (ris_lite.model.assembly.consecutive_in_order)
  function consecutive(labels) {
    const ids = Array.from(new Set(labels)).filter((v) => v > 0).sort((a, b) => a - b);
    const map = new Map(ids.map((v, i) => [v, i + 1]));
    return labels.map((v) => (v > 0 ? map.get(v) : 0));
  }

  function dropSmall(labels, minSize) {
    if (minSize <= 1) return labels;
    const sizes = new Map();
    for (const v of labels) sizes.set(v, (sizes.get(v) || 0) + 1);
    return consecutive(labels.map((v) => (v > 0 && sizes.get(v) < minSize ? 0 : v)));
  }

  function maxLabel(labels) {
    let m = 0;
    for (const v of labels) if (v > m) m = v;
    return m;
  }

  // ----- the embedding model (ours) ------------------------------------------------------------
  async function runEmbedding(image, H, W) {
    const s = await start();
    const t0 = performance.now();
    const out = await s.embedding.run({image: new ort.Tensor("float32", image, [1, 3, H, W])});
    const fg = out.foreground.data, emb = out.embeddings.data, dims = out.embeddings.dims[1];
    let labels = cluster(emb, dims, fg, H * W);
    labels = keepLargest(labels, R.max_steps);
    return {labels, height: H, width: W, count: maxLabel(labels), ms: performance.now() - t0};
  }

  // greedy seeds with a flat-kernel mean shift, then the leftovers and the small clusters to
  // the nearest centre (ris_lite.model.embedding.cluster_embeddings, in the same order)
  function cluster(emb, dims, fg, n) {
    const pix = [];
    for (let p = 0; p < n; p++) if (fg[p] > E.fg_threshold) pix.push(p);
    const P = pix.length, pts = new Float32Array(P * dims);
    for (let i = 0; i < P; i++) for (let e = 0; e < dims; e++) pts[i * dims + e] = emb[e * n + pix[i]];
    const dist = (i, c) => {
      let s = 0;
      for (let e = 0; e < dims; e++) { const d = pts[i * dims + e] - c[e]; s += d * d; }
      return Math.sqrt(s);
    };
    const ids = new Int32Array(P), centres = [], bw = E.bandwidth;
    let free = P;
    while (centres.length < E.max_clusters && free > 0) {
      let seed = 0;
      while (ids[seed] !== 0) seed++;
      let centre = Array.from(pts.subarray(seed * dims, seed * dims + dims));
      for (let it = 0; it < E.iterations; it++) {
        const sum = new Array(dims).fill(0);
        let k = 0;
        for (let i = 0; i < P; i++) if (ids[i] === 0 && dist(i, centre) <= bw) {
          k++;
          for (let e = 0; e < dims; e++) sum[e] += pts[i * dims + e];
        }
        const moved = sum.map((v) => Math.fround(v / k));
        if (moved.every((v, e) => Math.abs(v - centre[e]) <= 1e-8 + 1e-5 * Math.abs(centre[e]))) break;
        centre = moved;
      }
      centres.push(centre);
      for (let i = 0; i < P; i++) if (ids[i] === 0 && (i === seed || dist(i, centre) <= bw)) {
        ids[i] = centres.length;
        free--;
      }
    }
    const nearest = (i, cs) => {
      let best = 0, bd = Infinity;
      cs.forEach((c, k) => { const d = dist(i, c); if (d < bd) { bd = d; best = k; } });
      return best;
    };
    if (centres.length && free > 0) for (let i = 0; i < P; i++) if (ids[i] === 0) ids[i] = nearest(i, centres) + 1;
    if (centres.length && E.min_size > 1) mergeSmall(pts, dims, ids, E.min_size, nearest);
    const labels = new Int32Array(n);
    for (let i = 0; i < P; i++) labels[pix[i]] = ids[i];
    return consecutive(labels);
  }

  function mergeSmall(pts, dims, ids, minSize, nearest) {
    const sizes = new Map();
    for (const v of ids) sizes.set(v, (sizes.get(v) || 0) + 1);
    const big = Array.from(sizes.keys()).filter((k) => k > 0 && sizes.get(k) >= minSize).sort((a, b) => a - b);
    const means = big.map((k) => {
      const m = new Array(dims).fill(0);
      let c = 0;
      ids.forEach((v, i) => { if (v === k) { c++; for (let e = 0; e < dims; e++) m[e] += pts[i * dims + e]; } });
      return m.map((v) => v / c);
    });
    const small = Array.from(ids, (v) => sizes.get(v) < minSize);
    small.forEach((isSmall, i) => { if (isSmall) ids[i] = big.length ? big[nearest(i, means)] : 0; });
  }

  function keepLargest(labels, k) {
    const sizes = new Map();
    for (const v of labels) if (v > 0) sizes.set(v, (sizes.get(v) || 0) + 1);
    if (sizes.size <= k) return labels;
    const order = Array.from(sizes.keys()).sort((a, b) => sizes.get(b) - sizes.get(a) || a - b);
    const drop = new Set(order.slice(k));
    return consecutive(labels.map((v) => (drop.has(v) ? 0 : v)));
  }

  // ----- pictures ------------------------------------------------------------------------------
  // the book's colours (ris_lite.viz.palette): golden-ratio hues off the green arc
  function palette(n) {
    const [lo, hi] = D.settings.palette.green_hues, u = D.settings.palette.offset;
    const out = [];
    for (let k = 0; k < n; k++) {
      const spread = (k * 0.61803398875 + u) % 1.0;
      out.push(hsv((hi + spread * (1.0 - (hi - lo))) % 1.0, 0.75, 0.95).map((c) => Math.floor(255 * c)));
    }
    return out;
  }

  function hsv(h, s, v) {  // Python's colorsys.hsv_to_rgb
    const i = Math.floor(h * 6), f = h * 6 - i, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    return [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  }

  function drawImage(canvas, image, H, W) {
    canvas.width = W; canvas.height = H;
    const ctx = canvas.getContext("2d"), px = ctx.createImageData(W, H);
    for (let p = 0; p < H * W; p++) {
      for (let c = 0; c < 3; c++) px.data[4 * p + c] = Math.round(255 * image[c * H * W + p]);
      px.data[4 * p + 3] = 255;
    }
    ctx.putImageData(px, 0, 0);
  }

  function drawLabels(canvas, labels, H, W) {
    const colours = palette(Math.max(maxLabel(labels), 1));
    canvas.width = W; canvas.height = H;
    const ctx = canvas.getContext("2d"), px = ctx.createImageData(W, H);
    for (let p = 0; p < H * W; p++) {
      const c = labels[p] > 0 ? colours[labels[p] - 1] : [0, 0, 0];
      px.data.set([c[0], c[1], c[2], 255], 4 * p);
    }
    ctx.putImageData(px, 0, 0);
  }

  function drawMask(canvas, mask, H, W) {
    canvas.width = W; canvas.height = H;
    const ctx = canvas.getContext("2d"), px = ctx.createImageData(W, H);
    for (let p = 0; p < H * W; p++) {
      const v = Math.round(255 * mask[p]);
      px.data.set([v, v, v, 255], 4 * p);
    }
    ctx.putImageData(px, 0, 0);
  }

  // ----- inputs ------------------------------------------------------------------------------
  function sample(i) {
    const s = D.samples[i];
    if (!s) throw new Error(`no sample plant ${i} (there are ${D.samples.length})`);
    return {image: new Float32Array(bytes(s.image).buffer), height: s.height, width: s.width};
  }

  // a photo, whole, resized to the model's working size (ris_lite.data.folder: zoom x input size)
  async function photo(file) {
    const url = URL.createObjectURL(file);
    try {
      const img = new Image();
      await new Promise((ok, bad) => { img.onload = ok; img.onerror = () => bad(new Error(`cannot read ${file.name} as an image`)); img.src = url; });
      const [H, W] = R.photo_size;
      const c = document.createElement("canvas");
      c.width = W; c.height = H;
      const ctx = c.getContext("2d");
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(img, 0, 0, W, H);
      const rgba = ctx.getImageData(0, 0, W, H).data, image = new Float32Array(3 * H * W);
      for (let p = 0; p < H * W; p++) for (let ch = 0; ch < 3; ch++) image[ch * H * W + p] = rgba[4 * p + ch] / 255;
      return {image, height: H, width: W};
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  // ----- the page ----------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  let busy = false;

  async function show(input, what) {
    if (busy) return;
    busy = true;
    const status = $("ris-demo-status");
    try {
      const {image, height: H, width: W} = input;
      drawImage($("ris-demo-input"), image, H, W);
      const strip = $("ris-demo-steps");
      strip.replaceChildren();
      status.textContent = `${what}: RIS is painting…`;
      const ris = await runRIS(image, H, W, async (t, mask, score) => {
        const fig = document.createElement("figure");
        const c = document.createElement("canvas");
        drawMask(c, mask, H, W);
        const cap = document.createElement("figcaption");
        cap.textContent = `step ${t + 1}: score ${score.toFixed(2)}`;
        fig.append(c, cap);
        strip.append(fig);
        await new Promise((ok) => requestAnimationFrame(() => ok()));  // let the step show
      });
      drawLabels($("ris-demo-ris"), ris.labels, H, W);
      $("ris-demo-ris-caption").textContent =
        `RIS (${R.name}): ${ris.count} leaves in ${Math.round(ris.ms)} ms`;
      if (E) {
        const emb = await runEmbedding(image, H, W);
        drawLabels($("ris-demo-emb"), emb.labels, H, W);
        $("ris-demo-emb-caption").textContent =
          `embedding model (ours, ${E.name}): ${emb.count} leaves in ${Math.round(emb.ms)} ms`;
      }
      status.textContent = `${what}: done.`;
    } catch (e) {
      status.textContent = `${what}: ${e.message}`;
      throw e;
    } finally {
      busy = false;
    }
  }

  function setUp() {
    const root = $("ris-demo");
    if (!root) return;
    const picks = $("ris-demo-samples");
    D.samples.forEach((s, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = `test plant ${s.index}`;
      b.addEventListener("click", () => show(sample(i), `test plant ${s.index}`));
      picks.append(b);
    });
    $("ris-demo-file").addEventListener("change", async (ev) => {
      const f = ev.target.files[0];
      if (!f) return;
      try {
        await show(await photo(f), f.name);
      } catch (e) {
        $("ris-demo-status").textContent = `${f.name}: ${e.message}`;
      }
    });
    window.risDemo.ready = start().then(() => { $("ris-demo-status").textContent = "Ready: pick a plant or a photo."; });
  }

  window.risDemo = {
    settings: D.settings,
    // the i-th plant of RosetteDataset("test") (of the samples shipped), with the default RIS
    segmentSample: async (i) => { const s = sample(i); return runRIS(s.image, s.height, s.width); },
    segmentSampleEmbedding: async (i) => { const s = sample(i); return runEmbedding(s.image, s.height, s.width); },
    segmentFile: async (file) => { const p = await photo(file); await show(p, file.name); return p; },
    ready: null,
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
  else setUp();
})();
