"""Perturbation explanations: the image regions whose perturbation keeps or deletes the evidence.

- Extremal perturbation (Fong, Patrick & Vedaldi, ICCV 2019): for each area a, the smooth mask m of
  area a that, preserving only what m keeps (the rest blurred), maximizes the target logit; the area is
  enforced by the ranking constraint ||sort(vec m) - r_a||^2, r_a = (1-a)N zeros then aN ones, whose
  weight grows during the optimization. m is a smooth max over parameters on a grid of `step` pixels:
  m(u) = smax_i k(|u - u_i| / sigma) p_i, k(z) = exp(-2 max(z - 1/2, 0)^2), smax the softmax-weighted
  mean with temperature 1/20. The explanation is the mean of the masks over the areas.
- Meaningful perturbation (Fong & Vedaldi, ICCV 2017): the deletion game: minimize
  l1 * mean|1 - m| + tv * TV_beta(m) + p_c(perturbed x), m bilinearly upsampled from a coarse grid;
  the explanation is 1 - m (what had to be deleted).

Both perturb with a blur pyramid (a pixel with mask value m is taken from the pyramid level at m, 0
fully blurred or faded to black, 1 untouched), run batched over images (and areas) on the device,
and hold no randomness: the same inputs give the same masks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EP_DEFAULTS = {"areas": (0.05, 0.1, 0.2), "iterations": 300, "step": 7 / 224, "sigma": 21 / 224,
               "max_blur": 0.09, "levels": 8, "perturbation": "blur", "variant": "preserve"}
MP_DEFAULTS = {"iterations": 300, "l1": 0.01, "tv": 0.2, "tv_beta": 3.0, "lr": 0.1, "step": 0.125,
               "max_blur": 0.09, "levels": 8, "perturbation": "blur"}
PERTURBATIONS = ("blur", "fade")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, kernel half-width ceil(4 sigma), normalized, zero padding."""
    if sigma <= 0:
        return x.clone()
    half = math.ceil(4 * sigma)
    taps = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(half, 0), groups=c)
    return F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, half), groups=c)


def pyramid(x: torch.Tensor, levels: int, max_blur: float, kind: str = "blur") -> torch.Tensor:
    """(N, L, C, H, W): level l is x blurred with sigma (1 - l/(L-1)) * max_blur pixels ('blur') or
    scaled by l/(L-1) ('fade'); level L-1 is x itself."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {PERTURBATIONS}, got {kind!r}")
    if levels < 2:
        raise ValueError(f"a perturbation pyramid needs at least 2 levels, got {levels}")
    fractions = torch.linspace(0, 1, levels).tolist()
    if kind == "blur":
        return torch.stack([gaussian_blur(x, (1 - f) * max_blur) for f in fractions], 1)
    return torch.stack([x * f for f in fractions], 1)


def apply_pyramid(levels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per pixel, the pyramid interpolated linearly at level mask * (L-1): levels (B, L, C, H, W),
    mask (B, 1, H, W) in [0, 1] -> (B, C, H, W)."""
    top = levels.shape[1] - 1
    position = mask * top
    low = position.detach().floor().clamp(0, top - 1).long()  # m = 1 interpolates in the top interval,
    frac = position - low                                      # so its gradient is not zero there
    shape = (levels.shape[0], 1, *levels.shape[2:])
    y0 = levels.gather(1, low.unsqueeze(1).expand(shape)).squeeze(1)
    y1 = levels.gather(1, (low + 1).unsqueeze(1).expand(shape)).squeeze(1)
    return (1 - frac) * y0 + frac * y1


