"""Attacks by the properties every correct attack has and against torchattacks; TV, calibration,
weights and PCA against hand-computed values or a second implementation."""
import math

import numpy as np
import pytest
import torch

from reglens import attacks, regularizers, robustness
from reglens.train import evaluate, train

EPS = [0.0, 0.02, 0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def trained(digits):
    regs = regularizers.build("none", {"none": []})
    result = train(digits, "simplecnn", regs, {"epochs": 8, "lr": 0.05, "batch_size": 64}, {"width": 0.5},
                   seed=0, device="cpu")
    model = result.model.eval()
    return model, digits.x_test.float() / 255, digits.y_test


@pytest.fixture(scope="module")
def curves(trained):
    model, x, y = trained
    return robustness.attack_curves(model, x, y, EPS, EPS, [10])


def _acc(rows, attack):
    return [r["accuracy"] for r in rows if r["attack"] == attack]


def test_eps_zero_is_clean_accuracy(trained, curves, digits):
    model, _, _ = trained
    clean = evaluate(model, digits.x_test, digits.y_test)["acc"]
    assert clean > 0.9
    assert _acc(curves, "fgsm")[0] == clean and _acc(curves, "pgd")[0] == clean


def test_accuracy_does_not_rise_with_eps_and_pgd_is_never_weaker(curves):
    fgsm, pgd = _acc(curves, "fgsm"), _acc(curves, "pgd")
    assert all(a >= b for a, b in zip(fgsm, fgsm[1:])), fgsm
    assert all(a >= b for a, b in zip(pgd, pgd[1:])), pgd
    assert all(p <= f for p, f in zip(pgd, fgsm)), (pgd, fgsm)
    assert pgd[-1] < 0.5 * pgd[0]  # the attack does something


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.5)])
def test_perturbations_stay_in_the_ball_and_pixel_range(trained, norm, eps):
    model, x, y = trained
    for adv in (attacks.pgd(model, x[:64], y[:64], eps, eps / 4, 10, norm),
                attacks.fgsm(model, x[:64], y[:64], eps, norm)):
        delta = (adv - x[:64]).flatten(1)
        size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
        assert size.max() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_same_adversarial_accuracy_as_torchattacks(trained, norm):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = trained
    eps = 0.05 if norm == "linf" else 0.6
    alpha, steps = 2.5 * eps / 10, 10
    ours = attacks.pgd(model, x, y, eps, alpha, steps, norm)
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    torch.manual_seed(0)
    theirs = cls(model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y)
    with torch.no_grad():
        acc_ours = (model(ours).argmax(1) == y).float().mean().item()
        acc_theirs = (model(theirs).argmax(1) == y).float().mean().item()
    assert abs(acc_ours - acc_theirs) <= 0.01, (acc_ours, acc_theirs)
    if norm == "linf":
        fgsm_theirs = torchattacks.FGSM(model, eps=eps)(x, y)
        torch.testing.assert_close(attacks.fgsm(model, x, y, eps), fgsm_theirs)


def test_total_variation_hand_computed():
    u = torch.tensor([[0, 0, 1], [0, 1, 1], [2, 2, 1]])
    tv = robustness.total_variation(u)
    assert tv["tv_anisotropic"] == 5 and tv["tv_isotropic"] == pytest.approx(1 + 2 * math.sqrt(2))
    assert tv["tv_anisotropic_per_pixel"] == pytest.approx(5 / 4)
    assert robustness.total_variation(torch.zeros(5, 5, dtype=torch.long))["tv_isotropic"] == 0
    stripes = torch.tensor([[0, 1, 0, 1]] * 4)  # changes along the second axis only
    tv = robustness.total_variation(stripes)
    assert tv["tv_anisotropic"] == 9 and tv["tv_isotropic"] == 9


