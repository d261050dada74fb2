"""Regularizers against their definitions."""
import pytest
import torch
from torch import nn

from reglens import models, regularizers
from reglens.regularizers import penalized_weights

VARIANTS = {"none": [], "l1": [{"kind": "l1", "weight": 0.01}], "l2": [{"kind": "l2", "weight": 0.1}],
            "en": [{"kind": "elastic_net", "l1": 0.01, "l2": 0.1}], "dropout": [{"kind": "dropout", "p": 0.3}]}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.build("simplecnn", 1, 8, 10, width=0.25)


def test_weight_penalties_match_direct_formulas(model):
    convs_linears = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    flat = torch.cat([w.detach().flatten() for w in convs_linears]).double()
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([1, 2])
    logits = model(x)

    def pen(name):
        return regularizers.build(name, VARIANTS).penalties(model, x, y, logits)

    assert pen("none") == {}
    torch.testing.assert_close(pen("l1")["l1"].double(), 0.01 * flat.abs().sum(), rtol=1e-5, atol=0)
    torch.testing.assert_close(pen("l2")["l2"].double(), 0.05 * flat.pow(2).sum(), rtol=1e-5, atol=0)
    torch.testing.assert_close(pen("en")["elastic_net"].double(),
                               0.01 * flat.abs().sum() + 0.05 * flat.pow(2).sum(), rtol=1e-5, atol=0)


def test_l2_penalty_gradient_equals_sgd_weight_decay(model):
    reg = regularizers.build("l2", VARIANTS)
    model.zero_grad()
    reg.penalties(model, None, None, None)["l2"].backward()
    for w in penalized_weights(model):
        torch.testing.assert_close(w.grad, 0.1 * w.detach())


def test_biases_and_batchnorm_are_not_penalized():
    model = models.build("resnet18", 3, 32, 10, width=0.125)
    ids = {id(w) for w in penalized_weights(model)}
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert id(module.weight) not in ids and id(module.bias) not in ids
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert id(module.weight) in ids
            assert module.bias is None or id(module.bias) not in ids


def test_dropout_sets_the_architecture_sites():
    regs = regularizers.build("dropout+l2", VARIANTS)
    assert [m.kind for m in regs.members] == ["dropout", "l2"]
    model = models.build("lenet", 1, 28, 10, **regs.model_kwargs())
    assert [m.p for m in model.dropout_modules()] == [0.3, 0.3]


def test_bad_specs_name_the_key_and_the_choices():
    with pytest.raises(KeyError, match="defined variants"):
        regularizers.build("l3", VARIANTS)
    with pytest.raises(KeyError, match="unknown kind 'l3'"):
        regularizers.build("x", {"x": [{"kind": "l3"}]})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['weigth'\]; valid: \['weight'\]"):
        regularizers.build("x", {"x": [{"kind": "l2", "weigth": 1}]})
    with pytest.raises(ValueError, match="p must be in"):
        regularizers.build("x", {"x": [{"kind": "dropout", "p": 1.5}]})
