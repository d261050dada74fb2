"""Per-cell diagnostics (learning curves, weight distributions, feature maps, score distribution) and
the 2-D toy study (clusters2d, the MLP, the Jacobian determinant of its square map, decision regions)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from reglens import analyses, config, data, layout, models, regularizers, robustness  # noqa: F401
from reglens.data import clusters2d
from reglens.regularizers.smoothness import square_jacobian_det
from reglens.stages.train import FileCheckpoint
from reglens.train import train

FAST = {"epochs": 3, "optimizer": "adam", "lr": 0.01, "batch_size": 64}


@pytest.fixture(scope="module")
def points():
    return data.from_blob(data.convert("clusters2d", {}, {"train_per_class": 60, "test_per_class": 20}))


def test_generalization_gap_is_the_last_history_rows_difference(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.2], "test_loss": [1.1, 0.9, 0.8],
                            "train_acc": [0.5, 0.8, 0.9], "test_acc": [0.5, 0.7, 0.75]})
    history.to_csv(tmp_path / "history.csv", index=False)
    keys = ["train_acc", "train_loss", "test_acc", "test_loss", "train_seconds", "images_per_s"]
    (tmp_path / "metrics.json").write_text(json.dumps({k: 1.0 for k in keys}))
    train = layout.REGISTRY["train"]
    out = train.read({key: tmp_path / name for key, name in train.outputs.items()})
    assert out["gap_final"] == pytest.approx(0.8 - 0.2) and out["gap_max"] == pytest.approx(0.6)


def test_sparsity_and_histograms_of_a_constructed_weight_tensor():
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 5e-4, -2e-3, 0.0], [-0.5, 9.99e-4, 1e-6, 0.25]]))
    model = nn.Sequential(layer)
    stats, _ = robustness.weight_stats(model, near_zero=1e-3, relative=1e-3)
    # below 1e-3 x max|w| (= 1e-3): 5e-4, 0, 9.99e-4, 1e-6 -> 4 of 8; -2e-3 is not
    assert stats[0]["frac_below_relative"] == pytest.approx(4 / 8)
    rows = pd.DataFrame(robustness.weight_histograms(model, bins=10))
    w = layer.weight.detach().double().flatten().numpy()
    counts, edges = np.histogram(w, bins=10, range=(-1.0, 1.0))
    assert rows["count"].tolist() == counts.tolist() and np.allclose(rows.low, edges[:-1])


def test_feature_maps_are_the_named_layers_outputs(digits):
    torch.manual_seed(0)
    model = models.build("simplecnn", 1, 8, 10, width=0.25).eval()
    x = digits.x_test[:3].float() / 255
    maps = robustness.feature_maps(model, x, ["body.block1", "body.block2"], channels=2)
    with torch.no_grad():
        first = model.body.block1(model.normalize(x))
        second = model.body.block2(first)
    assert torch.equal(maps["body.block1"], first[:, :2]) and torch.equal(maps["body.block2"], second[:, :2])


def test_reliability_counts_are_the_histogram_of_the_top_class_probability():
    probs = torch.softmax(torch.randn(500, 4, generator=torch.Generator().manual_seed(0)) * 2, 1)
    _, table = robustness.calibration(probs, torch.zeros(500, dtype=torch.long), bins=10)
    top = probs.max(1).values.double().numpy()
    ref = [int(((top > lo) & (top <= lo + 0.1 + 1e-12)).sum()) if lo > 0 else int((top <= 0.1).sum())
           for lo in np.arange(10) / 10]
    assert [r["count"] for r in table] == ref and sum(ref) == 500


def test_clusters2d_is_four_gaussian_clusters_on_a_256_level_grid(points):
    assert points.x_train.shape == (240, 2, 1, 1) and points.num_classes == 4
    assert np.bincount(points.y_train.numpy()).tolist() == [60] * 4
    half = points.half_width
    assert half == pytest.approx(1 + 4 * 0.45)
    xy = clusters2d.to_plane(points.x_train.flatten(1).double().numpy() / 255, half)
    for k, mean in enumerate(clusters2d.CLUSTERS2D_DEFAULTS["means"]):
        assert np.allclose(xy[points.y_train.numpy() == k].mean(0), mean, atol=0.2)  # 60 draws, sd 0.45
    p = np.array([[0.3, -1.7]])
    assert np.abs(clusters2d.to_plane(clusters2d.to_pixels(p, half) / 255, half) - p).max() <= half / 255
    with pytest.raises(ValueError, match="data.clusters2d.means"):
        clusters2d.load({"means": [[0, 0], [1, 1]]})


def test_determinant_penalty_equals_jacrevs_and_has_a_gradient(points):
    torch.manual_seed(0)
    model = models.build("mlp", 2, 1, 4, width=0.5, mean=points.mean, std=points.std).train()
    z = torch.randn(16, 2, dtype=torch.float64)
    model = model.double()
    det = square_jacobian_det(model.square_map, z)
    ref = torch.stack([torch.linalg.det(torch.func.jacrev(model.square_map)(zi[None])[0, :, 0, :]) for zi in z])
    assert torch.allclose(det, ref, atol=1e-12)
    reg = regularizers.from_specs("jd", [{"kind": "jacobian_det", "weight": 0.5}]).members[0]
    x = points.x_train[:16].double() / 255
    penalty = reg.penalty(model, x, None, None)
    zx = model.normalized_points(x)
    ref_det = torch.stack([torch.linalg.det(torch.func.jacrev(model.square_map)(zi[None])[0, :, 0, :]) for zi in zx])
    assert penalty.item() == pytest.approx(0.5 * ((ref_det - 1) ** 2).mean().item(), rel=1e-10)
    penalty.backward()
    assert model.body.square[0].weight.grad.abs().sum() > 0


def test_the_determinant_is_refused_where_undefined_and_architectures_match_their_data():
    base = {"regularizers": {"none": [], "jd": [{"kind": "jacobian_det"}]}}
    ok = {**base, "studies": {"toy": {"dataset": "clusters2d", "archs": ["mlp"], "regularizers": ["none", "jd"],
                                      "seeds": [0], "model": {"depth": 1}}}}
    config.validate(ok)
    cnn = {**base, "studies": {"s": {"dataset": "digits", "archs": ["lenet"], "regularizers": ["jd"], "seeds": [0]}}}
    with pytest.raises(config.ConfigError, match=r"studies\.s\.regularizers\[0\].*not square.*'mlp'"):
        config.validate(cnn)
    wrong = {**base, "studies": {"s": {"dataset": "clusters2d", "archs": ["lenet"], "regularizers": ["none"],
                                       "seeds": [0]}}}
    with pytest.raises(config.ConfigError, match=r"studies\.s\.archs\[0\]: 'lenet' takes images.*\['mlp'\]"):
        config.validate(wrong)
    depth = {**base, "studies": {"s": {"dataset": "digits", "archs": ["lenet"], "regularizers": ["none"],
                                       "seeds": [0], "model": {"depth": 2}}}}
    with pytest.raises(config.ConfigError, match=r"studies\.s\.model\.depth"):
        config.validate(depth)


def test_decision_grid_is_the_models_argmax_at_the_grid_points(points):
    torch.manual_seed(1)
    model = models.build("mlp", 2, 1, 4, mean=points.mean, std=points.std).eval()
    grid = robustness.decision_grid(model, 7)
    for i in range(7):  # rows: y, columns: x, at the centres of the cells of [0, 1]^2
        for j in range(7):
            point = torch.tensor([[(j + 0.5) / 7, (i + 0.5) / 7]]).view(1, 2, 1, 1)
            assert grid[i, j] == model(point).argmax(1).item()


def test_resumed_training_returns_every_epochs_regions(points, tmp_path):
    regs = regularizers.from_specs("none", [])
    record = lambda m: robustness.decision_grid(m, 9)  # noqa: E731
    full = train(points, "mlp", regs, FAST, {}, seed=0, record=record)

    def stop(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt("preempted")

    ckpt = FileCheckpoint(tmp_path / "train_state.pt")
    with pytest.raises(KeyboardInterrupt):
        train(points, "mlp", regs, FAST, {}, seed=0, checkpoint=ckpt, on_epoch_end=stop, record=record)
    resumed = train(points, "mlp", regs, FAST, {}, seed=0, checkpoint=ckpt, record=record)
    assert resumed.metrics["resumed_from_epoch"] == 2 and len(resumed.records) == 3
    assert all(torch.equal(a, b) for a, b in zip(resumed.records, full.records))


def test_first_layer_filters_are_the_first_convolution_drawn_to_scale(tmp_path):
    from reglens.io import load_torch
    from reglens.plots import cell as draw
    from reglens.stages.common import save_model

    torch.manual_seed(0)
    for arch, channels in (("resnet18", 3), ("alexnet", 1)):
        model = models.build(arch, channels, 32, 10, width=0.25)
        save_model(model, arch, {"in_channels": channels, "input_size": 32, "num_classes": 10, "width": 0.25},
                   tmp_path / f"{arch}.pt")
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight.detach().double().numpy()
        weights = robustness.first_layer_filters(load_torch(tmp_path / f"{arch}.pt", mmap=True)["state_dict"])
        np.testing.assert_allclose(weights, first)
        tiles = draw.filter_tiles(weights)
        assert len(tiles) == len(first) and tiles[0].shape == (*first.shape[2:], 3)
        for w, tile in zip(first[:4], tiles):
            w = w if channels == 3 else np.repeat(w, 3, 0)
            np.testing.assert_allclose(tile, 0.5 + w.transpose(1, 2, 0) / (2 * np.abs(w).max()))
            assert tile.min() >= 0 and tile.max() <= 1 and np.isclose(max(tile.max(), 1 - tile.min()), 1)
        draw.first_filters(weights, tmp_path / f"{arch}.png", arch)
        assert (tmp_path / f"{arch}.png").stat().st_size > 0
    mlp = models.build("mlp", 2, 1, 4, width=0.25, depth=1)
    assert robustness.first_layer_filters(mlp.state_dict()) is None
    draw.first_filters(None, tmp_path / "mlp.png")
    assert not (tmp_path / "mlp.png").exists()