def test_class_map_of_a_linear_model_is_a_half_plane():
    class Linear2(torch.nn.Module):  # class 1 iff the first pixel > 0.5
        def forward(self, x):
            v = x.flatten(1)[:, :1] - 0.5
            return torch.cat([-v, v], 1)

    x0 = torch.full((1, 1, 2, 2), 0.5)
    d1 = torch.zeros_like(x0)
    d1[0, 0, 0, 0] = 1
    d2 = torch.zeros_like(x0)
    d2[0, 0, 1, 1] = 1
    labels = robustness.class_map(Linear2(), x0, d1, d2, span=1.0, resolution=5)
    expected = torch.tensor([0, 0, 0, 1, 1])[:, None].expand(5, 5)  # a = -1, -.5, 0 -> 0 ; .5, 1 -> 1
    assert torch.equal(labels, expected)
    tv = robustness.total_variation(labels)
    assert tv["tv_anisotropic"] == 4  # one boundary crossed in each of the 4 interior columns


def test_calibration_hand_computed():
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.58, 0.32, 0.1], [0.32, 0.58, 0.1]])
    y = torch.tensor([0, 1, 0, 1])
    summary, table = robustness.calibration(probs, y, bins=15)
    # bin (0.8667, 0.9333]: conf 0.9, accuracy 1/2; bin (0.5333, 0.6]: conf 0.58, accuracy 1
    assert summary["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.42)
    assert summary["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.05) + 2 * math.log(0.58)) / 4)
    assert summary["brier"] == pytest.approx((0.015 + 1.715 + 2 * (0.42 ** 2 + 0.32 ** 2 + 0.1 ** 2)) / 4)
    assert sum(r["count"] for r in table) == 4 and table[13]["count"] == 2 and table[8]["count"] == 2


def test_weight_stats_and_pca_against_numpy_and_sklearn(trained):
    from sklearn.decomposition import PCA

    model, x, y = trained
    stats, spectrum = robustness.weight_stats(model, near_zero=1e-2)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight.detach().numpy()
    s = np.linalg.svd(first.reshape(first.shape[0], -1), compute_uv=False)
    got = [r["sigma"] for r in spectrum if r["layer"] == stats[0]["layer"]]
    np.testing.assert_allclose(got, s, rtol=1e-5)
    assert stats[0]["frac_near_zero"] == pytest.approx((np.abs(first) < 1e-2).mean())
    rows = robustness.penultimate_pca(model, x[:200], y[:200])
    with torch.no_grad():
        z = model.embed(x[:200]).double().numpy()
    ref = PCA(2).fit(z)
    coords = ref.transform(z)
    ours = np.array([[r["pc1"], r["pc2"]] for r in rows])
    for k in range(2):
        sign = np.sign(np.dot(ours[:, k], coords[:, k]))
        np.testing.assert_allclose(sign * ours[:, k], coords[:, k], atol=1e-6)
    assert rows[0]["explained_pc1"] == pytest.approx(ref.explained_variance_ratio_[0])


def test_boundary_distance_of_a_half_plane_and_of_a_map_without_boundary():
    # class 1 where a > 0.5 on a 21 x 21 grid over [-1, 1]^2: the nearest point of class 1 to the centre
    # (class 0) is the first grid line past 0.5, at a = 0.6
    coords = torch.linspace(-1, 1, 21)
    labels = (coords[:, None] > 0.5).long().expand(21, 21)
    assert robustness.boundary_distance(labels, 1.0) == pytest.approx(0.6)
    assert math.isnan(robustness.boundary_distance(torch.zeros(21, 21, dtype=torch.long), 1.0))
    diagonal = ((coords[:, None] + coords[None, :]) > 1.0).long()  # a + b > 1: nearest at a = b = 0.6
    assert robustness.boundary_distance(diagonal, 1.0) == pytest.approx(math.sqrt(0.6 ** 2 + 0.5 ** 2))


def test_boundary_planes_report_boundaries_and_distances(trained):
    model, x, y = trained
    rows, maps = robustness.boundary_planes(model, x[:4], y[:4], span=3.0, resolution=21)
    assert len(rows) == 8 and {r["plane"] for r in rows} == {"random", "adversarial"}
    for row, labels in zip(rows, maps):
        assert row["has_boundary"] == (labels.unique().numel() > 1)
        assert math.isnan(row["distance"]) != row["has_boundary"]
        assert row["distance"] == pytest.approx(robustness.boundary_distance(labels, 3.0), nan_ok=True)
