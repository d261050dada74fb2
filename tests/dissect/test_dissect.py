"""Network Dissection: exact streaming quantiles, the batched tally against a per-unit NumPy
computation, the two tally engines, resizing, and a network whose concept units are known by
construction."""
import json
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from broden_fixtures import stacked_planes, write_tricky_broden
from reglens import dissect, models
from reglens.dissect import cpu as dissect_cpu
from reglens.dissect.geometry import _expand, activated_runs, shrinks
from reglens.data import broden as broden_io
from reglens.data.synthetic_broden import label_numbers, write_broden
from reglens.models.base import Normalize
from reglens.analyses import REGISTRY
from reglens.stages.common import save_model
from reglens.stages.dissect import run_dissect
from references import dissect_lite
from references.dissect_numpy import reference_iou_numpy

N_KNOWN = 400


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """400 images where red shapes and vertically striped images are rare: each covers at most 0.5%
    of all pixels, so a perfect detector of either fits within the top 0.005 quantile."""
    root = tmp_path_factory.mktemp("broden") / "known"
    info = write_broden(root, n_images=N_KNOWN, seg_size=32, scale=2, seed=0,
                        texture_images={"vertical stripes": 2, "horizontal stripes": 8, "checkers": 8},
                        color_weights={"red": 0.05})
    return root, info


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_streaming_quantile_is_numpys_percentile(batch):
    rng = np.random.default_rng(batch)
    values = rng.normal(size=(3, 1234)).astype(np.float32)
    values[2] = np.round(values[2])  # ties
    for quantile in (0.005, 0.2):
        q = dissect.StreamingQuantile(3, values.shape[1], quantile, "cpu")
        for start in range(0, values.shape[1], batch):
            q.update(torch.from_numpy(values[:, start:start + batch]))
        expected = np.percentile(values.astype(np.float64), 100 * (1 - quantile), axis=1)
        np.testing.assert_allclose(q.thresholds().numpy(), expected, rtol=1e-6, atol=1e-6)
        assert q.top.shape[1] <= quantile * values.shape[1] + 2  # bounded memory


@pytest.mark.parametrize("engine", ["numba", "torch"])
@pytest.mark.parametrize("union", ["lite", "original"])
@pytest.mark.parametrize("quantile", [0.005, 0.2])
def test_batched_tally_equals_the_per_unit_numpy_definition(small, union, quantile, engine):
    root, _ = small
    b = broden_io.Broden(root)
    planes = stacked_planes(b)
    rng = np.random.default_rng(0)
    # half the units random, half following a label's mask (so IoUs are far from zero)
    labels = torch.from_numpy(planes[:, 0]).float()
    follow = F.avg_pool2d(((labels.unsqueeze(1) == torch.tensor([1., 4, 9]).view(1, 3, 1, 1)).float()), 4)
    features = np.concatenate([rng.normal(size=(len(b), 3, 4, 4)),
                               follow.numpy() + 0.01 * rng.normal(size=(len(b), 3, 4, 4))], 1).astype(np.float32)
    lc = b.label_category_matrix()
    thresholds, expected = reference_iou_numpy(features, planes, lc, quantile, b.seg_shape, union)
    q = dissect.StreamingQuantile(6, len(b) * 16, quantile, "cpu")
    q.update(torch.from_numpy(features).transpose(0, 1).flatten(1))
    # a small chunk so that one batch's unit-image pairs span several chunks
    tally = dissect.ConceptTally(6, torch.from_numpy(lc), union, b.seg_shape, "cpu", chunk_bytes=4 * 256 * 7,
                                 engine=engine)
    thr = q.thresholds()
    for start in range(0, len(b), 5):
        labels = dissect.BatchLabels(torch.from_numpy(planes[start:start + 5]).flatten(2), torch.from_numpy(lc), False,
                                     engine)
        tally.update(torch.from_numpy(features[start:start + 5]), thr, labels)
    np.testing.assert_allclose(q.thresholds().numpy(), thresholds, rtol=1e-5)
    np.testing.assert_allclose(tally.iou().numpy(), expected, rtol=1e-9, atol=1e-12)
    assert expected.max() > (0.1 if quantile == 0.2 else 0.005)


