"""ROAR / KAR / ROAD: the imputer against a direct port of the published reference loop, planted data
where the right answer is known, the leakage control, and how failed runs are counted."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.sparse import csc_matrix, lil_matrix
from scipy.sparse.linalg import spsolve

from reglens import regularizers, roar
from reglens.data import TensorData
from reglens.train import train

NONE = regularizers.build("none", {"none": []})
WEIGHTS = [((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
           ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)]


def reference_impute(img: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """A direct port of the loop in tleemann/road_evaluation's NoisyLinearImputer (noise 0): one sparse
    equation per removed pixel, out-of-image neighbours dropped from its weight sum, scipy's spsolve."""
    c, h, w = img.shape
    flat_kept, flat_img = kept.ravel(), img.reshape(c, -1)
    missing = np.flatnonzero(flat_kept == 0)
    index_of = np.zeros(h * w, dtype=int)
    index_of[missing] = np.arange(len(missing))
    a = lil_matrix((len(missing), len(missing)))
    b = np.zeros((len(missing), c))
    weight_sum = np.ones(len(missing))
    for (dy, dx), weight in WEIGHTS:
        rows, cols = missing // w + dy, missing % w + dx
        inside = (rows >= 0) & (cols >= 0) & (rows < h) & (cols < w)
        target = rows * w + cols
        for eq in np.flatnonzero(inside):
            t = target[eq]
            if flat_kept[t] > 0.5:
                b[eq] -= weight * flat_img[:, t]
            else:
                a[eq, index_of[t]] = weight
        weight_sum[~inside] -= weight
    a[np.arange(len(missing)), np.arange(len(missing))] = -weight_sum
    solution = spsolve(csc_matrix(a), b).reshape(len(missing), c)
    out = flat_img.copy()
    out[:, missing] = solution.T
    return out.reshape(c, h, w)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_noisy_linear_imputation_equals_the_reference_solve(fraction):
    gen = torch.Generator().manual_seed(int(fraction * 10))
    x = torch.rand(3, 2, 9, 7, generator=gen, dtype=torch.float64)
    removed = torch.rand(3, 9, 7, generator=gen) < fraction
    removed[:, 0, 0] = False  # at least one kept pixel per image
    filled, info = roar.noisy_linear_impute(x, removed, noise=0.0)
    assert info["converged"]
    for i in range(3):
        expected = reference_impute(x[i].numpy(), (~removed[i]).numpy().astype(float))
        np.testing.assert_allclose(filled[i].numpy(), expected, rtol=0, atol=1e-6)
    assert torch.equal(filled[~removed.unsqueeze(1).expand_as(x)], x[~removed.unsqueeze(1).expand_as(x)])


def test_imputation_closed_forms():
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    removed = torch.zeros(1, 5, 5, dtype=torch.bool)
    removed[0, 2, 2] = True  # surrounded by kept pixels: the weighted mean of its 8 neighbours
    filled, _ = roar.noisy_linear_impute(x, removed, noise=0.0)
    patch = x[0, 0, 1:4, 1:4].numpy()
    weights = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]]) / 12
    assert filled[0, 0, 2, 2].item() == pytest.approx((patch * weights).sum(), abs=1e-12)
    flat = torch.full((1, 3, 12, 12), 0.37, dtype=torch.float64)
    block = torch.zeros(1, 12, 12, dtype=torch.bool)
    block[0, 3:9, 2:10] = True  # a removed block inside a constant region is filled with the constant
    filled, _ = roar.noisy_linear_impute(flat, block, noise=0.0)
    torch.testing.assert_close(filled, flat, atol=1e-7, rtol=0)
    noisy, _ = roar.noisy_linear_impute(flat, block, noise=0.05, generator=torch.Generator().manual_seed(0))
    spread = (noisy - flat)[block.unsqueeze(1).expand_as(flat)]
    assert spread.std().item() == pytest.approx(0.05, rel=0.2) and (noisy - flat)[~block.unsqueeze(1).expand_as(flat)].abs().max() == 0


def test_ablation_replaces_exactly_the_ranked_pixels():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    ranks = torch.stack([torch.arange(16), torch.arange(15, -1, -1)]).to(torch.int16)
    fill = torch.tensor([7, 8, 9], dtype=torch.uint8)
    out = roar.ablate(x, ranks, 0.25, "roar", fill)  # 4 pixels
    assert torch.equal(out[0, :, 0, :], fill.view(3, 1).expand(3, 4)) and torch.equal(out[0, :, 1:], x[0, :, 1:])
    assert torch.equal(out[1, :, 3, :], fill.view(3, 1).expand(3, 4)) and torch.equal(out[1, :, :3], x[1, :, :3])
    kar = roar.ablate(x, ranks, 0.25, "kar", fill)
    assert torch.equal(kar[0, :, 0, :], x[0, :, 0, :]) and torch.all(kar[0, :, 1:] == fill.view(3, 1, 1))
    lerf = roar.road_mask(ranks, 0.25, "lerf", (4, 4))
    assert lerf[0, 3].all() and lerf[0].sum() == 4 and lerf[1, 0].all()  # the least relevant four


