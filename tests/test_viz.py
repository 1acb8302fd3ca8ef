"""The book's figure helpers: overlay colours that are never leaf-green, portable magnitudes."""

import colorsys

import numpy as np
import torch

from ris_lite.viz import GREEN_HUES, glue, label_rgb, magnitude, palette


def test_palette_is_distinct_and_never_green():
    colours = palette(40)
    assert len(set(colours)) == 40
    for rgb in colours:
        hue = colorsys.rgb_to_hsv(*rgb)[0]
        assert not GREEN_HUES[0] <= hue <= GREEN_HUES[1], (rgb, hue)


def test_label_rgb_paints_background_black_and_each_id_its_own_colour():
    labels = torch.tensor([[0, 1], [2, 2]])
    rgb = label_rgb(labels)
    assert rgb.shape == (2, 2, 3)
    assert (rgb[0, 0] == 0).all() and not (rgb[0, 1] == rgb[1, 0]).all() and (rgb[1, 0] == rgb[1, 1]).all()


def test_magnitude_prints_the_value_and_the_power_of_ten_above_it():
    assert magnitude(0.0) == "0"
    assert magnitude(torch.zeros(3)) == "0"
    assert magnitude(3e-7) == "3.0e-07 (< 1e-06)"
    assert magnitude(torch.tensor([-2e-3, 1e-9])) == "2.0e-03 (< 1e-02)"
    assert magnitude(torch.ones(2, requires_grad=True) * 0.5) == "5.0e-01 (< 1e+00)"
    assert magnitude(9.96e-7) == "1.0e-06 (< 1e-05)"  # the bound of the printed value, which is true


def test_glue_without_myst_nb_prints_the_value(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_myst_nb(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst_nb)
    glue("sbd", np.float64(62.9))
    assert capsys.readouterr().out == "sbd: 62.9\n"  # a plain number, not np.float64(62.9)


def test_sequence_strip_stays_about_a_column_wide():
    """Eight steps in blocks of at most four: the figure is no wider than the book's column
    (10 inches; wider ones are shrunk until their titles cannot be read), and every step keeps
    its four panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import ris_lite
    from ris_lite.viz import sequence_strip

    torch.manual_seed(0)
    model = ris_lite.RIS(ris_lite.RISConfig(channels=4, input_size=(24, 24)))
    with torch.no_grad():
        masks, scores, stages = model(torch.rand(1, 3, 24, 24), 8, return_stages=True)
    fig = sequence_strip(stages, masks, scores)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert fig.get_size_inches()[0] <= 10 and len(shown) == 4 * 8
    assert sorted(ax.get_title() for ax in shown if ax.get_title())[0].startswith("t=1 ")
    plt.close(fig)