class KnownUnits(nn.Module):
    """unit 0: red pixels; unit 1: vertically striped images (horizontal minus vertical contrast,
    over the whole image); unit 2: dead; unit 3: a fixed place in every image; unit 4: noise."""

    def forward(self, x):
        red = F.avg_pool2d(F.relu(x[:, 0] - x[:, 1] - x[:, 2] - 0.5).unsqueeze(1) * 2, 2)
        dx = (x[..., 1:] - x[..., :-1]).abs().mean((1, 2, 3))
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((1, 2, 3))
        vertical = F.relu(dx - dy - 0.05).view(-1, 1, 1, 1).expand_as(red)
        rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        place = torch.exp(-((rows - 9) ** 2 + (cols - 20) ** 2) / 8).expand_as(red)
        noise = torch.rand(red.shape, generator=torch.Generator().manual_seed(int(x.sum() * 1000) % 2**31))
        return torch.cat([red, vertical, torch.zeros_like(red), place, noise], 1)


class KnownNet(nn.Module):
    layer_names = ("body.known",)

    def __init__(self):
        super().__init__()
        self.normalize = Normalize([0, 0, 0], [1, 1, 1])
        self.body = nn.Sequential(OrderedDict(known=KnownUnits()))


def test_dissection_names_the_units_built_to_detect_concepts(known):
    root, info = known
    numbers = label_numbers()
    total = N_KNOWN * 32 * 32
    assert info["label_pixels"][numbers["red"]] <= 0.005 * total           # the premise of the test
    assert info["label_pixels"][numbers["vertical stripes"]] <= 0.005 * total
    b = broden_io.Broden(root)
    result = dissect.dissect(KnownNet(), b, {"input_size": 64, "workers": 0, "batch_size": 32})
    units = dissect.unit_table(result).set_index("unit")
    assert units.loc[0, "concept"] == "red" and units.loc[0, "iou"] > 0.9
    assert units.loc[1, "concept"] == "vertical stripes" and units.loc[1, "iou"] > 0.9
    assert units.detector.tolist() == [True, True, False, False, False]
    assert units.loc[2, "concept"] == "-" and units.loc[2, "iou"] == 0
    summary = dissect.summarize(units.reset_index(), b.categories, result["settings"])
    assert summary["total"]["detectors"] == 2 and summary["total"]["unique_concepts"] == 2
    assert summary["total"]["detectors_by_category"] == {"color": 1, "object": 0, "part": 0, "scene": 0,
                                                         "texture": 1}
    # the per-category count also credits a unit's best concept in each other category above 0.04
    per_category = sum(units[f"best_{c}_iou"].gt(0.04).groupby(units[f"best_{c}"]).any().sum()
                       for c in b.categories)
    assert summary["total"]["unique_concepts_per_category"] == per_category >= 2
    # TUKL's score by hand: distinct detected concepts in each layer, summed (one layer here)
    assert summary["total"]["interpretability_score"] == units[units.detector].concept.nunique() == 2


