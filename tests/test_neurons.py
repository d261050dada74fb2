"""Maps of internal units: captum's neuron methods against a direct autograd computation and a direct
Integrated Gradients loop, and the stage's units, tables and figure."""
import warnings

import numpy as np
import pytest
import torch

from reglens import neurons
from reglens.io import load_torch, read_csv
from reglens.plots import cell as draw
from reglens.stages.common import save_model
from reglens.stages.neurons import run_neurons

warnings.filterwarnings("ignore", category=UserWarning, module="captum")


def unit_output(model, x, layer, unit):
    seen = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, out: seen.setdefault("out", out))
    model(x)
    handle.remove()
    return seen["out"][:, unit].mean((1, 2))


def test_neuron_gradient_is_the_gradient_of_the_units_mean_activation(digits_model, digits):
    x = (digits.x_test[:6].float() / 255).requires_grad_(True)
    got, error = neurons.neuron_map(digits_model, x.detach(), "body.block2", 3, "neuron_gradient")
    value = unit_output(digits_model, x, "body.block2", 3).sum()
    (grad,) = torch.autograd.grad(value, x)
    torch.testing.assert_close(got, grad.sum(1), atol=1e-6, rtol=1e-5)
    assert torch.isnan(error).all()


def test_neuron_integrated_gradients_against_a_direct_loop_and_completeness(digits_model, digits):
    x = digits.x_test[:6].float() / 255
    got, error = neurons.neuron_map(digits_model, x, "body.block1", 2, "neuron_integrated_gradients", ig_steps=64)
    steps = 400  # midpoint rule from the black image
    total = torch.zeros_like(x)
    for k in range(steps):
        point = ((k + 0.5) / steps * x).requires_grad_(True)
        (grad,) = torch.autograd.grad(unit_output(digits_model, point, "body.block1", 2).sum(), point)
        total += grad
    direct = (x * total / steps).sum(1)
    assert float((got - direct).abs().max() / direct.abs().max()) < 0.02  # quadratures of a piecewise-linear path
    assert float(error.median()) < 0.02
    with pytest.raises(ValueError, match=r"neurons.methods: 'deconv' is not a neuron method"):
        neurons.neuron_map(digits_model, x, "body.block1", 2, "deconv")


def test_stage_maps_the_units_activation_maximization_draws(digits_model, digits_file, tmp_path):
    save_model(digits_model, "simplecnn", {"in_channels": 1, "input_size": 8, "num_classes": 10, "width": 0.5},
               tmp_path / "model.pt")
    out = {"maps": tmp_path / "maps.pt", "table": tmp_path / "units.csv"}
    cfg = {"methods": ["neuron_gradient", "neuron_integrated_gradients"], "images": 3, "ig_steps": 32}
    run_neurons(tmp_path / "model.pt", digits_file, out, cfg, {"units_per_layer": 1, "units": {"body.block2": [4, 1]}},
                device="cpu")
    blob, table = load_torch(out["maps"]), read_csv(out["table"])
    assert list(zip(blob["layers"], blob["units"])) == [("body.block1", 0), ("body.block2", 4), ("body.block2", 1)]
    assert tuple(blob["maps"].shape) == (2, 3, 3, 8, 8) and len(table) == 2 * 3 * 3
    with torch.no_grad():  # the recorded activation is the unit's mean through a forward hook
        by_hook = unit_output(digits_model, blob["images"], "body.block2", 4)
    recorded = table[(table.method == "neuron_gradient") & (table.layer == "body.block2") & (table.unit == 4)]
    np.testing.assert_allclose(recorded.activation, by_hook.numpy(), rtol=1e-5, atol=1e-6)
    ig = table[table.method == "neuron_integrated_gradients"]
    assert ig.completeness_error.notna().all() and table[table.method == "neuron_gradient"].completeness_error.isna().all()
    tile = draw.overlay_tile(blob["images"][0], np.zeros((8, 8)))
    np.testing.assert_allclose(tile, np.repeat(blob["images"][0].numpy().transpose(1, 2, 0), 3, 2))  # no heat: the image
    draw.neuron_maps(blob, tmp_path / "neurons.png", "cell")
    assert (tmp_path / "neurons.png").stat().st_size > 0
