import math

import pytest
import torch

from ris_lite import (
    FCN,
    RIS,
    ConvLSTMCell,
    ConvLSTMCellEq1,
    SpatialInhibition,
    inhibition_bias_init,
)
from ris_lite.model.convlstm import ConvLSTM


def test_fused_convlstm_equals_eight_convolution_form():
    fused = ConvLSTMCell(5, 7, 3, gate_bias=(1.0, 1.0, 1.0, 0.0))
    literal = ConvLSTMCellEq1(5, 7, 3).load_from_fused(fused)
    x = torch.randn(2, 5, 9, 11)
    h0, c0 = torch.randn(2, 7, 9, 11), torch.randn(2, 7, 9, 11)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    h_a, c_a = fused(x1, (h0, c0))
    h_b, c_b = literal(x2, (h0, c0))
    torch.testing.assert_close(h_a, h_b)
    torch.testing.assert_close(c_a, c_b)
    (h_a.square().sum() + c_a.sum()).backward()
    (h_b.square().sum() + c_b.sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    gw = fused.conv.weight.grad.chunk(4, 0)
    for k, g in zip("ifog", gw):
        torch.testing.assert_close(literal.wx[k].weight.grad, g[:, :5])
        torch.testing.assert_close(literal.wh[k].weight.grad, g[:, 5:])


def test_precomputed_input_projection_matches_plain_step():
    cell = ConvLSTMCell(4, 6, 3)
    x = torch.randn(1, 4, 8, 8)
    state = (torch.randn(1, 6, 8, 8), torch.randn(1, 6, 8, 8))
    for a, b in zip(cell(x, state), cell.step(cell.project_input(x), state)):
        torch.testing.assert_close(a, b)


def test_stack_with_literal_cells_matches_fused_stack():
    fused = ConvLSTM(3, 4, n_layers=2, kernel_size=1)
    literal = ConvLSTM(3, 4, n_layers=2, kernel_size=1, cell=ConvLSTMCellEq1)
    for a, b in zip(literal.cells, fused.cells):
        a.load_from_fused(b)
    x = torch.randn(2, 3, 5, 5)
    for a, b in zip(fused(x, 4), literal(x, 4)):
        torch.testing.assert_close(a, b)


def test_initialisation_follows_the_paper():
    cell = ConvLSTMCell(3, 4, 3)
    assert cell.conv.weight.abs().max() <= 0.08
    i, f, o, g = cell.conv.bias.chunk(4)
    assert (f == 1).all() and (i == 0).all() and (o == 0).all() and (g == 0).all()
    authors = ConvLSTMCell(3, 4, 3, gate_bias=(1, 1, 1, 0))
    assert (authors.conv.bias[:12] == 1).all()


def test_fcn_sizes_for_the_a1_frame_and_the_working_size():
    assert FCN(stride=5).output_size(530, 500) == (106, 100)
    out = FCN(stride=5)(torch.rand(1, 3, 530, 500))
    assert out.shape == (1, 30, 106, 100)
    assert FCN(stride=2)(torch.rand(1, 3, 106, 100)).shape[2:] == (53, 50)
    learned = FCN(stride=5, variant="learned")
    assert learned(torch.rand(1, 3, 530, 500)).shape[2:] == learned.output_size(530, 500) == (106, 100)
    # the anti-aliasing kernel is fixed: a buffer, not a parameter, and no gradient reaches it
    fcn = FCN(stride=5)
    assert "aa_kernel" in dict(fcn.named_buffers())
    assert all(p.data_ptr() != fcn.aa_kernel.data_ptr() for p in fcn.parameters())
    fcn(torch.rand(1, 3, 40, 40)).sum().backward()
    assert fcn.aa_kernel.grad is None and all(p.grad is not None for p in fcn.parameters())


@pytest.mark.parametrize("dilations", [(1, 1, 1, 1), (1, 2, 4, 8)])
def test_receptive_field_formula_matches_the_gradient_support(dilations):
    fcn = FCN(stride=2, dilations=dilations)
    img = torch.rand(1, 3, 200, 200, requires_grad=True)
    out = fcn(img)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = img.grad[0].abs().sum(0).sum(1).nonzero()
    assert int(rows.max() - rows.min() + 1) == fcn.receptive_field()
    assert out.shape[2:] == fcn.output_size(200, 200)


def test_fcn_rejects_bad_dilations():
    with pytest.raises(ValueError, match="dilations"):
        FCN(dilations=(1, 2))


def test_antialias_kernel_sums_to_one_and_is_fixed():
    fcn = FCN(stride=5)
    assert fcn.aa_kernel.shape == (3, 1, 9, 9)
    torch.testing.assert_close(fcn.aa_kernel[0, 0].sum(), torch.tensor(1.0))
    assert "aa_kernel" not in dict(fcn.named_parameters())


def test_softmax_over_pixels_sums_to_one_inside_the_head():
    head = SpatialInhibition(4, bias_init=0.0)
    h = torch.randn(3, 4, 7, 9)
    _, stages = head(h, return_stages=True)
    p = (stages["log_softmax_b"] - head.b).exp()
    torch.testing.assert_close(p.sum((1, 2)), torch.ones(3))


def test_bias_init_puts_an_even_instance_at_one_half():
    A = 60.0
    b = inhibition_bias_init(A)
    assert math.isclose(1 / (1 + math.exp(-(-math.log(A) + b))), 0.5)
    with pytest.raises(ValueError):
        inhibition_bias_init(0)


@pytest.mark.parametrize("size", [(106, 100), (53, 51)])
def test_ris_shapes_for_odd_sizes(size):
    model = RIS(input_size=size)
    masks, scores = model(torch.rand(2, 3, *size), 3)
    assert masks.shape == (2, 3, *size) and scores.shape == (2, 3)
    assert masks.min() >= 0 and masks.max() <= 1 and scores.min() >= 0 and scores.max() <= 1


def test_ris_a1_frame_with_authors_settings():
    model = RIS(fcn_stride=5, input_size=(530, 500), upsample=False, confidence="flatten")
    masks, scores = model(torch.rand(1, 3, 530, 500), 2)
    assert masks.shape == (1, 2, 106, 100) and scores.shape == (1, 2)
    assert model.predict(torch.rand(3, 530, 500), max_steps=2)[0].shape == (530, 500)


def test_ris_rejects_bad_input():
    model = RIS()
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        model(torch.rand(3, 106, 100), 2)
    with pytest.raises(TypeError, match="dtype"):
        model(torch.zeros(1, 3, 106, 100, dtype=torch.uint8), 2)


def test_feedback_with_zero_weights_is_the_paper_model():
    torch.manual_seed(0)
    paper = RIS()
    fed = RIS(feedback=True)
    fed.load_state_dict({**paper.state_dict(), "feedback.weight": torch.zeros_like(fed.feedback.weight)})
    x = torch.rand(2, 3, 106, 100)
    for a, b in zip(paper(x, 4), fed(x, 4)):
        torch.testing.assert_close(a, b)


def test_feedback_carries_earlier_masks_into_later_steps():
    torch.manual_seed(0)
    model = RIS(feedback=True)
    x = torch.rand(1, 3, 106, 100)
    masks, _ = model(x, 2)
    w = model.feedback.weight
    # Step 1 sees all-zero feedback; step 2 depends on step 1's mask through the feedback conv.
    first = torch.autograd.grad(masks[0, 0].sum(), w, retain_graph=True, allow_unused=True)[0]
    second = torch.autograd.grad(masks[0, 1].sum(), w)[0]
    assert (first is None or first.abs().sum() == 0) and second.abs().sum() > 0


def test_coordinate_channels_are_appended_rows_and_columns():
    from ris_lite.model.ris import with_coordinates
    x = torch.rand(2, 3, 5, 4)
    out = with_coordinates(x)
    assert out.shape == (2, 5, 5, 4) and torch.equal(out[:, :3], x)
    torch.testing.assert_close(out[0, 3, :, 0], torch.linspace(0, 1, 5))  # row index, down
    torch.testing.assert_close(out[1, 4, 0], torch.linspace(0, 1, 4))  # column index, across


def test_coords_model_sees_position_and_checks_three_channel_input():
    torch.manual_seed(0)
    model = RIS(coords=True)
    assert model.fcn.in_channels == 5
    plain = torch.full((1, 3, 106, 100), 0.5)
    masks, _ = model(plain, 1)
    # A uniform image gives a position-dependent mask only through the coordinate channels.
    inner = masks[0, 0, 20:-20, 20:-20]
    assert inner.max() - inner.min() > 1e-4
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        model(torch.rand(1, 5, 106, 100), 1)


def test_ris_with_literal_eq1_cells_matches_fused():
    torch.manual_seed(0)
    fused = RIS()
    literal = RIS()
    literal.load_state_dict(fused.state_dict())
    literal.lstm = ConvLSTM(30, 30, 2, 3, cell=ConvLSTMCellEq1)
    for a, b in zip(literal.lstm.cells, fused.lstm.cells):
        a.load_from_fused(b)
    x = torch.rand(1, 3, 53, 50)
    for a, b in zip(fused(x, 3), literal(x, 3)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_old_configs_without_feedback_still_load():
    from ris_lite.model.ris import RISConfig
    d = RISConfig().to_dict()
    del d["feedback"]
    assert RISConfig.from_dict(d).feedback is False


class _Scripted(RIS):
    """RIS whose forward replays given masks and scores (to test predict's rules)."""

    def __init__(self, masks, scores):
        super().__init__()
        self._m, self._s = masks, scores

    def forward(self, images, steps, **kw):
        return self._m[:, :steps], self._s[:, :steps]


def test_predict_stops_at_first_low_score_and_earliest_step_wins():
    m = torch.zeros(1, 5, 4, 4)
    m[0, 0, :2] = 0.9           # step 1: top half
    m[0, 1, 1:3] = 0.9          # step 2: overlaps row 1 -> row 1 stays with step 1
    m[0, 2] = 0.1               # step 3: empty -> no id used
    m[0, 3, 3] = 0.9            # step 4: bottom row
    m[0, 4] = 0.9               # step 5: after the stop -> ignored
    s = torch.tensor([[0.9, 0.9, 0.8, 0.7, 0.2]])
    labels = _Scripted(m, s).predict(torch.rand(1, 3, 4, 4), max_steps=5)[0]
    assert labels[:2].eq(1).all() and labels[2].eq(2).all() and labels[3].eq(3).all()
    assert torch.unique(labels).tolist() == [1, 2, 3]  # consecutive, no id for the empty step


def test_predict_caps_at_max_steps():
    m = torch.zeros(1, 3, 2, 2)
    m[0, :, 0, 0], m[0, 1, 1, 1], m[0, 2, 0, 1] = 0.9, 0.9, 0.9
    labels = _Scripted(m, torch.ones(1, 3)).predict(torch.rand(3, 2, 2), max_steps=2)[0]
    assert labels.max() == 2 and labels[0, 1] == 0


def test_code_paths_are_device_agnostic():
    # The meta device runs every op without data: a hard-coded .cuda()/cpu tensor would fail here.
    model = RIS().to("meta")
    masks, scores = model(torch.rand(2, 3, 106, 100, device="meta"), 3)
    assert masks.device.type == "meta" and scores.shape == (2, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_and_predict():
    model = RIS().cuda()
    masks, _ = model(torch.rand(1, 3, 106, 100, device="cuda"), 2)
    assert masks.is_cuda and model.predict(torch.rand(3, 106, 100))[0].device.type == "cpu"


def test_a_larger_frame_at_the_same_scale_needs_no_inhibition_bias_correction():
    """The rule the whole-frame reader relies on (book chapter 10): padding a plant to the
    whole-frame size (3.24 times the pixels) moves the log-softmax + b of its first mask by
    far less than ln 3.24, so b stays as trained instead of growing by the log of the area."""
    import math

    import torch.nn.functional as F

    from ris_lite import load_pretrained, make_rosette

    model = load_pretrained()
    ratio = 191 * 180 / (106 * 100)
    shifts = []
    for seed in (200_000, 200_001, 200_002, 200_003):
        image, _ = make_rosette(seed)
        top, left = (191 - 106) // 2, (180 - 100) // 2
        big = F.pad(image[None], (left, 180 - 100 - left, top, 191 - 106 - top), mode="replicate")
        with torch.no_grad():
            small_st = model(image[None], 1, return_stages=True)[2]["log_softmax_b"][0, 0]
            big_st = model(big, 1, return_stages=True)[2]["log_softmax_b"][0, 0]
        h, w = small_st.shape
        ft, fl = (big_st.shape[0] - h) // 2, (big_st.shape[1] - w) // 2
        mask = small_st > 0  # the cells the first mask takes
        shifts.append(float((small_st[mask] - big_st[ft:ft + h, fl:fl + w][mask]).mean()))
    assert all(abs(s) < 0.25 * math.log(ratio) for s in shifts), shifts
