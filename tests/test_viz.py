"""The book's figure helpers: overlay colours that are never leaf-green, portable magnitudes."""

import colorsys

import torch

from ris_lite.viz import GREEN_HUES, label_rgb, magnitude, palette


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


def test_magnitude_prints_the_power_of_ten_above_the_difference():
    assert magnitude(0.0) == "0"
    assert magnitude(torch.zeros(3)) == "0"
    assert magnitude(3e-7) == "< 1e-06"
    assert magnitude(torch.tensor([-2e-3, 1e-9])) == "< 1e-02"
    assert magnitude(torch.ones(2, requires_grad=True) * 0.5) == "< 1e+00"