def planted(n, seed):
    """8x8 noise; the label is carried only by the mean of the 3x3 patch at rows/cols 1..3."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    patch = torch.where(y.view(-1, 1, 1, 1) == 1, torch.randint(200, 256, (n, 1, 3, 3), generator=g),
                        torch.randint(0, 56, (n, 1, 3, 3), generator=g)).to(torch.uint8)
    x[:, :, 1:4, 1:4] = patch
    return x, y


@pytest.fixture(scope="module")
def planted_study():
    xtr, ytr = planted(1000, 0)
    xte, yte = planted(400, 1)
    data = TensorData("planted", xtr, ytr, xte, yte, ["dark", "bright"], [xtr.float().mean().item() / 255], [0.3])
    cfg, mcfg = {"epochs": 8, "lr": 0.05, "batch_size": 64}, {"width": 0.5}
    base = train(data, "simplecnn", NONE, cfg, mcfg, seed=0, device="cpu")
    assert base.metrics["test_acc"] > 0.95
    oracle_map = torch.zeros(1, 1, 8, 8)
    oracle_map[..., 1:4, 1:4] = 1.0

    def oracle(x):
        return roar.rank_pixels(oracle_map.expand(len(x), 1, 8, 8) + 1e-3 * torch.rand(len(x), 1, 8, 8))

    ranks = {"oracle": {"train": oracle(xtr), "test": oracle(xte)}}
    for method in ("random", "saliency"):
        ranks[method] = {"train": roar.compute_ranks(base.model, xtr, ytr, method),
                         "test": roar.compute_ranks(base.model, xte, yte, method)}
    return data, base.model.eval(), ranks, cfg, mcfg


def test_roar_on_planted_data_oracle_random_and_gradients(planted_study):
    data, _, ranks, cfg, mcfg = planted_study
    rows = []
    for method, r in ranks.items():
        for fraction in (0.3, 0.6):
            ablated, info = roar.ablated_data(data, r, fraction, "roar", "noisy_linear")
            assert info["train"]["converged"] and info["test"]["converged"]
            for row in roar.retrain(ablated, "simplecnn", NONE, cfg, mcfg, [0], "cpu", clean=data):
                rows.append({"method": method, "mode": "roar", "fraction": fraction, **row})
    curves = pd.DataFrame(rows)
    acc = curves.set_index(["method", "fraction"]).test_acc
    assert acc["oracle", 0.3] < 0.62 and acc["oracle", 0.6] < 0.62  # chance is 0.5
    assert acc["random", 0.3] > 0.9 and acc["random", 0.6] > 0.85
    assert acc["saliency", 0.6] < acc["random", 0.6] - 0.1  # the gradients found the patch
    assert curves.fitted.all() and curves.train_acc.min() > 0.5
    s = roar.scores(curves).set_index("method").score
    assert s["oracle"] >= s["saliency"] - 0.02 and s["saliency"] > 0 and s["random"] == 0


def test_road_on_planted_data_oracle_random_and_reversed(planted_study):
    data, model, ranks, _, _ = planted_study
    x, y = data.x_test.float() / 255, data.y_test
    score = {}
    for name, r in (("oracle", ranks["oracle"]["test"]), ("random", ranks["random"]["test"]),
                    ("reversed", ranks["oracle"]["test"].flip(1))):
        curves = pd.DataFrame(roar.road_curves(model, x, y, r, [0.05, 0.1, 0.15, 0.3, 0.5], seed=1))
        score[name] = roar.road_score(curves)
        assert curves.iterations.max() > 0 and (curves.residual <= 1e-6).all()
    assert score["oracle"] > 0.1 and score["oracle"] > score["random"] + 0.1
    assert abs(score["random"]) < 0.03
    assert score["reversed"] == pytest.approx(-score["oracle"], abs=0.05) and score["reversed"] < -0.1


def shape_leaking(n, seed):
    """Smooth random images whose content says nothing of the class; the 'attribution' ranks a
    class-specific shape first (class 0: a vertical bar, class 1: a horizontal bar), as an
    explanation that reveals the label would."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 3, 3, generator=g)
    x = (torch.nn.functional.interpolate(coarse, size=(12, 12), mode="bilinear", align_corners=True) * 255)
    y = torch.randint(0, 2, (n,), generator=g)
    score = torch.rand(n, 1, 12, 12, generator=g) * 1e-3
    score[y == 0, :, 2:10, 5:7] += 1
    score[y == 1, :, 5:7, 2:10] += 1
    return x.round().to(torch.uint8), y, roar.rank_pixels(score)


