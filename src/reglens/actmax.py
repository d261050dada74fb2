"""Activation maximization ("what"): gradient ascent on the input, measured against the data.

Objective for a unit (a channel of a named layer, spatially averaged) or a class logit, divided by
its maximum over the dataset (so every objective has the same scale and the result reads as a
multiple of what the data reaches):

    maximize  a(x) / max_data a  -  l2 * mean((x - 0.5)^2)  -  tv * TV(x)

over pixels kept in [0, 1] (projected after each Adam step), from `restarts` uniform random starts
plus (`from_data`) the dataset image that maximizes the objective; the best start by the objective
is kept. For a ReLU network the box maximum lies at a vertex (every pixel 0 or 1); the L2 pull to
gray keeps the images inside it: on the demo's digits model the defaults reach a median 1.8 times
the dataset maximum with 59 % of pixels at 0 or 1, about the data's own 58 % (docs/explain.md).
A Fourier parametrization (Olah et al. 2017) is an option. Fixed seed: the same cell, the same images.
"""
from __future__ import annotations

import torch
from torch import nn

ACTMAX_DEFAULTS = {"steps": 256, "lr": 0.05, "restarts": 8, "from_data": True, "l2": 3.0, "tv": 0.0,
                   "jitter": 0, "fourier": False, "units_per_layer": 4, "units": {}, "seed": 0,
                   "reference_images": 2000}


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per image."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1) + \
        (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)


def saturation(images: torch.Tensor) -> float:
    """Fraction of pixels at 0 or 1 (within one uint8 level)."""
    return float(((images <= 1 / 255) | (images >= 254 / 255)).float().mean())


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
    """Pixels themselves, projected into [0, 1] after each step."""

    def __init__(self, start: torch.Tensor):
        super().__init__()
        self.pixels = nn.Parameter(start.clone())

    def forward(self):
        return self.pixels

    @torch.no_grad()
    def project(self):
        self.pixels.clamp_(0, 1)


def channel_mean(out: torch.Tensor, unit: int) -> torch.Tensor:
    """A unit's value per image: its channel's spatial mean in the layer's output."""
    return out[:, unit].flatten(1).mean(1)


def objective_values(model: nn.Module, x: torch.Tensor, objectives: list[tuple[str | None, int]],
                     which: torch.Tensor | None = None) -> torch.Tensor:
    """Values of objectives on images: (N, K) for every objective on every image, or with `which`
    (N,) the value of objective which[n] on image n."""
    captured: dict[str, torch.Tensor] = {}
    layers = sorted({layer for layer, _ in objectives if layer is not None})
    hooks = [model.get_submodule(layer).register_forward_hook(
        lambda m, i, out, layer=layer: captured.__setitem__(layer, out)) for layer in layers]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    columns = [logits[:, index] if layer is None else channel_mean(captured[layer], index)
               for layer, index in objectives]
    values = torch.stack(columns, 1)
    return values if which is None else values.gather(1, which.view(-1, 1)).squeeze(1)


@torch.no_grad()
def dataset_maxima(model: nn.Module, x: torch.Tensor, objectives, batch_size: int = 500):
    """Each objective's maximum over images x, and the image that reaches it."""
    values = torch.cat([objective_values(model, x[i:i + batch_size], objectives) for i in range(0, len(x), batch_size)])
    best = values.max(0)
    return best.values, x[best.indices]


def maximize(model: nn.Module, shape: tuple[int, int, int], objectives: list[tuple[str | None, int]],
             scale: torch.Tensor | None = None, starts: torch.Tensor | None = None, **options) -> torch.Tensor:
    """Images (len(objectives), C, H, W) maximizing each (layer, channel) or (None, class) objective,
    all starts of all objectives optimized together in one batch. `scale`: each objective's divisor
    (its dataset maximum; a non-positive one counts as 1); `starts`: one more start per objective."""
    o = {**ACTMAX_DEFAULTS, **options}
    unknown = set(options) - set(ACTMAX_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown activation-maximization option(s) {sorted(unknown)}; valid: {sorted(ACTMAX_DEFAULTS)}")
    model = model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(o["seed"])
    n, restarts = len(objectives), max(1, o["restarts"])
    scale = torch.ones(n, device=device) if scale is None else torch.where(scale > 0, scale, torch.ones_like(scale))
    if o["fourier"]:
        image = FourierImage(restarts * n, *shape, gen).to(device)
    else:
        inits = [torch.rand(n, *shape, generator=gen) for _ in range(restarts)]
        if starts is not None and o["from_data"]:
            inits.append(starts.detach().cpu())
        image = PixelImage(torch.cat(inits)).to(device)
    which = torch.arange(len(image()), device=device) % n
    opt = torch.optim.Adam(image.parameters(), lr=o["lr"])

    def score(x, x_in):
        value = objective_values(model, x_in, objectives, which) / scale[which]
        return value - o["l2"] * (x - 0.5).pow(2).flatten(1).mean(1) - o["tv"] * total_variation(x)

    for _ in range(o["steps"]):
        x = image()
        x_in = x
        if o["jitter"]:
            dy, dx = torch.randint(-o["jitter"], o["jitter"] + 1, (2,), generator=gen).tolist()
            x_in = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        loss = -score(x, x_in).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if isinstance(image, PixelImage):
            image.project()
    with torch.no_grad():
        x = image()
        best = score(x, x).view(-1, n).argmax(0)
        return x.view(-1, n, *shape)[best, torch.arange(n, device=device)]


def layer_channels(model) -> dict[str, int]:
    """Units of every named layer: the output channels of its last convolution."""
    out = {}
    for layer in model.layer_names:
        convs = [m for m in model.get_submodule(layer).modules() if isinstance(m, nn.Conv2d)]
        out[layer] = convs[-1].out_channels
    return out


def check_units(channels: dict[str, int], units: dict[str, list[int]]) -> None:
    """Every unit `units` chooses in a layer of this model exists (`channels`: layer_channels)."""
    for layer, chosen in units.items():
        for i, unit in enumerate(chosen if layer in channels else ()):
            if not 0 <= unit < channels[layer]:
                raise ValueError(f"actmax.units.{layer}[{i}]: unit {unit} does not exist; {layer} has "
                                 f"{channels[layer]} units (0 to {channels[layer] - 1})")


def default_objectives(model, num_classes: int, units_per_layer: int,
                       units: dict[str, list[int]] | None = None) -> list[tuple[str | None, int]]:
    """For each named layer the units `units` chooses in it ({layer: [unit, ...]}; a layer this model
    lacks is left to the models that have it), else its first `units_per_layer` channels; then every
    class logit. A chosen unit beyond its layer's channels is refused, naming it."""
    channels = layer_channels(model)
    units = units or {}
    check_units(channels, units)
    objectives = []
    for layer, n in channels.items():
        picked = units[layer] if layer in units else range(min(units_per_layer, n))
        objectives += [(layer, int(c)) for c in dict.fromkeys(picked)]
    return objectives + [(None, k) for k in range(num_classes)]
