"""Where an internal unit looks: attribution maps of a chosen unit (a channel of a named layer,
spatially averaged, the objective activation maximization draws) to the input pixels, with captum's
neuron methods. The units are those activation maximization maximizes (`actmax.units`, else the
first `units_per_layer` of each layer), so a unit's "what" and "where" sit side by side.

- neuron_gradient: the gradient of the unit's mean activation w.r.t. the pixels (captum's
  NeuronGradient), summed over channels;
- neuron_integrated_gradients: Integrated Gradients of the unit from a black image (captum's
  NeuronIntegratedGradients, Gauss-Legendre), summed over channels; its completeness error
  |sum of attributions - (a(x) - a(0))| / |a(x) - a(0)| is recorded per image."""
from __future__ import annotations

import torch
from captum.attr import NeuronGradient, NeuronIntegratedGradients

from reglens.actmax import channel_mean, objective_values

NEURONS_DEFAULTS = {"enabled": True, "methods": ["neuron_gradient", "neuron_integrated_gradients"], "images": 4,
                    "ig_steps": 64}
METHODS = ("neuron_gradient", "neuron_integrated_gradients")


def neuron_map(model, x: torch.Tensor, layer: str, unit: int, method: str,
               ig_steps: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (N, H, W) summed over channels, completeness error per image; NaN for the gradient)."""
    if method not in METHODS:
        raise ValueError(f"neurons.methods: {method!r} is not a neuron method; valid: {list(METHODS)}")
    model = model.eval()
    module = model.get_submodule(layer)
    select = lambda out: channel_mean(out, unit)  # noqa: E731
    if method == "neuron_gradient":
        attr = NeuronGradient(model, module).attribute(x, neuron_selector=select)
        return attr.sum(1).detach(), torch.full((len(x),), float("nan"), device=x.device)
    attr = NeuronIntegratedGradients(model, module).attribute(x, neuron_selector=select, baselines=torch.zeros_like(x),
                                                              n_steps=ig_steps, method="gausslegendre")
    with torch.no_grad():
        ends = objective_values(model, torch.cat([x, torch.zeros_like(x[:1])]), [(layer, unit)])[:, 0]
    change = ends[:-1] - ends[-1]
    error = (attr.flatten(1).sum(1) - change).abs() / change.abs().clamp_min(1e-12)
    return attr.sum(1).detach(), error.detach()
