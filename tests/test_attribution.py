"""Attribution methods and their summary metrics."""
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from reglens import attribution, models

warnings.filterwarnings("ignore", category=UserWarning, module="captum")


@pytest.mark.parametrize("arch", ["simplecnn", "lenet", "resnet18", "vgg19"])
def test_every_method_returns_finite_maps_of_the_input_shape(arch):
    torch.manual_seed(0)
    model = models.build(arch, 3, 16, 10, width=0.25)
    for m in model.modules():  # calibrate batch norm, else an untrained deep net's output barely moves
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model(torch.rand(64, 3, 16, 16))
    model.eval()
    x, t = torch.rand(3, 3, 16, 16), torch.tensor([1, 4, 7])
    for method in attribution.METHODS:
        a = attribution.attribute(model, x, t, method, ep_iterations=20, mp_iterations=20)
        assert a.shape == x.shape and torch.isfinite(a).all(), method
        # an untrained net's last block may have no positive evidence (Grad-CAM), and deleting nothing
        # may be the cheapest way to lower its flat class probability (meaningful perturbation)
        if method not in ("gradcam", "meaningful_perturbation"):
            assert a.abs().sum() > 0, method


def test_integrated_gradients_completeness(digits_model, digits):
    model = digits_model.double()
    try:
        x = digits.x_test[:16].double() / 255
        t = digits.y_test[:16]
        a = attribution.attribute(model, x, t, "integrated_gradients", ig_steps=256)
        with torch.no_grad():
            gap = model(x).gather(1, t[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, t[:, None])[:, 0]
        rel = (a.flatten(1).sum(1) - gap).abs() / gap.abs()
        assert rel.max() < 0.01, rel
    finally:
        model.float()


def test_saliency_is_the_input_gradient(digits_model, digits):
    x = (digits.x_test[:4].float() / 255).requires_grad_(True)
    t = digits.y_test[:4]
    digits_model(x).gather(1, t[:, None]).sum().backward()
    torch.testing.assert_close(attribution.attribute(digits_model, x, t, "saliency"), x.grad)


def test_sobel_and_random_controls():
    x = torch.zeros(1, 1, 6, 6)
    x[..., 3:] = 1.0  # a vertical edge between columns 2 and 3
    s = attribution.sobel_magnitude(x)[0, 0]
    assert torch.all(s[:, [0, 1, 4, 5]] == 0) and torch.all(s[:, 2:4] == 4)
    r1 = attribution.attribute(None, x, None, "random", seed=3)
    assert torch.equal(r1, attribution.attribute(None, x, None, "random", seed=3))


def test_gini_entropy_spearman_against_references():
    maps = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 5.0], [1.0, 2.0, 3.0, 4.0]])
    g = attribution.gini(maps)
    assert g[0] == pytest.approx(0) and g[1] == pytest.approx(0.75)  # (n-1)/n for a single spike
    # mean absolute difference form: G = sum_ij |xi - xj| / (2 n^2 mean)
    v = maps[2].numpy()
    assert g[2] == pytest.approx(np.abs(v[:, None] - v[None, :]).sum() / (2 * 16 * v.mean()))
    h = attribution.entropy(maps)
    assert h[0] == pytest.approx(np.log(4)) and h[1] == pytest.approx(0)
    a, b = torch.rand(5, 30), torch.rand(5, 30)
    ref = [spearmanr(a[i], b[i]).statistic for i in range(5)]
    np.testing.assert_allclose(attribution.spearman(a, b).numpy(), ref, rtol=1e-10)


def test_cascading_randomization_decorrelates_gradients(digits_model, digits):
    x, t = digits.x_test[:32].float() / 255, digits.y_test[:32]
    rows = attribution.model_randomization(digits_model, x, t, "saliency", "cascading")
    assert [r["layer"] for r in rows][0] == "classifier" and len(rows) == 6
    assert rows[-1]["spearman"] < 0.5  # fully randomized: the maps no longer track the trained ones
    sobel = attribution.model_randomization(digits_model, x, t, "sobel")
    assert all(r["spearman"] == pytest.approx(1.0) for r in sobel)  # a model-independent control


def test_randomization_check_over_seeds_and_its_independent_variant(digits_model, digits):
    x, t = digits.x_test[:16].float() / 255, digits.y_test[:16]
    runs = {seed: attribution.model_randomization(digits_model, x, t, "saliency", "cascading", seed=seed)
            for seed in (0, 1, 2)}
    assert runs[0] == attribution.model_randomization(digits_model, x, t, "saliency", "cascading", seed=0)
    fully = [rows[-1]["spearman"] for rows in runs.values()]
    assert np.std(fully) > 0  # one draw is one sample: the spread over seeds is what the report shows
    independent = attribution.model_randomization(digits_model, x, t, "saliency", "independent", seed=0)
    # the first layer randomized is the same in both variants; later independent rows keep the top trained
    assert independent[0]["spearman"] == runs[0][0]["spearman"] and independent[0]["layer"] == "classifier"
    assert [r["layer"] for r in independent] == [r["layer"] for r in runs[0]]
    assert all(r["undefined"] == 0 for r in independent)


