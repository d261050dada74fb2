"""Extremal and meaningful perturbation: a planted network whose logit depends on one known region,
the blur against SciPy's, the smooth mask against its closed form, and torchray's extremal
perturbation (the authors' code) run side by side."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from reglens import attribution, perturbation

REGION = (4, 12, 4, 12)  # rows 4..11, columns 4..11 of a 32 x 32 image: 1/16 of it
AREA = 64 / 1024


class Planted(torch.nn.Module):
    """Logit 0 = scale * (sum over REGION of (x - 0.5)^2 - offset); logit 1 = 0. Blurring the
    region's black-and-white texture toward grey lowers logit 0; nothing outside the region matters."""

    def __init__(self, scale=1.0, offset=0.0):
        super().__init__()
        self.scale, self.offset = scale, offset

    def forward(self, x):
        r = REGION
        f = ((x[:, :, r[0]:r[1], r[2]:r[3]] - 0.5) ** 2).sum((1, 2, 3))
        return torch.stack([self.scale * (f - self.offset), torch.zeros_like(f)], 1)


def images(n=2, seed=0):
    return (torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def region_mask():
    truth = torch.zeros(32, 32, dtype=torch.bool)
    truth[REGION[0]:REGION[1], REGION[2]:REGION[3]] = True
    return truth


def top_iou(saliency: torch.Tensor, area: float) -> float:
    """IoU between the region and the `area` share of pixels the map ranks highest."""
    k = round(area * saliency.numel())
    top = torch.zeros(saliency.numel(), dtype=torch.bool)
    top[saliency.flatten().topk(k).indices] = True
    truth = region_mask().flatten()
    return float((top & truth).sum() / (top | truth).sum())


def test_blur_matches_scipy_gaussian_filter():
    x = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for sigma in (1.0, 2.0):
        ours = perturbation.gaussian_blur(x, sigma)[0, 0].numpy()
        ref = ndimage.gaussian_filter(x[0, 0].numpy(), sigma, mode="constant", cval=0.0, truncate=4.0)
        # scipy truncates at int(4 sigma + 0.5) taps, ours at ceil(4 sigma): equal for these sigmas
        np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_pyramid_ends_are_the_image_and_its_strongest_perturbation():
    x = images(1)
    levels = perturbation.pyramid(x, 5, 3.0)
    ones, zeros = torch.ones(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    assert torch.allclose(perturbation.apply_pyramid(levels, ones), x)
    assert torch.allclose(perturbation.apply_pyramid(levels, zeros), perturbation.gaussian_blur(x, 3.0), atol=1e-6)
    half = perturbation.apply_pyramid(levels, torch.full((1, 1, 32, 32), 0.5))  # level 2 of 0..4 exactly
    assert torch.allclose(half, levels[:, 2], atol=1e-6)
    fade = perturbation.pyramid(x, 3, 0.0, "fade")
    assert torch.allclose(perturbation.apply_pyramid(fade, torch.full((1, 1, 32, 32), 0.25)), 0.25 * x, atol=1e-6)
    m = torch.ones(1, 1, 32, 32, requires_grad=True)  # at m = 1 the mask still has a gradient
    perturbation.apply_pyramid(levels, m).sum().backward()
    assert m.grad.abs().sum() > 0


def test_smooth_mask_is_the_kernel_around_one_active_parameter():
    step, sigma = 4, 6.0
    masks = perturbation.SmoothMask((32, 32), step, sigma)
    p = torch.zeros(1, masks.params)
    centre = (3, 4)  # the parameter at pixel (12, 16)
    p[0, centre[0] * masks.grid[1] + centre[1]] = 1.0
    m = masks(p)[0, 0]
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    z = torch.sqrt((yy - 12) ** 2 + (xx - 16) ** 2) / sigma
    k = torch.exp(-2 * (z - 0.5).clamp_min(0) ** 2)
    # the smooth max of k and zeros: k e^{20k} / (e^{20k} + zeros in the neighbourhood)
    zeros = masks.index.shape[1] - 1  # every pixel sums over the same number of (padded) neighbours
    expected = torch.where(z <= 2.5, k * torch.exp(20 * k) / (torch.exp(20 * k) + zeros), torch.zeros_like(k))
    assert torch.allclose(m, expected, atol=1e-5)
    assert m[z <= 0.5].min() > 0.999


def test_extremal_perturbation_finds_the_planted_region_and_repeats_itself():
    """400 iterations: at 300 the first image's top-area IoU is 0.78 on an AVX-512 AMD EPYC (oneDNN's
    kernels round differently by CPU), 0.83 at 400."""
    x = images(2)
    target = torch.zeros(2, dtype=torch.long)
    masks = perturbation.extremal_masks(Planted(), x, target, areas=[AREA, 0.2], iterations=400)
    assert masks.shape == (2, 2, 32, 32)
    for i in range(2):
        assert top_iou(masks[i, 0], AREA) > 0.8
        for j, area in enumerate([AREA, 0.2]):  # the area constraint holds (the smooth edge adds a rim)
            assert abs(float((masks[i, j] > 0.5).double().mean()) - area) < 0.04
    again = perturbation.extremal_masks(Planted(), x, target, areas=[AREA, 0.2], iterations=400)
    assert torch.equal(masks, again)


def test_extremal_perturbation_agrees_with_torchray():
    """torchray 1.0.0.2 (Fong, Patrick & Vedaldi's code): the same image, step, sigma, blur and
    schedule, one area, no jitter; the two masks must pick the same pixels."""
    ep = pytest.importorskip("torchray.attribution.extremal_perturbation")
    x = images(1, seed=3)
    ours = perturbation.extremal_masks(Planted(), x, torch.zeros(1, dtype=torch.long), areas=[AREA], iterations=300,
                                       step=1 / 32, sigma=3 / 32, max_blur=0.09)[0, 0]
    original = ep.Perturbation.__init__

    def our_blur(self, input, num_levels=8, max_blur=20, type="blur"):  # torchray fixes 20 pixels of blur
        original(self, input, num_levels, 0.09 * 32, type)

    ep.Perturbation.__init__ = our_blur
    try:
        theirs, _ = ep.extremal_perturbation(Planted(), x, 0, areas=[AREA], max_iter=300, step=1, sigma=3,
                                             jitter=False)
    finally:
        ep.Perturbation.__init__ = original
    theirs = theirs[0, 0]
    assert top_iou(theirs, AREA) > 0.8 and top_iou(ours, AREA) > 0.8
    k = round(AREA * 1024)
    a, b = set(ours.flatten().topk(k).indices.tolist()), set(theirs.flatten().topk(k).indices.tolist())
    assert len(a & b) / len(a | b) > 0.7
    assert np.corrcoef(ours.flatten().numpy(), theirs.flatten().numpy())[0, 1] > 0.9


def test_meaningful_perturbation_deletes_the_planted_region():
    x = images(2)
    net = Planted(scale=0.25, offset=8.0)  # logits within a few units: the softmax is not saturated
    target = torch.zeros(2, dtype=torch.long)
    mask = perturbation.meaningful_mask(net, x, target, iterations=300)
    saliency = 1 - mask
    for i in range(2):  # no area constraint here: the deleted blob covers the region and its rim
        top = saliency[i].flatten().topk(round(2 * AREA * 1024)).indices
        assert region_mask().flatten()[top].double().sum() / 64 > 0.9
        inside, outside = saliency[i][region_mask()].mean(), saliency[i][~region_mask()].mean()
        assert inside > 5 * outside
    with torch.no_grad():  # the deletion worked: the class probability fell
        before = torch.softmax(net(x), 1)[:, 0]
        after = torch.softmax(net(perturbation.apply_pyramid(perturbation.pyramid(x, 8, 0.09 * 32),
                                                             mask.unsqueeze(1))), 1)[:, 0]
    assert (after < before - 0.3).all()
    assert torch.equal(mask, perturbation.meaningful_mask(net, x, target, iterations=300))


def test_both_are_attribution_methods_with_the_inputs_shape():
    x = images(3).repeat(1, 3, 1, 1)
    target = torch.zeros(3, dtype=torch.long)
    for method in ("extremal_perturbation", "meaningful_perturbation"):
        out = attribution.attribute(Planted(), x, target, method, ep_iterations=20, mp_iterations=20,
                                    internal_batch_size=4)  # chunks of 1 image x 3 areas
        assert out.shape == x.shape and torch.isfinite(out).all()
        assert torch.equal(out[:, 0], out[:, 2])  # one mask, repeated over channels
    with pytest.raises(ValueError, match="areas"):
        attribution.attribute(Planted(), x, target, "extremal_perturbation", ep_areas=[1.5])
