import pytest
import torch

from ris_lite import RotateFlip, collate_instances, labels_to_masks, make_rosette, masks_to_labels
from ris_lite.data.augment import rotate


def test_rotation_moves_image_and_masks_together():
    img, lab = make_rosette(5)
    masks = labels_to_masks(lab)
    gen = torch.Generator().manual_seed(1)
    out_img, out_masks = RotateFlip(generator=gen)(img, masks)
    # Replay the same draw on the label map: it must equal the rotated masks' label map.
    gen = torch.Generator().manual_seed(1)
    angle = float(torch.rand((), generator=gen)) * 360.0
    flip = float(torch.rand((), generator=gen)) < 0.5
    rot_lab = rotate(lab.unsqueeze(0), angle, "nearest", fill=0)[0]
    if flip:
        rot_lab = rot_lab.flip(-1)
    kept = [i for i in range(1, int(lab.max()) + 1) if (rot_lab == i).any()]
    assert out_masks.shape[0] == len(kept)
    for k, i in enumerate(kept):
        assert torch.equal(out_masks[k], rot_lab == i)
    assert out_img.shape == img.shape
    # the plant is green wherever a leaf mask is: image and masks were not misaligned
    fg = out_masks.any(0)
    assert out_img[1][fg].mean() > out_img[1][~fg].mean()


def test_instances_that_leave_the_frame_are_dropped():
    img = torch.rand(3, 40, 40)
    masks = torch.zeros(2, 40, 40, dtype=torch.bool)
    masks[0, 15:25, 15:25] = True
    masks[1, 0, 0] = True  # a corner pixel: rotated out of the frame for most angles
    dropped = 0
    for seed in range(20):
        _, out = RotateFlip(generator=torch.Generator().manual_seed(seed))(img, masks)
        assert out.flatten(1).any(1).all()  # never an empty target
        dropped += out.shape[0] == 1
    assert dropped > 0


def test_rotateflip_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one size"):
        RotateFlip()(torch.rand(3, 10, 10), torch.zeros(1, 9, 10, dtype=torch.bool))


def test_collate_pads_and_counts():
    a = (torch.rand(3, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool))
    b = (torch.rand(3, 8, 8), torch.ones(5, 8, 8, dtype=torch.bool))
    c = (torch.rand(3, 8, 8), torch.zeros(0, 8, 8, dtype=torch.bool))
    images, targets, counts = collate_instances([a, b, c])
    assert images.shape == (3, 3, 8, 8) and targets.shape == (3, 5, 8, 8)
    assert counts.tolist() == [2, 5, 0]
    assert targets[0, 2:].sum() == 0 and targets[2].sum() == 0
    assert torch.equal(masks_to_labels(targets[1]), torch.ones(8, 8, dtype=torch.int64))


def test_collate_errors():
    with pytest.raises(ValueError, match="empty"):
        collate_instances([])
    with pytest.raises(ValueError, match="one shape"):
        collate_instances([(torch.rand(3, 8, 8), torch.zeros(0, 8, 8, dtype=torch.bool)),
                           (torch.rand(3, 9, 8), torch.zeros(0, 9, 8, dtype=torch.bool))])

@pytest.mark.parametrize("k", [1, 2, 3])
def test_quarter_turns_equal_rot90(k):
    x = torch.arange(2 * 6 * 6).view(2, 6, 6)
    assert torch.equal(rotate(x, 90.0 * k, "nearest"), torch.rot90(x, k, (1, 2)))


def test_zero_angle_is_identity_and_dtype_kept():
    x = torch.rand(3, 7, 9)
    assert torch.allclose(rotate(x, 0.0), x, atol=1e-6)
    m = torch.rand(2, 7, 9) > 0.5
    out = rotate(m, 0.0, "nearest")
    assert out.dtype == torch.bool and torch.equal(out, m)


def test_corners_take_the_fill_and_nearest_never_blends():
    lab = torch.randint(0, 5, (1, 20, 30))
    out = rotate(lab, 37.0, "nearest", fill=0)
    assert set(out.unique().tolist()) <= set(lab.unique().tolist()) | {0}
    img = torch.zeros(3, 20, 30)
    out = rotate(img, 45.0, "bilinear", fill=[0.2, 0.4, 0.6])
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.2, 0.4, 0.6]))


def test_rotate_errors():
    with pytest.raises(ValueError, match=r"\(C,H,W\)"):
        rotate(torch.zeros(4, 4), 10.0)
    with pytest.raises(ValueError, match="mode"):
        rotate(torch.zeros(1, 4, 4), 10.0, "cubic")
    with pytest.raises(ValueError, match="fill"):
        rotate(torch.zeros(3, 4, 4), 10.0, fill=[0.0, 1.0])