def test_interpretability_score_sums_each_layers_distinct_concepts(tmp_path):
    """A hand count: layer a detects red twice and stripes once (2 distinct), layer b red again and
    grass (2): TUKL's score is 4, while the network as a whole has 3 distinct concepts."""
    rows = [("a", "red", True), ("a", "red", True), ("a", "stripes", True), ("a", "sky", False),
            ("b", "red", True), ("b", "grass", True), ("b", "-", False)]
    units = pd.DataFrame([{"unit": i, "layer": layer, "concept": c, "category": "color", "detector": d,
                           "iou": 0.1 if d else 0.0, "best_color": c, "best_color_iou": 0.1 if d else 0.0}
                          for i, (layer, c, d) in enumerate(rows)])
    summary = dissect.summarize(units, ["color"], {"iou_threshold": 0.04, "conventions": "reglens"})
    assert summary["total"]["interpretability_score"] == 4 and summary["total"]["unique_concepts"] == 3
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    tidy = REGISTRY["dissect"].read({"summary": tmp_path / "summary.json"})
    assert tidy["dissect_interpretability_score"] == 4
    assert tidy["dissect_unique_concepts@a"] + tidy["dissect_unique_concepts@b"] == 4


def test_run_dissect_writes_units_summary_and_figure_data(known, tmp_path):
    root, _ = known
    model = models.build("simplecnn", 3, 32, 10, width=0.25)
    save_model(model, "simplecnn", {"in_channels": 3, "input_size": 32, "num_classes": 10, "width": 0.25},
                tmp_path / "model.pt")
    out = REGISTRY["dissect"].under(tmp_path / "cell")
    summary = run_dissect(tmp_path / "model.pt", root, out,
                                  {"input_size": 32, "workers": 0, "top_units": 3, "top_images": 2}, "cpu")
    units = __import__("pandas").read_csv(out["units"])
    assert len(units) == summary["total"]["units"] == 8 + 16
    assert summary["counting"] == dissect.COUNTING
    shown = torch.load(out["top"], weights_only=True)
    assert len(shown) == 3 and shown[0]["images"].shape == (2, 3, 32, 32)
    assert [s["iou"] for s in shown] == sorted(units.iou, reverse=True)[:3]


@pytest.mark.parametrize("input_size", [16, 32])   # 32: block1's 16x16 maps against 8-pixel masks (PIL shrinks them)
def test_lite_conventions_match_a_port_of_lites_loop(tmp_path, input_size):
    root = write_tricky_broden(tmp_path / "tricky")
    torch.manual_seed(0)
    model = models.build("simplecnn", 3, input_size, 10, width=0.25).eval()
    cfg = dissect.settings({"conventions": "lite", "input_size": input_size, "workers": 0, "batch_size": 7,
                            "quantile": 0.05})
    b = dissect.open_broden(root, cfg)
    assert len(b) == 34 and "material" not in b.categories               # Lite's image filter and categories
    assert b.primary[5] == b.categories.index("part")                    # a coverage tie goes to the last
    assert b.primary[16] == len(b.categories) - 1                        # a label in no category: the last
    result = dissect.dissect(model, b, cfg)
    units = dissect.unit_table(result)
    dataset = broden_io.BrodenImages(b, input_size, 3)
    images = torch.stack([dataset[i][1] for i in range(len(b))]).float() / 255
    with torch.no_grad():
        feats = dissect.layer_features(model, images, list(model.layer_names))
    lc = result["label_category"].numpy()
    pixels = [np.stack([broden_io.decode_mask(np.asarray(Image.open(root / "images" / m).convert("RGB")))
                        for m in e.masks]).astype(np.int64) if e.masks else np.zeros((0, 8, 8), np.int64)
              for e in b.images]
    scalars = [e.image_labels for e in b.images]
    checked_detectors = 0
    assert any(shrinks(f.shape, b.seg_shape) for f in feats.values()) == (input_size == 32)
    for layer, f in feats.items():
        f = f.numpy().astype(np.float64)
        np.testing.assert_allclose(result["thresholds"][layer].numpy(), dissect_lite.thresholds(f, 0.05), rtol=1e-5)
        port = dissect_lite.tally(f.astype(np.float32), result["thresholds"][layer].numpy(), pixels, scalars, lc,
                                  b.seg_shape)
        np.testing.assert_allclose(result["iou"][layer].numpy(), port["iou"], rtol=0, atol=1e-9)
        label, category, score = dissect_lite.best_labels(port["iou"], lc.argmax(1), len(b.categories))
        mine = units[units.layer == layer]
        positive = score > 0
        assert mine.concept[positive].tolist() == [result["names"][k] for k in label[positive]]
        assert mine.category[positive].tolist() == [b.categories[c] for c in category[positive]]
        assert mine.detector.tolist() == (score >= 0.04).tolist()
        checked_detectors += int(positive.sum())
    assert checked_detectors > 10
    # per-plane counting: label 5 counts in both planes where object and part repeat it
    assert port["labels"][5] > sum(int((p == 5).any(0).sum()) for p in pixels)


