"""RIS's two successor families (ours): the set model (K queries at once) and the embedding
model (the discriminative loss), on hand-made cases, then through the CLI like RIS."""

import contextlib
import copy
import io
import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from ris_lite.cli import main
from ris_lite.model.embedding import (
    EmbeddingConfig,
    EmbeddingModel,
    cluster_embeddings,
    keep_largest,
)
from ris_lite.model.kinds import kind_of
from ris_lite.model.set_prediction import SetConfig, SetPredictor
from ris_lite.pretrained import load_model
from ris_lite.training.config import TrainConfig
from ris_lite.training.discriminative import discriminative_loss
from ris_lite.training.loss import ris_loss
from ris_lite.training.set_loss import set_loss
from ris_lite.training.trainer import Trainer


# ----- the set model ------------------------------------------------------------------------
def test_a_query_mask_is_its_embedding_dot_product():
    model = SetPredictor(channels=4, embed_dim=8, heads=2, queries=5).eval()
    with torch.no_grad():
        model.mask_scale.fill_(1.7)
    images = torch.rand(2, 3, 20, 18)
    with torch.no_grad():
        masks, scores, st = model(images, return_stages=True)
    q, pix = st["query_embeddings"], st["pixel_embeddings"]  # (B, K, E), (B, E, h, w)
    assert masks.shape == (2, 5, 20, 18) and scores.shape == (2, 5) and pix.shape[2:] == (10, 9)
    E = q.shape[-1]
    for b, k in ((0, 0), (1, 3)):
        by_hand = torch.zeros(10, 9)
        for i in range(10):
            for j in range(9):
                by_hand[i, j] = 1.7 * sum(float(q[b, k, e]) * float(pix[b, e, i, j]) for e in range(E)) / math.sqrt(E)
        small = torch.sigmoid(by_hand)[None, None]
        up = F.interpolate(small, size=(20, 18), mode="bilinear", align_corners=False)[0, 0]
        assert torch.allclose(masks[b, k], up, atol=1e-5)
        w, c = model.score.weight[0], model.score.bias[0]
        assert torch.allclose(scores[b, k], torch.sigmoid((st["queries_out"][b, k] * w).sum() + c), atol=1e-6)
    # both embeddings are layer-normalised (norm sqrt(E)): no logit beyond s sqrt(E)
    assert torch.allclose(q.norm(dim=-1), torch.full((2, 5), math.sqrt(E)), atol=1e-3)
    assert float(st["mask_logits"].abs().max()) <= 1.7 * math.sqrt(E) + 1e-4
    # the queries read the image: another image gives other query embeddings (and scores)
    assert not torch.allclose(q[0], q[1], atol=1e-4)


def _soft_iou(p, y):
    inter = (p * y).sum()
    return float(inter / (p.sum() + y.sum() - inter + 1e-6))


def test_the_set_loss_matches_a_hand_computation():
    # three queries, two leaves (a padded third target slot); query 2 fits leaf 0 best, so a
    # loss that, like ris_loss, only matches the first n=2 queries cannot find the optimum
    masks = torch.tensor([[[[0.2, 0.1], [0.1, 0.0]],
                           [[0.0, 0.1], [0.9, 0.8]],
                           [[0.9, 0.8], [0.1, 0.0]]]])
    targets = torch.zeros(1, 3, 2, 2, dtype=torch.bool)
    targets[0, 0, 0] = True  # leaf 0: the top row
    targets[0, 1, 1] = True  # leaf 1: the bottom row
    counts = torch.tensor([2])
    scores = torch.tensor([[0.3, 0.6, 0.8]])
    best, best_pairs = -1.0, None
    for queries in itertools.permutations(range(3), 2):  # query for leaf 0, query for leaf 1
        total = sum(_soft_iou(masks[0, q], targets[0, g].float()) for g, q in enumerate(queries))
        if total > best:
            best, best_pairs = total, queries
    assert best_pairs == (2, 1)
    matched = set(best_pairs)
    bce = sum(-math.log(s) if k in matched else -math.log(1 - s) for k, s in enumerate(scores[0].tolist()))
    loss, parts = set_loss(masks, scores, targets, counts, return_parts=True)
    assert float(loss) == pytest.approx(-best + bce, abs=1e-5)
    queries, leaves = parts["matches"][0]
    assert dict(zip(leaves.tolist(), queries.tolist())) == {0: 2, 1: 1}
    assert parts["iou"] == pytest.approx(best / 2, abs=1e-6)
    # RIS's loss on the same masks matches queries 0 and 1 only and scores them by position
    assert float(ris_loss(masks, scores, targets, counts)) != pytest.approx(float(loss), abs=1e-3)


