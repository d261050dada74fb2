"""Attribution methods, their summary metrics and activation maximization."""
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from reglens import actmax, attribution, models, regularizers
from reglens.train import train

warnings.filterwarnings("ignore", category=UserWarning, module="captum")
NONE = regularizers.build("none", {"none": []})


@pytest.fixture(scope="module")
def digits_model(digits):
    return train(digits, "simplecnn", NONE, {"epochs": 8, "lr": 0.05, "batch_size": 64}, {"width": 0.5},
                 seed=0, device="cpu").model.eval()


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
        a = attribution.attribute(model, x, t, method)
        assert a.shape == x.shape and torch.isfinite(a).all(), method
        if method != "gradcam":  # an untrained net's last block may have no positive evidence
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
    rows = attribution.cascading_randomization(digits_model, x, t, "saliency")
    assert [r["layer"] for r in rows][0] == "classifier" and len(rows) == 6
    assert rows[-1]["spearman"] < 0.5  # fully randomized: the maps no longer track the trained ones
    sobel = attribution.cascading_randomization(digits_model, x, t, "sobel")
    assert all(r["spearman"] == pytest.approx(1.0) for r in sobel)  # a model-independent control


def test_class_activation_maximization_is_classified_as_its_class(digits_model):
    objectives = [(None, k) for k in range(10)]
    images = actmax.maximize(digits_model, (1, 8, 8), objectives, steps=200, lr=0.1)
    assert images.min() >= 0 and images.max() <= 1
    with torch.no_grad():
        predicted = digits_model(images).argmax(1)
    assert (predicted == torch.arange(10)).float().mean() >= 0.9
    again = actmax.maximize(digits_model, (1, 8, 8), objectives, steps=200, lr=0.1)
    assert torch.equal(images, again)