def runs_as_masks(f, thr, out, chunk_bytes):
    """activated_runs painted into (B, units, out*out) masks; runs must not overlap, areas must add up."""
    got = torch.zeros(f.shape[0], f.shape[1], out[0] * out[1], dtype=torch.bool)
    for b, u, (owner, start, length), area in activated_runs(f, thr, out, chunk_bytes=chunk_bytes):
        run, offset = _expand(length)
        where = (b[owner].take(run), u[owner].take(run), start.take(run) + offset)
        assert not got[where].any()
        assert bool((start % out[1] + length <= out[1]).all())                   # a run stays in its row
        got[where] = True
        assert torch.equal(area, got[b, u].sum(1))
    return got


def ties(f, thr, out):
    """Pixels whose F.interpolate value equals the threshold to rounding (1e-12 relative)."""
    up = F.interpolate(f.double(), size=out, mode="bilinear", align_corners=False).flatten(2)
    t = thr.double().view(1, -1, 1)
    return (up - t).abs() <= 1e-12 * torch.maximum(up.abs(), t.abs())


@pytest.mark.parametrize("side,out", [(7, 112), (16, 16), (56, 112), (5, 13), (20, 8), (3, 17), (7, 113)])
@pytest.mark.parametrize("quantile", [0.5, 0.9, 0.995])
def test_activated_runs_are_exactly_the_dense_upsampled_masks(side, out, quantile):
    """The runs (only row segments whose source cells reach the threshold, ends from where each row's
    line crosses it) against upsampling every map with F.interpolate: the same pixels and areas for
    integer, fractional and downsampling factors, wherever the value is not a tie."""
    torch.manual_seed(side)
    f = F.avg_pool2d(torch.randn(3, 6, side + 2, side + 2), 3, stride=1)
    thr = torch.quantile(f.transpose(0, 1).flatten(1), quantile, dim=1)
    dense = dissect.unit_masks(f, thr, (out, out), "sample")   # the engine's own rule
    got = runs_as_masks(f, thr, (out, out), chunk_bytes=50_000)   # several chunks of images and of blocks
    tie = ties(f, thr, (out, out))
    assert torch.equal(got & ~tie, dense & ~tie) and dense.any()
    assert tie.float().mean() < 0.01


@pytest.mark.parametrize("source,out", [((1, 1), (9, 9)), ((1, 5), (8, 20)), ((6, 1), (12, 3)), ((2, 2), (112, 112))])
def test_activated_runs_on_one_pixel_wide_and_tiny_maps(source, out):
    """Maps one cell high or wide (a single segment, clamped on both sides) and non-square outputs."""
    torch.manual_seed(0)
    f = torch.randn(4, 3, *source)
    thr = torch.quantile(f.transpose(0, 1).flatten(1), 0.5, dim=1)
    dense = dissect.unit_masks(f, thr, out, "sample")
    tie = ties(f, thr, out)
    assert torch.equal(runs_as_masks(f, thr, out, chunk_bytes=5000) & ~tie, dense & ~tie) and dense.any()