def test_set_predict_keeps_confident_queries_most_confident_first():
    model = SetPredictor(channels=4, embed_dim=8, heads=2, queries=3, input_size=(2, 3))
    masks = torch.zeros(1, 3, 2, 3)
    masks[0, 0] = 0.9  # everywhere, but scored 0.3: dropped
    masks[0, 1, :, :2] = 0.8  # left two columns, score 0.6
    masks[0, 2, :, 1:] = 0.7  # right two columns, score 0.9: claims the middle first
    model.forward = lambda images: (masks, torch.tensor([[0.3, 0.6, 0.9]]))
    kept = model.kept_masks(torch.rand(3, 2, 3))[0]
    assert torch.equal(kept, masks[0, [2, 1]])
    assert torch.equal(model.predict(torch.rand(3, 2, 3))[0], torch.tensor([[2, 1, 1], [2, 1, 1]]))
    assert torch.equal(model.predict(torch.rand(3, 2, 3), max_steps=1)[0], torch.tensor([[0, 1, 1], [0, 1, 1]]))


def test_the_set_loss_refuses_more_leaves_than_queries():
    masks, scores = torch.rand(1, 2, 4, 4), torch.rand(1, 2)
    targets = torch.ones(1, 3, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="3 instances but the set model has 2 queries"):
        set_loss(masks, scores, targets, torch.tensor([3]))


# ----- the embedding model ------------------------------------------------------------------
def _two_leaves(b_centre):
    """One row of 7 pixels, E = 2: leaf A on pixels 0-2 around (0, 0), leaf B on 3-5 around
    ``b_centre``, pixel 6 background with a wild embedding; a padded third target slot with
    pixels that must be ignored (count 2)."""
    a = [(-0.3, 0.0), (0.3, 0.0), (0.0, 0.0)]
    b = [(b_centre[0], -0.3), (b_centre[0], 0.3), (b_centre[0], 0.0)]
    emb = torch.tensor(a + b + [(100.0, 100.0)]).T.reshape(1, 2, 1, 7)
    targets = torch.zeros(1, 3, 1, 7, dtype=torch.bool)
    targets[0, 0, 0, :3] = True
    targets[0, 1, 0, 3:6] = True
    targets[0, 2, 0, 6] = True  # beyond the count: not an instance
    return emb, targets, torch.tensor([2])


def test_the_discriminative_loss_is_zero_for_separated_embeddings():
    emb, targets, counts = _two_leaves((5.0, 0.0))  # within 0.3 < delta_v of each mean, means 5 > 2 delta_d
    loss, parts = discriminative_loss(emb, targets, counts, return_parts=True)
    assert parts["var"] == pytest.approx(0, abs=1e-7) and parts["dist"] == 0
    # only the regulariser is left: 0.001 x the mean norm of the means (0 and 5)
    assert float(loss) == pytest.approx(0.001 * (0 + 5) / 2, abs=1e-6)
    assert float(discriminative_loss(emb, targets, counts, weights=(1, 1, 0))) == pytest.approx(0, abs=1e-7)


def test_the_discriminative_loss_pulls_and_pushes():
    emb, targets, counts = _two_leaves((5.0, 0.0))
    emb[0, 0, 0, 0] = -1.2  # leaf A: (-1.2, 0), (0.3, 0), (0, 0); mean (-0.3, 0); distances 0.9, 0.6, 0.3
    pull = ((0.9 - 0.5) ** 2 + (0.6 - 0.5) ** 2 + 0) / 3 / 2  # leaf A's mean hinge, over C = 2 leaves
    reg = 0.001 * (0.3 + 5.0) / 2
    assert float(discriminative_loss(emb, targets, counts)) == pytest.approx(pull + reg, abs=1e-6)
    emb, targets, counts = _two_leaves((2.0, 0.0))  # means 2 apart, the margin is 2 x 1.5
    push = ((3 - 2) ** 2 + (3 - 2) ** 2) / (2 * 1)  # both ordered pairs, over C (C - 1)
    assert float(discriminative_loss(emb, targets, counts)) == pytest.approx(push + 0.001 * (0 + 2) / 2, abs=1e-6)
    # a batch of both images is the mean of the two
    e1, t1, _ = _two_leaves((5.0, 0.0))
    both = discriminative_loss(torch.cat([e1, emb]), torch.cat([t1, targets]), torch.tensor([2, 2]))
    assert float(both) == pytest.approx((0.001 * 5 / 2 + push + 0.001) / 2, abs=1e-6)


