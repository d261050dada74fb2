"""Activation maximization: class objectives and units beyond the data."""
import torch

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