def test_activated_runs_on_plateaus_and_thresholds_equal_to_map_values():
    """Constant maps, plateaus, dead units (threshold 0 on zeros) and steps: every pixel not within
    rounding of the threshold as F.interpolate decides it; pixels exactly at a threshold of 0 are off."""
    f = torch.zeros(2, 5, 7, 7)
    f[:, 0] = 0.3                                                    # constant, threshold equal to it
    f[:, 1, 2:5, 2:5] = 0.3                                          # a plateau
    f[:, 2] = torch.arange(7.0).view(1, 7) * 0.1                     # a ramp
    f[:, 3, :, 3] = 1                                                # a ridge
    at_own_value = 0
    for thr in (torch.tensor([0.3, 0.3, 0.3, 0.5, 0.0]), torch.tensor([0.29, 0.1, 0.2, 0.0, 0.0])):
        for out in ((112, 112), (50, 30), (7, 7)):
            dense = dissect.unit_masks(f, thr, out, "sample")
            got = runs_as_masks(f, thr, out, chunk_bytes=4000)
            tie = ties(f, thr, out)
            assert torch.equal(got & ~tie, dense & ~tie)
            assert not got[:, 4].any() and not dense[:, 4].any()     # all zeros, threshold 0
            at_own_value += int(tie[:, 0].sum()) if thr[0] == 0.3 else 0
    assert at_own_value > 0                                          # the constant map at its own value is a tie


@pytest.mark.parametrize("engine", ["numba", "torch"])
def test_tally_equals_counting_pixels_on_broden_like_planes(engine):
    """ConceptTally (numba: pixels near hot cells; torch: activated runs intersected with label runs;
    both: image-level planes by image) against counting the dense masks' pixels per label directly,
    per plane (Lite) and once per pixel (reglens)."""
    torch.manual_seed(0)
    images, labels, seg = 6, 40, 24
    g = torch.Generator().manual_seed(1)
    blocks = torch.randint(0, labels - 5, (images, 2, 6, 6), generator=g)
    blocks[torch.rand(blocks.shape, generator=g) < 0.3] = 0
    planes = F.interpolate(blocks.float(), size=(seg, seg), mode="nearest").long()
    planes[:, 1, :4] = planes[:, 0, :4]                              # a label repeated in two planes
    scene = torch.randint(labels - 5, labels, (images,), generator=g) * (torch.arange(images) % 2 == 0)
    planes = torch.cat([planes, scene.view(-1, 1, 1, 1).expand(-1, 1, seg, seg)], 1)
    lc = torch.zeros(labels, 3)
    lc[1:20, 0], lc[20:labels - 5, 1], lc[labels - 5:, 2] = 1, 1, 1
    f = F.avg_pool2d(torch.randn(images, 5, 8, 8), 3, stride=1)
    thr = torch.quantile(f.transpose(0, 1).flatten(1), 0.8, dim=1)
    masks = dissect.unit_masks(f, thr, (seg, seg))                   # (images, units, P)
    flat = planes.flatten(2)
    for per_plane in (True, False):
        batch = dissect.BatchLabels(flat, lc, per_plane, engine)
        tally = dissect.ConceptTally(5, lc, "lite", (seg, seg), "cpu", chunk_bytes=3000, engine=engine)
        tally.update(f, thr, batch)
        both = torch.zeros(5, labels, dtype=torch.long)
        for k in range(1, labels):
            on = (batch.planes == k).sum(1) if per_plane else (batch.planes == k).any(1).long()   # (images, P)
            both[:, k] = (masks.long() * on.unsqueeze(1)).sum((0, 2))
        assert torch.equal(tally.both.view(5, labels)[:, 1:], both[:, 1:])
        assert torch.equal(batch.area[1:], torch.stack([(batch.planes == k).sum() for k in range(labels)])[1:])