def test_spearman_uses_average_ranks_and_leaves_constant_maps_undefined():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (40, 64), generator=g).float()  # many ties, as maps exactly 0 on the background
    b = torch.randint(0, 3, (40, 64), generator=g).float()
    a[3] = 0.0  # a constant map, as Grad-CAM after randomization
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.array([spearmanr(a[i], b[i]).statistic for i in range(40)])
    ours = attribution.spearman(a, b).numpy()
    assert np.isnan(ours[3]) and np.isnan(ref[3])
    np.testing.assert_allclose(ours[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-12, atol=1e-12)
    mean, undefined = attribution.defined_mean(attribution.spearman(a, b))
    assert undefined == 1 and mean == pytest.approx(np.nanmean(ref))
    from scipy.stats import rankdata
    np.testing.assert_array_equal(attribution.average_ranks(a[:5]).numpy(), np.stack([rankdata(r) for r in a[:5]]))


class Quadratic(torch.nn.Module):
    """Logit k = sum_i w_k,i x_i^2: its gradient 2 w x is known, so SmoothGrad's expectations are closed
    forms: E[2w(x + e)] = 2wx, E[(2w(x + e))^2] = 4w^2(x^2 + s^2), Var = 4w^2 s^2."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) ** 2) @ self.w.T


def test_smoothgrad_family_closed_forms_per_image_noise_and_seeds():
    torch.manual_seed(0)
    w = torch.randn(3, 16, dtype=torch.float64)
    model = Quadratic(w)
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    x[1] *= 3  # a three times wider range: three times the noise
    target = torch.tensor([0, 2])
    opts = dict(nt_samples=4000, nt_stdev=0.1, internal_batch_size=8000)
    sigma = 0.1 * (x.flatten(1).max(1).values - x.flatten(1).min(1).values)
    wt, xs = w[target].view(2, 1, 4, 4), x
    sg = attribution.attribute(model, x, target, "smoothgrad", **opts)
    sq = attribution.attribute(model, x, target, "smoothgrad_sq", **opts)
    var = attribution.attribute(model, x, target, "vargrad", **opts)
    s2 = sigma.view(2, 1, 1, 1) ** 2
    torch.testing.assert_close(sg, 2 * wt * xs, atol=0.06 * float(sigma.max()) * float(w.abs().max()), rtol=0)
    torch.testing.assert_close(sq, 4 * wt ** 2 * (xs ** 2 + s2), rtol=0.1, atol=1e-3)
    torch.testing.assert_close(var, 4 * wt ** 2 * s2.expand_as(var), rtol=0.1, atol=1e-4)
    again = attribution.attribute(model, x, target, "smoothgrad", **opts)
    other = attribution.attribute(model, x, target, "smoothgrad", **{**opts, "seed": 1})
    assert torch.equal(sg, again) and not torch.equal(sg, other)  # the config's seed, not the global RNG
    torch.manual_seed(123)
    assert torch.equal(sg, attribution.attribute(model, x, target, "smoothgrad", **opts))


def test_integrated_gradients_completeness_at_the_default_settings(digits_model, digits):
    x, t = digits.x_test[:64].float() / 255, digits.y_test[:64]
    o = attribution.DEFAULTS
    attr, error, steps = attribution.integrated_gradients(attribution.prepare(digits_model), x, t, o["ig_steps"],
                                                          o["ig_tolerance"], o["ig_max_steps"])
    with torch.no_grad():
        gap = digits_model(x).gather(1, t[:, None])[:, 0] - digits_model(torch.zeros_like(x)).gather(1, t[:, None])[:, 0]
    direct = (attr.flatten(1).sum(1) - gap).abs() / gap.abs()  # recomputed here, not captum's delta
    torch.testing.assert_close(direct, error.to(direct.dtype), atol=1e-4, rtol=1e-3)
    assert error.median() <= 0.01 and bool(((error <= 0.01) | (steps == o["ig_max_steps"])).all())
    assert steps.min() == o["ig_steps"] and steps.max() > o["ig_steps"]  # some images needed more


@pytest.mark.parametrize("fill", [0.0, 0.5])
def test_occlusion_is_the_drop_when_each_window_is_set_to_the_fill(digits_model, digits, fill):
    """Non-overlapping 2-pixel windows: each pixel's attribution is the target logit minus its value
    with that pixel's window set to `fill` (0 black, 0.5 grey), by a direct loop."""
    x, target = digits.x_test[:4].float() / 255, digits.y_test[:4]
    got = attribution.attribute(digits_model, x, target, "occlusion", occlusion_window=0.25,
                                occlusion_stride=0.25, occlusion_fill=fill)
    expected = torch.zeros_like(x)
    with torch.no_grad():
        clean = digits_model(x).gather(1, target.view(-1, 1)).squeeze(1)
        for i in range(0, 8, 2):
            for j in range(0, 8, 2):
                filled = x.clone()
                filled[:, :, i:i + 2, j:j + 2] = fill
                drop = clean - digits_model(filled).gather(1, target.view(-1, 1)).squeeze(1)
                expected[:, :, i:i + 2, j:j + 2] = drop.view(-1, 1, 1, 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