def _hand_made_plant(seed=0):
    """A 6 x 8 plant of three leaves (ids in raster order) and background, E = 3: each leaf's
    embeddings spread up to 0.48 from their mean (under delta_v = 0.5, so up to 0.96 from each
    other: a radius of delta_v around a seed would split a leaf), the means at least 3.6 apart."""
    labels = torch.tensor([[0, 1, 1, 1, 0, 2, 2, 0],
                           [0, 1, 1, 1, 0, 2, 2, 0],
                           [0, 1, 1, 0, 0, 2, 2, 2],
                           [0, 0, 3, 3, 3, 3, 2, 0],
                           [0, 3, 3, 3, 3, 3, 0, 0],
                           [0, 0, 0, 3, 3, 0, 0, 0]])
    centres = torch.tensor([[0.0, 0.0, 0.0], [3.6, 0.0, 0.0], [0.0, 3.5, 1.0]])
    spread = torch.randn(6, 8, 3, generator=torch.Generator().manual_seed(seed))
    emb = torch.zeros(6, 8, 3)
    for k in (1, 2, 3):
        leaf = labels == k
        offsets = spread[leaf] - spread[leaf].mean(0)
        emb[leaf] = centres[k - 1] + 0.48 * offsets / offsets.norm(dim=1).max()
    emb[labels == 0] = torch.tensor([40.0, -40.0, 9.0])  # background: anywhere
    return emb.permute(2, 0, 1).contiguous(), labels


def test_clustering_recovers_hand_made_embeddings_exactly():
    emb, labels = _hand_made_plant()
    leaves = torch.stack([labels == k for k in (1, 2, 3)])[None]
    _, parts = discriminative_loss(emb[None], leaves, torch.tensor([3]), return_parts=True)
    assert parts["var"] == 0 and parts["dist"] == 0  # the case the clustering must get exactly
    found = cluster_embeddings(emb, labels > 0, bandwidth=2 * 0.5)
    assert found.dtype == torch.int64 and torch.equal(found, labels)
    # a radius of delta_v splits leaves whose embeddings lie up to 2 delta_v apart
    assert int(cluster_embeddings(emb, labels > 0, bandwidth=0.5).max()) > 3
    # through predict: the model's outputs replaced by the hand-made ones
    model = EmbeddingModel(channels=4, embed_dim=3, input_size=(6, 8))
    fg_logits = torch.where(labels > 0, 5.0, -5.0)
    model.forward = lambda images: (emb[None].expand(2, -1, -1, -1), fg_logits[None].expand(2, -1, -1))
    for pred in model.predict(torch.rand(2, 3, 6, 8), min_size=0):
        assert torch.equal(pred, labels)
    # at most max_steps segments, the largest: leaf 3 (11 pixels) and leaf 1 (8, tied with leaf 2: the earlier)
    two = torch.where(labels == 2, 0, torch.where(labels == 3, 2, labels))
    assert torch.equal(keep_largest(labels, 2), two)
    assert torch.equal(model.predict(torch.rand(1, 3, 6, 8), max_steps=2, min_size=0)[0], two)


