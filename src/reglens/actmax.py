"""Activation maximization ("what"): regularized gradient ascent on the input.

Objective for a unit (a channel of a named layer, spatially averaged) or a class logit:
    maximize  a(x) - l2 * ||x - 0.5||^2 / n - tv * TV(x)
with random jitter (a circular shift of up to `jitter` pixels each step), optionally over a
Fourier-space parametrization of the image (scaled by 1/frequency, Olah et al. 2017), pixels kept in
[0, 1] by a sigmoid. Fixed seed: the same cell gives the same images."""
from __future__ import annotations

import torch
from torch import nn

ACTMAX_DEFAULTS = {"steps": 128, "lr": 0.05, "jitter": 1, "l2": 1e-3, "tv": 1e-2, "fourier": True,
                   "units_per_layer": 4, "seed": 0}


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class FourierImage(nn.Module):
    """Image = sigmoid(irfft2(spectrum / frequency)): decorrelated, low frequencies favoured."""

    def __init__(self, n, c, h, w, gen):
        super().__init__()
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        self.register_buffer("scale", 1.0 / torch.sqrt(fx ** 2 + fy ** 2).clamp_min(1.0 / max(h, w)))
        self.spectrum = nn.Parameter(0.01 * torch.randn(n, c, h, w // 2 + 1, 2, generator=gen))
        self.size = (h, w)

    def forward(self):
        spec = torch.view_as_complex(self.spectrum) * self.scale
        return torch.sigmoid(torch.fft.irfft2(spec, s=self.size, norm="ortho") * 4)


class PixelImage(nn.Module):
    def __init__(self, n, c, h, w, gen):
        super().__init__()
        self.logits = nn.Parameter(0.01 * torch.randn(n, c, h, w, generator=gen))

    def forward(self):
        return torch.sigmoid(self.logits)


def maximize(model: nn.Module, shape: tuple[int, int, int], objectives: list[tuple[str | None, int]],
             **options) -> torch.Tensor:
    """Images (len(objectives), C, H, W) maximizing each (layer, channel) or (None, class) objective,
    all optimized together in one batch."""
    o = {**ACTMAX_DEFAULTS, **options}
    unknown = set(options) - set(ACTMAX_DEFAULTS) - {"units_per_layer"}
    if unknown:
        raise ValueError(f"unknown activation-maximization option(s) {sorted(unknown)}; valid: {sorted(ACTMAX_DEFAULTS)}")
    model = model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(o["seed"])
    n = len(objectives)
    image = (FourierImage if o["fourier"] else PixelImage)(n, *shape, gen).to(device)
    opt = torch.optim.Adam(image.parameters(), lr=o["lr"])
    captured: dict[str, torch.Tensor] = {}
    layers = sorted({layer for layer, _ in objectives if layer is not None})
    hooks = [model.get_submodule(layer).register_forward_hook(
        lambda m, i, out, layer=layer: captured.__setitem__(layer, out)) for layer in layers]
    try:
        for _ in range(o["steps"]):
            x = image()
            if o["jitter"]:
                dy, dx = torch.randint(-o["jitter"], o["jitter"] + 1, (2,), generator=gen).tolist()
                x_in = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            else:
                x_in = x
            logits = model(x_in)
            acts = []
            for i, (layer, index) in enumerate(objectives):
                acts.append(logits[i, index] if layer is None else captured[layer][i, index].mean())
            objective = torch.stack(acts)
            loss = -objective.sum() + o["l2"] * ((x - 0.5) ** 2).flatten(1).sum(1).sum() / x[0].numel() \
                + o["tv"] * n * total_variation(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return image().detach()
    finally:
        for h in hooks:
            h.remove()


def default_objectives(model, num_classes: int, units_per_layer: int) -> list[tuple[str | None, int]]:
    """The first `units_per_layer` channels of every named layer, then every class logit."""
    objectives = []
    for layer in model.layer_names:
        module = model.get_submodule(layer)
        convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
        channels = convs[-1].out_channels
        objectives += [(layer, c) for c in range(min(units_per_layer, channels))]
    return objectives + [(None, k) for k in range(num_classes)]