def test_the_mean_fill_leaks_the_mask_and_noisy_linear_leaks_less():
    xtr, ytr, rtr = shape_leaking(800, 0)
    xte, yte, rte = shape_leaking(400, 1)
    data = TensorData("leak", xtr, ytr, xte, yte, ["v", "h"], [xtr.float().mean().item() / 255], [0.25])
    ranks = {"train": rtr, "test": rte}
    cfg, mcfg = {"epochs": 10, "lr": 0.05, "batch_size": 64}, {"width": 0.5}
    acc = {}
    for fill in ("mean", "noisy_linear"):
        ablated, _ = roar.ablated_data(data, ranks, 16 / 144, "roar", fill)
        acc[fill] = roar.retrain(ablated, "simplecnn", NONE, cfg, mcfg, [0], "cpu")[0]["test_acc"]
    mask_only = roar.retrain(roar.leakage_data(data, ranks, 16 / 144), "simplecnn", NONE, cfg, mcfg, [0], "cpu")
    assert mask_only[0]["test_acc"] > 0.95       # the mask alone gives the class away
    assert acc["mean"] > 0.9                       # a flat region in a smooth image shows the shape
    assert acc["noisy_linear"] < 0.65            # close to chance (0.5): the imputed bar blends in


def test_runs_that_did_not_fit_are_counted_and_excluded():
    rows = []
    for method in ("random", "saliency"):
        for fraction in (0.0, 0.5, 0.9):
            for seed, fitted in ((0, True), (1, not (method == "saliency" and fraction == 0.5))):
                acc = {"random": 0.8, "saliency": 0.6}[method] if fraction else 0.95
                rows.append({"method": method, "mode": "roar", "fraction": fraction, "retrain_seed": seed,
                             "test_acc": acc if fitted else 0.1, "train_acc": 0.9 if fitted else 0.12,
                             "fitted": fitted})
    s = roar.scores(pd.DataFrame(rows)).set_index("method")
    # the unfitted run (0.1) is not averaged in: saliency's curve is 0.95, 0.6, 0.6 against 0.95, 0.8, 0.8
    assert s.loc["saliency", "score"] == pytest.approx(0.5 * 0.2 / 2 + 0.4 * 0.2)
    assert s.loc["saliency", "unfitted"] == 1 and s.loc["random", "unfitted"] == 0
    rows = [r for r in rows if not (r["method"] == "saliency" and r["fraction"] == 0.5 and r["retrain_seed"] == 0)]
    s = roar.scores(pd.DataFrame(rows)).set_index("method")
    assert np.isnan(s.loc["saliency", "score"])  # no fitted run at a point: undefined, not filled in


def test_ranks_order_by_magnitude_and_break_ties_at_random_not_by_position():
    scores = torch.zeros(200, 1, 4, 4)
    scores[:, 0, 3, 3] = -5.0   # the largest magnitude, whatever its sign
    scores[:, 0, 0, 0] = 2.0
    ranks = roar.rank_pixels(scores, torch.Generator().manual_seed(0)).long()
    assert (ranks[:, 0] == 15).all() and (ranks[:, 1] == 0).all()
    # the 14 tied pixels come in a random order: each position is third about equally often
    third = torch.bincount(ranks[:, 2], minlength=16)[1:15].float()
    assert third.min() > 3 and third.max() < 30
    again = roar.rank_pixels(scores, torch.Generator().manual_seed(0))
    assert torch.equal(again.long(), ranks)


def test_road_with_dither_scores_images_whose_imputed_pixels_are_on_the_grid():
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, x):
            self.seen.append(x.clone())
            return torch.zeros(len(x), 2)

    levels = torch.arange(0, 256, 16).double()
    g = torch.Generator().manual_seed(0)
    x = levels[torch.randint(0, 16, (6, 1, 9, 9), generator=g)].float() / 255
    ranks = roar.rank_pixels(torch.rand(6, 1, 9, 9, generator=g))
    for grid in (None, levels):
        model = Recorder()
        roar.road_curves(model, x, torch.zeros(6, dtype=torch.long), ranks, [0.3], grid=grid)
        imputed = torch.cat(model.seen[1:]) * 255                      # after the clean pass
        on_grid = (imputed.unsqueeze(-1) - levels.float()).abs().amin(-1) < 1e-3
        assert on_grid.all() if grid is not None else not on_grid.all()
