"""Attribution maps ("where") behind one call: attribute(model, x, target, method).

Captum-backed methods plus negative controls that are not explanations (reglens.measures.CONTROLS):
a random map, a Sobel edge map of the input, the input itself, a blurred input and a constant map.
Every method returns a map of the input's shape; Grad-CAM's map is upsampled bilinearly and repeated
over channels. Inputs are pixels in [0, 1]; baselines are black images (0); occlusion fills its window with `occlusion_fill`."""
from __future__ import annotations

import copy
import math
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from captum.attr import (DeepLift, GuidedBackprop, InputXGradient, IntegratedGradients, LayerAttribution,
                         LayerGradCam, Occlusion, Saliency)
from torch import nn

from reglens import perturbation
from reglens.measures import CONTROLS

DEFAULTS = {"ig_steps": 32, "ig_tolerance": 0.01, "ig_max_steps": 512, "nt_samples": 16, "nt_stdev": 0.15,
            "occlusion_window": 0.25, "occlusion_stride": 0.125, "occlusion_fill": 0.0, "internal_batch_size": 256, "seed": 0,
            "blur_sigma": 0.1,
            **{f"ep_{k}": v for k, v in perturbation.EP_DEFAULTS.items()},
            **{f"mp_{k}": v for k, v in perturbation.MP_DEFAULTS.items()}}


def prepare(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose ReLUs are not in-place (Guided Backprop and DeepLift hook them)."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _saliency(model, x, target, o):
    return Saliency(model).attribute(x, target=target, abs=False)


def _input_x_gradient(model, x, target, o):
    return InputXGradient(model).attribute(x, target=target)


def integrated_gradients(model, x: torch.Tensor, target: torch.Tensor, steps: int = 32, tolerance: float = 0.01,
                         max_steps: int = 512, internal_batch_size: int = 256):
    """Integrated Gradients from a black baseline (captum, Gauss-Legendre quadrature), checked per image
    by completeness: error = |sum(attributions) - (f(x) - f(0))| / |f(x) - f(0)| for the target logit.
    An image above `tolerance` is recomputed with twice the steps, up to `max_steps`. Returns the
    attributions, each image's relative completeness error and the steps it took."""
    ig = IntegratedGradients(model)
    attr, delta = ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                               internal_batch_size=internal_batch_size, return_convergence_delta=True)
    with torch.no_grad():
        rows = torch.arange(len(x), device=x.device)
        gap = (model(x)[rows, target] - model(torch.zeros_like(x))[rows, target]).abs().clamp_min(1e-6)
    error = delta.detach().abs() / gap
    used = torch.full((len(x),), steps, device=x.device)
    todo = error > tolerance
    while bool(todo.any()) and steps < max_steps:
        steps *= 2
        again, d = ig.attribute(x[todo], baselines=torch.zeros_like(x[todo]), target=target[todo], n_steps=steps,
                                internal_batch_size=internal_batch_size, return_convergence_delta=True)
        attr[todo], error[todo], used[todo] = again, d.detach().abs() / gap[todo], steps
        todo = error > tolerance
    return attr, error, used


def _integrated_gradients(model, x, target, o):
    return integrated_gradients(model, x, target, o["ig_steps"], o["ig_tolerance"], o["ig_max_steps"],
                                o["internal_batch_size"])[0]


def _noise_tunnel(kind):
    """SmoothGrad (Smilkov et al. 2017: the mean gradient over noisy copies), SmoothGrad^2 (the mean
    squared gradient) and VarGrad (Adebayo et al. 2018: the variance of the gradients). The noise sigma
    is nt_stdev times each image's own value range, drawn from a generator seeded by the `seed` option,
    so the same seed gives the same maps."""
    def run(model, x, target, o):
        gen = torch.Generator(device=x.device).manual_seed(o["seed"])
        flat = x.flatten(1)
        sigma = (o["nt_stdev"] * (flat.max(1).values - flat.min(1).values)).view(-1, *[1] * (x.dim() - 1))
        total, total_sq = torch.zeros_like(x), torch.zeros_like(x)
        per_chunk = max(1, o["internal_batch_size"] // max(1, len(x)))
        for start in range(0, o["nt_samples"], per_chunk):
            k = min(per_chunk, o["nt_samples"] - start)
            noise = torch.randn((k, *x.shape), generator=gen, device=x.device, dtype=x.dtype)
            noisy = (x.unsqueeze(0) + sigma.unsqueeze(0) * noise).flatten(0, 1)
            grads = Saliency(model).attribute(noisy, target=target.repeat(k), abs=False).view(k, *x.shape)
            total += grads.sum(0)
            total_sq += grads.pow(2).sum(0)
        mean = total / o["nt_samples"]
        if kind == "smoothgrad":
            return mean
        if kind == "smoothgrad_sq":
            return total_sq / o["nt_samples"]
        return total_sq / o["nt_samples"] - mean.pow(2)  # vargrad: the (population) variance
    return run


def _guided_backprop(model, x, target, o):
    return GuidedBackprop(model).attribute(x, target=target)


def _deeplift(model, x, target, o):
    return DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=target)