def test_small_clusters_join_the_nearest_leaf():
    emb, labels = _hand_made_plant()
    emb[:, 0, 1] = torch.tensor([1.6, 0.0, 0.0])  # a stray pixel of leaf 1, beyond the bandwidth
    alone = cluster_embeddings(emb, labels > 0, bandwidth=1.0)
    assert int(alone.max()) == 4  # its own cluster ...
    merged = cluster_embeddings(emb, labels > 0, bandwidth=1.0, min_size=2)
    assert torch.equal(merged, labels)  # ... until min_size sends it to leaf 1 (mean 0, not 3.6)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"SetPredictor expects images \(B,3,H,W\), got \(1, 1, 8, 8\)"):
        SetPredictor(channels=4, embed_dim=8)(torch.rand(1, 1, 8, 8))
    with pytest.raises(TypeError, match="float images"):
        EmbeddingModel(channels=4)(torch.zeros(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="no field"):
        SetConfig.from_dict({"queries": 3, "stepz": 1})
    with pytest.raises(ValueError, match="2 delta_v < delta_d"):
        EmbeddingConfig(delta_v=1.0, delta_d=1.5)
    with pytest.raises(ValueError, match="embeddings must be"):
        cluster_embeddings(torch.rand(2, 4, 4), torch.ones(5, 4, dtype=torch.bool), 1.0)
    with pytest.raises(ValueError, match="crf"):
        SetPredictor(channels=4, embed_dim=8).predict(torch.rand(3, 8, 8), crf=True)
    # uint8 images are divided by 255, as RIS.predict does
    model = EmbeddingModel(channels=4)
    image = torch.randint(0, 256, (3, 12, 10), dtype=torch.uint8)
    assert torch.equal(model.predict(image)[0], model.predict(image.float() / 255)[0])


# ----- through the CLI ------------------------------------------------------------------------
KINDS = ("ris", "set", "embedding")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each kind trained 2 steps by ``ris-lite train``; the trained models kept in memory."""
    kept = {}
    save = Trainer.save

    def keep(self, path=None):
        kept[self.config.model_kind] = copy.deepcopy(self.model).eval()
        return save(self, path)

    out, stages = {}, {}
    mp = pytest.MonkeyPatch()
    mp.setattr(Trainer, "save", keep)
    try:
        for kind in KINDS:
            out[kind] = tmp_path_factory.mktemp(kind)
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                assert main(["train", "--out", str(out[kind]), "--max-steps", "2", "--quiet", "--train-images", "4",
                             "--batch-size", "2", "--curriculum", "2,1,3;4,2,5", "--model-kind", kind,
                             "--channels", "8"]) == 0
            stages[kind] = json.loads(buf.getvalue().strip().splitlines()[-1])["stage"]
    finally:
        mp.undo()
    return out, kept, stages


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_and_loads_back_with_identical_outputs(runs, kind):
    out, kept, stages = runs
    assert stages[kind] == (0 if kind == "ris" else 1)  # set / embedding: the last stage's plants from the start
    model = load_model(out[kind] / "last.pt")
    assert kind_of(model) == kind and not model.training
    images = torch.rand(2, 3, 106, 100)
    with torch.no_grad():
        args = (images, 3) if kind == "ris" else (images,)
        for a, b in zip(kept[kind](*args), model(*args)):
            assert torch.equal(a, b)
    labels = model.predict(images, max_steps=3)
    assert len(labels) == 2 and all(x.dtype == torch.int64 and x.shape == (106, 100) for x in labels)


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_scores_each_kind(runs, kind, capsys):
    out, _, _ = runs
    assert main(["evaluate", "--split", "val", "--limit", "2", "--json", "--max-steps", "3",
                 "--checkpoint", str(out[kind] / "last.pt")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"sbd", "fgbg_dice", "dic", "abs_dic"} <= set(r) and r["n_images"] == 2
    assert main(["evaluate", "--split", "val", "--limit", "1", "--quiet", "--checkpoint", str(out[kind] / "last.pt")]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == kind  # the table names the model's kind


def test_a_successor_run_resumes(runs, capsys):
    out, _, _ = runs
    assert main(["train", "--out", str(out["set"]), "--resume", "auto", "--max-steps", "3", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3


@pytest.mark.parametrize("argv,message", [
    (["--model-kind", "set", "--feedback"], "--feedback configures RIS"),
    (["--model-kind", "embedding", "--overlap-weight", "0.1"], "--overlap-weight configures RIS"),
    (["--model-kind", "set", "--queries", "2", "--curriculum", "2,1,3"], "up to 3 instances but the set model has 2"),
    (["--model-kind", "embedding", "--queries", "8"], "--queries belongs to --model-kind set"),
    (["--embed-dim", "8"], "belong to --model-kind set / embedding"),
    (["--model-kind", "set", "--data", "people"], "built on the plant FCN"),
])
def test_bad_successor_options_are_one_line_errors(argv, message, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--max-steps", "1", "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_crf_is_refused_for_a_set_model(runs, capsys):
    out, _, _ = runs
    assert main(["evaluate", "--limit", "1", "--crf", "--checkpoint", str(out["set"] / "last.pt")]) == 2
    assert "a set model predicts without it" in capsys.readouterr().err


def test_init_takes_a_model_of_its_own_kind_only(runs, tmp_path, capsys):
    out, _, _ = runs
    start = str(out["embedding"] / "last.pt")
    init = load_model(start)
    t = Trainer(TrainConfig(model=init.config.to_dict(), model_kind="embedding"), tmp_path / "t")
    t.load_weights(start)
    assert all(torch.equal(a, b) for a, b in zip(t.model.state_dict().values(), init.state_dict().values()))
    assert main(["train", "--out", str(tmp_path / "ft"), "--max-steps", "1", "--quiet", "--model-kind", "embedding",
                 "--init", start]) == 0
    assert torch.load(tmp_path / "ft" / "last.pt", weights_only=True)["config"]["init"] == start
    # issue 49: without --model-kind the checkpoint says what it holds; a --model-kind that differs is refused
    assert main(["train", "--out", str(tmp_path), "--max-steps", "1", "--model-kind", "ris",
                 "--init", str(out["set"] / "last.pt")]) == 2
    assert "holds a set model: pass --model-kind set" in capsys.readouterr().err
