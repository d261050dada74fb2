"""Activation maximization: class objectives, chosen units, and units beyond the data."""
import pytest
import torch

from conftest import REPO
from reglens import actmax


def test_class_activation_maximization_is_classified_as_its_class(digits_model):
    objectives = [(None, k) for k in range(10)]
    images = actmax.maximize(digits_model, (1, 8, 8), objectives, steps=200, lr=0.1)
    assert images.min() >= 0 and images.max() <= 1
    with torch.no_grad():
        predicted = digits_model(images).argmax(1)
    assert (predicted == torch.arange(10)).float().mean() >= 0.9
    again = actmax.maximize(digits_model, (1, 8, 8), objectives, steps=200, lr=0.1)
    assert torch.equal(images, again)


def test_activation_maximization_goes_well_beyond_the_data_without_saturating(digits_model, digits):
    x = torch.cat([digits.x_train, digits.x_test]).float() / 255
    objectives = actmax.default_objectives(digits_model, 10, 4)
    maxima, top = actmax.dataset_maxima(digits_model, x, objectives)
    assert torch.allclose(maxima, actmax.objective_values(digits_model, x, objectives).max(0).values)
    images = actmax.maximize(digits_model, (1, 8, 8), objectives, scale=maxima, starts=top)
    with torch.no_grad():
        reached = actmax.objective_values(digits_model, images, objectives, torch.arange(len(objectives)))
    ratio = reached / maxima
    assert ratio.median() >= 1.5 and ratio.min() >= 1.0  # every objective beyond the data, most far beyond
    assert actmax.saturation(images) <= actmax.saturation(x) + 0.1  # no more saturated than the data itself


def test_chosen_units_are_maximized_and_a_missing_unit_is_named(digits_model, digits):
    objectives = actmax.default_objectives(digits_model, 10, 1, {"body.block2": [5, 2, 5]})
    assert objectives == [("body.block1", 0), ("body.block2", 5), ("body.block2", 2)] + [(None, k) for k in range(10)]
    # the objective of a chosen unit is its channel's spatial mean in the layer's output (a forward hook, by hand)
    x = digits.x_test[:16].float() / 255
    seen = {}
    handle = digits_model.body.block2.register_forward_hook(lambda m, i, out: seen.setdefault("out", out))
    with torch.no_grad():
        values = actmax.objective_values(digits_model, x, objectives)
    handle.remove()
    torch.testing.assert_close(values[:, 1], seen["out"][:, 5].mean((1, 2)))
    torch.testing.assert_close(values[:, 2], seen["out"][:, 2].mean((1, 2)))
    images = actmax.maximize(digits_model, (1, 8, 8), objectives[1:3], steps=100, lr=0.1)
    with torch.no_grad():
        reached = actmax.objective_values(digits_model, images, objectives[1:3], torch.arange(2))
    assert bool((reached > values[:, 1:3].max(0).values).all())  # beyond every test image
    channels = actmax.layer_channels(digits_model)
    with pytest.raises(ValueError, match=rf"actmax.units.body.block2\[1\]: unit {channels['body.block2']} does not exist; "
                                         rf"body.block2 has {channels['body.block2']} units"):
        actmax.default_objectives(digits_model, 10, 1, {"body.block2": [0, channels["body.block2"]]})


def test_config_refuses_units_no_architecture_has():
    from reglens import config

    cfg = config.load_yaml(REPO / "config" / "demo.yaml")
    for units, message in [({"body.block9": [0]}, r"actmax.units: \['body.block9'\] is no named layer .* valid: \[.*'body.block2'"),
                           ({"body.block2": [4096]}, r"actmax.units.body.block2\[0\]: unit 4096 does not exist; .* in \w+ \(studies.\w+\)")]:
        with pytest.raises(config.ConfigError, match=message):
            config.validate({**cfg, "actmax": {**cfg.get("actmax", {}), "units": units}})
    assert config.validate({**cfg, "actmax": {"units": {"body.block2": [1]}}})["actmax"]["units"] == {"body.block2": [1]}
