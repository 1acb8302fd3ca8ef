import numpy as np
import pytest
import torch
from PIL import Image

from ris_lite import CVPPP, read_label_png, write_label_png


def _write_plant(root, name, labels, size=None, mode="P"):
    H, W = labels.shape
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 1] = 60 + 20 * (labels > 0)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(root / f"{name}_rgb.png")
    lab = Image.fromarray(labels.astype(np.uint8), mode="P" if mode == "P" else "L")
    if mode == "P":
        lab.putpalette([0, 0, 0] + list(np.arange(3, 768) % 256))
    lab.save(root / f"{name}_label.png")
    Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(root / f"{name}_fg.png")


@pytest.fixture
def a1_folder(tmp_path):
    lab = np.zeros((53, 50), np.int64)
    lab[5:20, 5:20] = 1
    lab[25:40, 10:30] = 4  # a gap: ids 2, 3 unused
    _write_plant(tmp_path, "plant001", lab)
    lab2 = np.zeros((53, 50), np.int64)
    lab2[10:30, 10:30] = 2
    _write_plant(tmp_path, "plant007", lab2, mode="L")  # non-contiguous plant ids
    return tmp_path


def test_reads_rgba_and_palette_labels_with_gaps(a1_folder):
    ds = CVPPP(a1_folder)
    assert ds.names == ["plant001", "plant007"]
    img, masks = ds[0]
    assert img.shape == (3, 53, 50) and img.dtype == torch.float32 and float(img.max()) <= 1
    assert masks.shape == (2, 53, 50) and masks.dtype == torch.bool
    assert set(torch.unique(ds.labels(0)).tolist()) == {0, 1, 4}  # raw ids kept for the metrics
    assert ds[1][1].shape[0] == 1


def test_resize_to_working_size(a1_folder):
    img, masks = CVPPP(a1_folder, size=(26, 25))[0]
    assert img.shape == (3, 26, 25) and masks.shape[1:] == (26, 25)


def test_missing_label_names_the_file(a1_folder):
    (a1_folder / "plant007_label.png").unlink()
    with pytest.raises(FileNotFoundError, match="plant007_label.png"):
        CVPPP(a1_folder)
    assert len(CVPPP(a1_folder, require_labels=False)) == 2


def test_unreadable_file_names_the_file(a1_folder):
    (a1_folder / "plant001_rgb.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="plant001_rgb.png"):
        CVPPP(a1_folder)[0]


def test_size_mismatch_names_both_files(a1_folder):
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="P").save(a1_folder / "plant001_label.png")
    with pytest.raises(ValueError, match="plant001_rgb.png.*plant001_label.png"):
        CVPPP(a1_folder)[0]


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images matching 'plantXXX_rgb.png'"):
        CVPPP(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        CVPPP(tmp_path / "nope")


def test_write_label_png_is_official_format(tmp_path):
    lab = torch.zeros(20, 20, dtype=torch.int64)
    lab[2:8, 2:8] = 5
    lab[10:15, 10:15] = 9
    path = write_label_png(lab, tmp_path / "plant001_label.png", size=(40, 40))
    img = Image.open(path)
    assert img.mode == "P" and img.size == (40, 40)
    back = read_label_png(path)
    assert set(np.unique(back)) == {0, 1, 2}  # consecutive 1..N, background 0
    assert (back[4:16, 4:16] == 1).all()