class SmoothMask:
    """Masks of shape (H, W) from parameters on a grid of `step` pixels (centres 0, step, 2 step, ...),
    by the smooth max of Fong et al. (2019): m(u) = sum_i w_i softmax(coldness * w)_i, w_i = k(d_ui /
    sigma) p_i, clamped to [0, 1]. Only parameters within 2.5 sigma of a pixel enter its sum (k is
    below 3e-4 beyond): each pixel gathers its neighbours, padded with zero weights."""

    def __init__(self, size: tuple[int, int], step: int, sigma: float, coldness: float = 20.0,
                 device: torch.device | str = "cpu"):
        self.size, self.step, self.coldness = size, step, coldness
        self.grid = tuple(math.ceil(s / step) for s in size)
        uy, ux = torch.meshgrid(torch.arange(size[0], dtype=torch.float32), torch.arange(size[1], dtype=torch.float32),
                                indexing="ij")
        cy, cx = torch.meshgrid(step * torch.arange(self.grid[0], dtype=torch.float32),
                                step * torch.arange(self.grid[1], dtype=torch.float32), indexing="ij")
        dist = torch.cdist(torch.stack([uy.flatten(), ux.flatten()], 1), torch.stack([cy.flatten(), cx.flatten()], 1))
        kernel = torch.exp(-2 * (dist / sigma - 0.5).clamp_min(0) ** 2)
        near = dist <= 2.5 * sigma + 1e-6
        width = max(1, int(near.sum(1).max()))
        order = torch.argsort((~near).float(), dim=1, stable=True)[:, :width]  # each pixel's neighbours first
        self.index = order.to(device)                                         # (H*W, K)
        self.kernel = (kernel.gather(1, order) * near.gather(1, order)).to(device)

    @property
    def params(self) -> int:
        return self.grid[0] * self.grid[1]

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        w = self.kernel.unsqueeze(0) * p[:, self.index]  # (B, H*W, K)
        m = (w * torch.softmax(self.coldness * w, dim=2)).sum(2)
        return m.clamp(0, 1).view(len(p), 1, *self.size)


def area_reference(pixels: int, areas, device=None) -> torch.Tensor:
    """(A, pixels): the sorted mask an area a would have: (1 - a) * pixels zeros, then ones."""
    ref = torch.ones(len(areas), pixels, device=device)
    for i, a in enumerate(areas):
        ref[i, :int(pixels * (1 - a))] = 0
    return ref


def _pixels(fraction: float, side: int) -> int:
    return max(1, round(fraction * side))


def extremal_masks(model, x: torch.Tensor, target: torch.Tensor, areas=EP_DEFAULTS["areas"],
                   iterations: int = EP_DEFAULTS["iterations"], step: float = EP_DEFAULTS["step"],
                   sigma: float = EP_DEFAULTS["sigma"], max_blur: float = EP_DEFAULTS["max_blur"],
                   levels: int = EP_DEFAULTS["levels"], perturbation: str = "blur", variant: str = "preserve",
                   area_weight: float = 300.0, growth: float = 1.0035, lr: float = 0.01,
                   momentum: float = 0.9) -> torch.Tensor:
    """Extremal perturbation masks (N, A, H, W), one per image and area. `step`, `sigma` and `max_blur` are
    fractions of the image side (the paper's 7, 21 and 20 pixels at 224), at least one pixel. `variant`: 'preserve' (the mask is what, kept alone, raises the logit most) or
    'delete' (the mask is what, perturbed alone, lowers it most). The parameters start at 1 and
    move by SGD (momentum and dampening 0.9); the area term's weight grows by `growth` per step."""
    if variant not in ("preserve", "delete"):
        raise ValueError(f"variant must be 'preserve' or 'delete', got {variant!r}")
    areas = [float(a) for a in areas]
    if not areas or not all(0 < a < 1 for a in areas):
        raise ValueError(f"areas must be fractions strictly between 0 and 1, got {areas}")
    n, _, h, w = x.shape
    k = len(areas)
    pixel_step = _pixels(step, min(h, w))
    masks = SmoothMask((h, w), pixel_step, max(1.0, sigma * min(h, w)), device=x.device)
    levels_ = pyramid(x.detach(), levels, max_blur * min(h, w), perturbation).repeat_interleave(k, 0)
    reference = area_reference(h * w, areas, x.device).repeat(n, 1)
    targets = target.repeat_interleave(k)
    p = torch.ones(n * k, masks.params, device=x.device, requires_grad=True)
    optimizer = torch.optim.SGD([p], lr=lr, momentum=momentum, dampening=momentum)
    weight = area_weight
    for _ in range(iterations):
        m = masks(p)
        logits = model(apply_pyramid(levels_, m if variant == "preserve" else 1 - m))
        reward = logits.gather(1, targets.view(-1, 1)).squeeze(1)
        reward = reward if variant == "preserve" else -reward
        area = ((m.flatten(1).sort(1).values - reference) ** 2).mean(1)
        energy = (reward - weight * area).sum()
        optimizer.zero_grad()
        (-energy).backward()
        optimizer.step()
        with torch.no_grad():
            p.clamp_(0, 1)
        weight *= growth
    with torch.no_grad():
        return masks(p).view(n, k, h, w)