def label_planes(images, labels, seg, seed):
    """Blocky object/part planes (a label repeated across them at some pixels), an image-level plane
    on every other image, and one image with no labels at all."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, labels - 5, (images, 2, 5, 5), generator=g)
    blocks[torch.rand(blocks.shape, generator=g) < 0.3] = 0
    planes = F.interpolate(blocks.float(), size=seg, mode="nearest").long()
    planes[:, 1, :2] = planes[:, 0, :2]
    planes[0] = 0
    scene = torch.randint(labels - 5, labels, (images,), generator=g) * (torch.arange(images) % 2 == 1)
    return torch.cat([planes, scene.view(-1, 1, 1, 1).expand(-1, 1, *seg)], 1).flatten(2)


def three_categories(labels):
    """(labels, 3) one-hot: 1-9 objects, then parts, the last five image-level (scene) labels."""
    lc = torch.zeros(labels, 3)
    lc[1:10, 0], lc[10:labels - 5, 1], lc[labels - 5:, 2] = 1, 1, 1
    return lc


@pytest.mark.parametrize("per_plane", [True, False])
def test_batch_labels_agree_between_numba_and_torch(per_plane):
    labels = 30
    lc = three_categories(labels)
    planes = label_planes(7, labels, (12, 10), seed=3)
    repeated = planes[3, 0][planes[3, 0] > 0][0]
    planes[3, 1] = repeated                 # one label over the part plane, also at some object pixels
    kept = planes.clone()
    a, b = (dissect.BatchLabels(planes, lc, per_plane, engine) for engine in ("numba", "torch"))
    for field in ("planes", "area", "category_present", "varies", "uniform"):
        assert torch.equal(getattr(a, field).long(), getattr(b, field).long()), field
    assert torch.equal(planes, kept)                                     # the caller's planes untouched
    assert not bool(a.varies[0].any()) and not bool(a.varies[:, 2].any())
    # counted per plane, the part plane is one label; counted once per pixel, it varies (cleared where repeated)
    assert bool(a.varies[3, 1]) != per_plane and int(a.uniform[3, 1]) == (int(repeated) if per_plane else 0)
    assert torch.equal(a.uniform[:, 2], planes[:, 2, 0])


CASES = [((7, 7), (112, 112), torch.float32), ((16, 16), (16, 16), torch.float64), ((20, 20), (40, 40), torch.float32),
         ((5, 5), (13, 13), torch.float64), ((20, 20), (8, 8), torch.float32), ((3, 3), (17, 17), torch.bfloat16),
         ((7, 7), (57, 57), torch.float64), ((1, 5), (8, 20), torch.float32), ((6, 1), (12, 3), torch.float64),
         ((2, 2), (40, 40), torch.float32)]


@pytest.mark.parametrize("source,out,dtype", CASES)
def test_numba_and_torch_tallies_agree_exactly(source, out, dtype):
    """The compiled CPU loop (every pixel near a hot cell evaluated) and the run-based torch tally:
    identical integer counts, ties included (both decide them by the same float64 expression), on
    smooth maps at three quantiles, plateaus, constant maps at their own value and dead units."""
    torch.manual_seed(sum(source) + sum(out))
    labels = 30
    lc = three_categories(labels)
    planes = label_planes(6, labels, out, seed=sum(out))
    smooth = F.avg_pool2d(torch.randn(6, 4, source[0] + 2, source[1] + 2), 3, stride=1)
    flat = torch.zeros(6, 4, *source)
    flat[:, 0] = 0.3                                                     # constant, threshold at its value
    flat[:, 1, : max(1, source[0] // 2)] = 0.3                           # a plateau
    flat[:, 2] = torch.arange(source[1], dtype=torch.float32) * 0.1      # a ramp (threshold on a cell)
    f = torch.cat([smooth, flat], 1).to(dtype)
    for quantile in (0.5, 0.9, 0.995):
        thr = torch.quantile(smooth.transpose(0, 1).flatten(1).double(), quantile, dim=1)
        thr = torch.cat([thr, torch.tensor([0.3, 0.3, 0.1, 0.0], dtype=torch.float64)])  # last: dead unit
        for union in ("lite", "original"):
            for per_plane in (True, False):
                got = {}
                for engine in ("numba", "torch"):
                    tally = dissect.ConceptTally(8, lc, union, out, "cpu", chunk_bytes=20_000, engine=engine)
                    tally.update(f, thr, dissect.BatchLabels(planes, lc, per_plane, engine))
                    got[engine] = tally
                a, b = got["numba"], got["torch"]
                assert torch.equal(a.both.view(8, labels)[:, 1:], b.both.view(8, labels)[:, 1:])
                assert torch.equal(a.unit_in_category, b.unit_in_category)
                assert torch.equal(a.label_area, b.label_area)
                assert int(a.unit_in_category[7].sum()) == 0                    # zeros at threshold 0: off


def test_tally_engine_is_checked(monkeypatch):
    lc = torch.zeros(4, 1)
    assert dissect.ConceptTally(2, lc, "lite", (4, 4), "cpu").engine == "numba"
    monkeypatch.setattr(dissect_cpu, "available", lambda: False)    # numba missing: torch serves
    assert dissect.ConceptTally(2, lc, "lite", (4, 4), "cpu").engine == "torch"
    with pytest.raises(ValueError, match=r"on the CPU with numba installed"):
        dissect.ConceptTally(2, lc, "lite", (4, 4), "cpu", engine="numba")
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"tally engine 'fast' on cpu: valid are 'auto', 'torch'"):
        dissect.ConceptTally(2, lc, "lite", (4, 4), "cpu", engine="fast")
    with pytest.raises(ValueError, match=r"tally engine 'numba' on meta"):
        dissect.BatchLabels(torch.zeros(1, 1, 4, dtype=torch.long, device="meta"), lc.to("meta"), True, "numba")


@pytest.mark.parametrize("source, out", [((56, 56), (32, 32)), ((37, 23), (16, 16)), ((7, 40), (16, 16)),
                                         ((20, 20), (32, 32))])
def test_maps_larger_than_their_mask_are_resized_as_pils_bilinear_resize(source, out):
    """Lite resizes with PIL (scipy's imresize, mode F), which antialiases when shrinking: reglens'
    default equals it to float32 rounding, on every axis that shrinks (mixed shapes included); maps no
    larger than the mask are left to the tally's own bilinear upsampling, which PIL also equals."""
    g = torch.Generator().manual_seed(sum(source))
    f = torch.randn(2, 3, *source, generator=g, dtype=torch.float64)
    pil = np.array([[np.asarray(Image.fromarray(m.numpy().astype(np.float32), mode="F").resize(out[::-1], Image.BILINEAR))
                     for m in image] for image in f])
    thr = torch.quantile(f.transpose(0, 1).flatten(1), 0.7, dim=1)
    mine = dissect.unit_masks(f, thr, out).view(2, 3, *out).numpy()
    theirs = pil > thr.numpy().reshape(1, 3, 1, 1)
    near = np.abs(pil - thr.numpy().reshape(1, 3, 1, 1)) < 1e-5                  # float32 ties
    assert (mine == theirs)[~near].all() and near.mean() < 0.01
    resized = dissect.resize_maps(f, out)
    if shrinks(source, out):
        np.testing.assert_allclose(resized.numpy(), pil, rtol=0, atol=1e-5)
        sampled = dissect.unit_masks(f, thr, out, "sample").view(2, 3, *out).numpy()
        assert (sampled != theirs).mean() > 0.05                                  # point sampling is not PIL's
    else:
        assert resized is f


def test_downsample_setting_is_checked():
    assert dissect.settings({"downsample": "sample"})["downsample"] == "sample"
    with pytest.raises(ValueError, match="dissect.downsample: 'nearest'; valid"):
        dissect.settings({"downsample": "nearest"})
    with pytest.raises(ValueError, match="conventions: lite use downsample: antialias"):
        dissect.settings({"conventions": "lite", "downsample": "sample"})