def _gradcam(model, x, target, o):
    layer = model.get_submodule(model.target_layer)
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return cam.expand_as(x).contiguous()


def _occlusion(model, x, target, o):
    c, h, w = x.shape[1:]
    win = max(1, round(o["occlusion_window"] * h)), max(1, round(o["occlusion_window"] * w))
    stride = max(1, round(o["occlusion_stride"] * h)), max(1, round(o["occlusion_stride"] * w))
    return Occlusion(model).attribute(x, sliding_window_shapes=(c, *win), strides=(c, *stride),
                                      baselines=float(o["occlusion_fill"]),
                                      target=target, perturbations_per_eval=64)


def _prefixed(o: dict, prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in o.items() if k.startswith(prefix)}


def _extremal_perturbation(model, x, target, o):
    """Fong et al. (2019), reglens.perturbation: images in chunks of internal_batch_size masks."""
    opts = _prefixed(o, "ep_")
    chunk = max(1, o["internal_batch_size"] // len(opts["areas"]))
    return torch.cat([perturbation.extremal_perturbation(model, x[i:i + chunk], target[i:i + chunk], **opts)
                      for i in range(0, len(x), chunk)])


def _meaningful_perturbation(model, x, target, o):
    """Fong & Vedaldi (2017), reglens.perturbation: images in chunks of internal_batch_size."""
    chunk = o["internal_batch_size"]
    return torch.cat([perturbation.meaningful_perturbation(model, x[i:i + chunk], target[i:i + chunk],
                                                           **_prefixed(o, "mp_"))
                      for i in range(0, len(x), chunk)])


def _random(model, x, target, o):
    gen = torch.Generator(device=x.device).manual_seed(o["seed"])
    return torch.rand(x.shape, device=x.device, generator=gen)


SOBEL = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude (replicate padding), the input's shape."""
    c = x.shape[1]
    kx = SOBEL.to(x).view(1, 1, 3, 3).repeat(c, 1, 1, 1)
    ky = SOBEL.T.to(x).reshape(1, 1, 3, 3).repeat(c, 1, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, kx, groups=c)
    gy = F.conv2d(padded, ky, groups=c)
    return torch.sqrt(gx ** 2 + gy ** 2)


def _sobel(model, x, target, o):
    return sobel_magnitude(x)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (sigma in pixels, kernel +-3 sigma, replicate padding), the input's shape."""
    radius = max(1, int(3 * sigma + 0.5))  # scipy.ndimage.gaussian_filter's truncate=3
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


def _image(model, x, target, o):
    return x.clone()


def _blur(model, x, target, o):
    """The input blurred with sigma = blur_sigma times its side (Song et al. 2023's blur control)."""
    return gaussian_blur(x, max(o["blur_sigma"] * x.shape[-1], 0.3))


def _constant(model, x, target, o):
    return torch.ones_like(x)


METHODS: dict[str, Callable] = {
    "saliency": _saliency,
    "input_x_gradient": _input_x_gradient,
    "integrated_gradients": _integrated_gradients,
    "smoothgrad": _noise_tunnel("smoothgrad"),
    "smoothgrad_sq": _noise_tunnel("smoothgrad_sq"),
    "vargrad": _noise_tunnel("vargrad"),
    "guided_backprop": _guided_backprop,
    "deeplift": _deeplift,
    "gradcam": _gradcam,
    "occlusion": _occlusion,
    "extremal_perturbation": _extremal_perturbation,
    "meaningful_perturbation": _meaningful_perturbation,
    "random": _random,
    "sobel": _sobel,
    "image": _image,
    "blur": _blur,
    "constant": _constant,
}
assert set(CONTROLS) <= set(METHODS)


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor, method: str, prepared: bool = False,
              **options) -> torch.Tensor:
    """Attribution of `target` logits to the pixels of x, the shape of x. `prepared=True` skips the
    model copy (call prepare() once when attributing many batches)."""
    if method not in METHODS:
        raise KeyError(f"unknown attribution method {method!r}; valid: {sorted(METHODS)}")
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown attribution option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    if method not in CONTROLS and not prepared:
        model = prepare(model)
    with warnings.catch_warnings():  # captum announces its hooks and its requires_grad on every call
        warnings.simplefilter("ignore", UserWarning)
        out = METHODS[method](model, x.detach(), target, {**DEFAULTS, **options})
    return out.detach()