def extremal_perturbation(model, x: torch.Tensor, target: torch.Tensor, **options) -> torch.Tensor:
    """The attribution map of extremal perturbation: the mean of the preserving masks over the areas,
    repeated over channels (the input's shape)."""
    with torch.enable_grad():
        masks = extremal_masks(model, x, target, **options)
    return masks.mean(1, keepdim=True).expand_as(x).contiguous()


def total_variation(m: torch.Tensor, beta: float) -> torch.Tensor:
    """Per mask: mean |vertical difference|^beta + mean |horizontal difference|^beta."""
    dy = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta).flatten(1).mean(1)
    dx = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta).flatten(1).mean(1)
    return dy + dx


def meaningful_mask(model, x: torch.Tensor, target: torch.Tensor, iterations: int = MP_DEFAULTS["iterations"],
                    l1: float = MP_DEFAULTS["l1"], tv: float = MP_DEFAULTS["tv"],
                    tv_beta: float = MP_DEFAULTS["tv_beta"], lr: float = MP_DEFAULTS["lr"],
                    step: float = MP_DEFAULTS["step"], max_blur: float = MP_DEFAULTS["max_blur"],
                    levels: int = MP_DEFAULTS["levels"], perturbation: str = "blur") -> torch.Tensor:
    """The deletion mask (N, H, W) of meaningful perturbation: 1 keeps a pixel, 0 perturbs it. A coarse
    mask (the side / step_pixels grid) starts at 1, is upsampled bilinearly and optimized by Adam on
    l1 * mean|1 - m| + tv * TV_beta(m) + softmax(model(perturbed))_target, clamped to [0, 1]."""
    n, _, h, w = x.shape
    pixel_step = _pixels(step, min(h, w))
    grid = (math.ceil(h / pixel_step), math.ceil(w / pixel_step))
    levels_ = pyramid(x.detach(), levels, max_blur * min(h, w), perturbation)
    coarse = torch.ones(n, 1, *grid, device=x.device, requires_grad=True)
    optimizer = torch.optim.Adam([coarse], lr=lr)

    def upsample(c):
        return c if c.shape[-2:] == (h, w) else F.interpolate(c, size=(h, w), mode="bilinear", align_corners=False)

    for _ in range(iterations):
        m = upsample(coarse)
        prob = torch.softmax(model(apply_pyramid(levels_, m)), 1).gather(1, target.view(-1, 1)).squeeze(1)
        loss = l1 * (1 - m).abs().flatten(1).mean(1) + tv * total_variation(m, tv_beta) + prob
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
        with torch.no_grad():
            coarse.clamp_(0, 1)
    with torch.no_grad():
        return upsample(coarse).squeeze(1)


def meaningful_perturbation(model, x: torch.Tensor, target: torch.Tensor, **options) -> torch.Tensor:
    """The attribution map of meaningful perturbation: 1 - the deletion mask, repeated over channels."""
    with torch.enable_grad():
        mask = meaningful_mask(model, x, target, **options)
    return (1 - mask).unsqueeze(1).expand_as(x).contiguous()
