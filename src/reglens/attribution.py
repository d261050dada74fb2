"""Attribution maps ("where") behind one call: attribute(model, x, target, method).

Captum-backed methods plus two controls that are not explanations (a random map, a Sobel edge map).
Every method returns a map of the input's shape; Grad-CAM's map is upsampled bilinearly and repeated
over channels. Inputs are pixels in [0, 1]; baselines are black images (0)."""
from __future__ import annotations

import copy
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from captum.attr import (DeepLift, GuidedBackprop, InputXGradient, IntegratedGradients, LayerAttribution,
                         LayerGradCam, NoiseTunnel, Occlusion, Saliency)
from torch import nn

DEFAULTS = {"ig_steps": 64, "nt_samples": 16, "nt_stdev": 0.15, "occlusion_window": 0.25,
            "occlusion_stride": 0.125, "internal_batch_size": 256, "seed": 0}


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


def _integrated_gradients(model, x, target, o):
    return IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                n_steps=o["ig_steps"], internal_batch_size=o["internal_batch_size"])


def _noise_tunnel(kind):
    def run(model, x, target, o):
        stdev = o["nt_stdev"] * float((x.max() - x.min()).clamp_min(1e-6))
        return NoiseTunnel(Saliency(model)).attribute(x, nt_type=kind, nt_samples=o["nt_samples"],
                                                      nt_samples_batch_size=o["nt_samples"], stdevs=stdev,
                                                      target=target, abs=False)
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
    return Occlusion(model).attribute(x, sliding_window_shapes=(c, *win), strides=(c, *stride), baselines=0.0,
                                      target=target, perturbations_per_eval=64)


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
    "random": _random,
    "sobel": _sobel,
}
CONTROLS = ("random", "sobel")


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


def _ranks(v: torch.Tensor) -> torch.Tensor:
    return v.argsort(dim=1).argsort(dim=1).double()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman rank correlation (ties broken by order)."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-300)


def randomization_layers(model: nn.Module) -> list[str]:
    """Layers with weights, from the output back to the input (the cascading order)."""
    names = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    return names[::-1]


def cascading_randomization(model, x, target, method, seed: int = 0, **options) -> list[dict]:
    """Adebayo et al. (2018): re-initialize layers cumulatively from the top; Spearman correlation
    between the |maps| of the trained and of the randomized model, mean over images, per depth."""
    original = saliency_map(attribute(model, x, target, method, **options))
    randomized = copy.deepcopy(model)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    rows = []
    try:
        for depth, name in enumerate(randomization_layers(randomized), start=1):
            randomized.get_submodule(name).reset_parameters()
            maps = saliency_map(attribute(randomized, x, target, method, **options))
            rows.append({"method": method, "depth": depth, "layer": name,
                         "spearman": float(spearman(original, maps).mean())})
    finally:
        torch.random.set_rng_state(gen_state)
    return rows


# ---------------------------------------------------------------- one cell

EXPLAIN_DEFAULTS = {
    "methods": ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "smoothgrad_sq",
                "vargrad", "guided_backprop", "deeplift", "gradcam", "occlusion", "random", "sobel"],
    "figure_images": 6, "metric_images": 100, "batch_size": 100,
    "mprt_methods": ["saliency", "integrated_gradients", "guided_backprop", "gradcam", "sobel"],
    "mprt_images": 32, "options": {},
}