# ---------------------------------------------------------------- summary metrics

def saliency_map(attr: torch.Tensor) -> torch.Tensor:
    """|attribution| summed over channels: (N, H*W)."""
    return attr.abs().sum(1).flatten(1)


def gini(maps: torch.Tensor) -> torch.Tensor:
    """Gini index of each row of non-negative values (0: uniform, -> 1: one pixel)."""
    sorted_maps, _ = maps.double().sort(dim=1)
    n = maps.shape[1]
    index = torch.arange(1, n + 1, dtype=torch.float64, device=maps.device)
    total = sorted_maps.sum(1).clamp_min(1e-300)
    return ((2 * index - n - 1) * sorted_maps).sum(1) / (n * total)


def entropy(maps: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row normalized to a distribution."""
    p = maps.double() / maps.double().sum(1, keepdim=True).clamp_min(1e-300)
    return -(p * torch.log(p.clamp_min(1e-300))).sum(1)


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks 1..P, tied values sharing their average rank (scipy's rankdata 'average')."""
    n, p = v.shape
    order = v.argsort(dim=1, stable=True)
    ordered = v.gather(1, order)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = (starts.long().cumsum(1) - 1 + (torch.arange(n, device=v.device) * p).unsqueeze(1)).flatten()
    position = torch.arange(1, p + 1, dtype=torch.float64, device=v.device).repeat(n)
    sums = torch.zeros(n * p, dtype=torch.float64, device=v.device).index_add_(0, group, position)
    counts = torch.zeros(n * p, dtype=torch.float64, device=v.device).index_add_(0, group, torch.ones_like(position))
    return torch.empty((n, p), dtype=torch.float64, device=v.device).scatter_(1, order, (sums / counts)[group].view(n, p))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman rank correlation with average ranks for ties (scipy.stats.spearmanr); NaN for
    a row where either map is constant (no ranking, so no rank correlation)."""
    ra, rb = average_ranks(a.double()), average_ranks(b.double())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = ra.norm(dim=1) * rb.norm(dim=1)
    return torch.where(denom > 0, (ra * rb).sum(1) / denom.clamp_min(1e-300), torch.full_like(denom, float("nan")))


def defined_mean(values: torch.Tensor) -> tuple[float, int]:
    """(mean over the defined values, how many were undefined); the mean is NaN when none is defined."""
    defined = values[~torch.isnan(values)]
    return (float(defined.mean()) if len(defined) else float("nan")), int(torch.isnan(values).sum())


def randomization_layers(model: nn.Module) -> list[str]:
    """Layers with weights, from the output back to the input (the cascading order)."""
    names = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    return names[::-1]


def model_randomization(model, x, target, method, variant: str = "cascading", seed: int = 0,
                        **options) -> list[dict]:
    """Adebayo et al. (2018): the Spearman correlation between the |maps| of the trained model and of a
    model whose weights are re-initialized (seeded), per layer from the output back: `cascading`
    re-initializes layers cumulatively (the row at depth k has the top k layers random), `independent`
    one layer at a time with the others trained. Per row: the mean over images with a defined
    correlation, and how many were undefined (a constant map has no ranking)."""
    if variant not in ("cascading", "independent"):
        raise ValueError(f"variant must be 'cascading' or 'independent', got {variant!r}")
    original = saliency_map(attribute(model, x, target, method, **options))
    rows = []
    with torch.random.fork_rng(devices=[x.device.index or 0] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        randomized = copy.deepcopy(model)
        for depth, name in enumerate(randomization_layers(model), start=1):
            if variant == "independent":
                randomized = copy.deepcopy(model)
            randomized.get_submodule(name).reset_parameters()
            mean, undefined = defined_mean(spearman(original, saliency_map(attribute(randomized, x, target, method,
                                                                                     **options))))
            rows.append({"method": method, "variant": variant, "randomization_seed": seed, "depth": depth, "layer": name,
                         "spearman": mean, "undefined": undefined, "images": len(x)})
    return rows


# ---------------------------------------------------------------- one cell

EXPLAIN_DEFAULTS = {
    "methods": ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "smoothgrad_sq",
                "vargrad", "guided_backprop", "deeplift", "gradcam", "occlusion", "extremal_perturbation",
                "meaningful_perturbation", *CONTROLS],
    "figure_images": 6, "metric_images": 100, "batch_size": 100,
    "mprt_methods": ["saliency", "integrated_gradients", "guided_backprop", "gradcam", "sobel", "random"],
    "mprt_images": 32, "mprt_seeds": [0, 1, 2], "options": {},
}
