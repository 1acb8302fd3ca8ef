"""The looks a synthetic plant can be drawn in: the benchmark's, randomised ones, a held-out one.

Explained in the book chapter ``book/10_your_data`` (section 8: the gap to new data, measured
without new data). ``make_rosette(seed, style=...)`` (``ris_lite.data.rosette``) draws the same
plant in any of them; a look changes the scene around it (``tray``, ``soil``, ``texture``,
``pot``, ``moss``: read by the generator's background) and the camera (:func:`camera`).
"""

from __future__ import annotations

import numpy as np

#: The looks of a plant (``RosetteOptions.style``). The plant itself (leaves, labels) depends on
#: the seed only, never on the style: a style changes the scene around it and the camera.
STYLES = ("a1", "random", "heldout")

#: The held-out style: one fixed scene and camera that neither the benchmark nor the randomised
#: style draws (a grey plastic tray, light peat with no moss, a warm cast, dim light falling off
#: to one side, a soft lens), for measuring the synthetic-to-new-data gap without real data.
HELDOUT_LOOK = {
    "tray": (0.50, 0.53, 0.56), "soil": (0.36, 0.28, 0.20), "texture": 0.06, "moss": None,
    "pot": 0.30, "cast": (1.12, 1.0, 0.78), "gain": 0.8, "gamma": 1.15, "falloff": 0.35,
    "falloff_angle": 0.8, "blur": 1.8, "noise": 0.035,
}


def style_look(style: str, seed: int) -> dict | None:
    """The scene and camera of ``style`` for plant ``seed``: ``None`` for ``"a1"`` (the
    generator's own look), :data:`HELDOUT_LOOK` for ``"heldout"``, and for ``"random"`` one draw
    per seed from a stream of its own (``default_rng([seed, 1])``), so the plant is the same
    plant as in the other styles: for half the seeds the A1 look (``None``), for the other half
    every factor drawn independently. The held-out values lie inside or near the random
    ranges, but never all together: what is held out is the combination."""
    if style == "a1":
        return None
    if style == "heldout":
        return HELDOUT_LOOK
    if style != "random":
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    r = np.random.default_rng([seed, 1])
    if r.random() < 0.5:  # half the plants keep the benchmark's look, so that it is not unlearned
        return None
    tray_hue = r.uniform(0, 2 * np.pi)  # any colour of tray, mostly saturated
    tray = 0.4 + 0.25 * np.cos(tray_hue + np.array([0.0, 2.1, 4.2])) * r.uniform(0.3, 1.0)
    soil = np.array([0.16, 0.12, 0.09]) * r.uniform(0.5, 2.6) * np.exp(r.normal(0, 0.15, 3))
    return {
        "tray": tuple(np.clip(tray, 0.03, 0.9)), "soil": tuple(np.clip(soil, 0.02, 0.6)),
        "texture": r.uniform(0.01, 0.07), "moss": r.uniform(0.9, 3.0) if r.random() < 0.8 else None,
        "pot": r.uniform(0.32, 0.45), "cast": tuple(np.exp(r.normal(0, 0.12, 3))),
        "gain": r.uniform(0.65, 1.35), "gamma": r.uniform(0.75, 1.35), "falloff": r.uniform(0, 0.3),
        "falloff_angle": r.uniform(0, 2 * np.pi), "blur": r.uniform(0.4, 2.2), "noise": r.uniform(0.0, 0.05),
    }


def camera(image: np.ndarray, look: dict, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A style's camera on a ``(3, H, W)`` scene: colour cast, exposure and gamma, and light
    falling off linearly along one direction (``y, x``: pixel positions in [-0.5, 0.5])."""
    a = look["falloff_angle"]
    light = 1.0 - look["falloff"] * (0.5 + np.cos(a) * x + np.sin(a) * y)
    image = np.clip(image, 0, 1) ** look["gamma"] * look["gain"] * light
    return image * np.asarray(look["cast"])[:, None, None]
