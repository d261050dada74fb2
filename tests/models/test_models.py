"""Every architecture: shapes, forward/backward, named layers, save/load; CIFAR forms against torchvision."""
import pytest
import torch
import torchvision
from torch import nn

from reglens import models
from reglens.stages.common import load_model, save_model

SIZES = {"cifar": (3, 32, 10), "mnist": (1, 28, 10), "digits": (1, 8, 10), "cifar100": (3, 32, 100),
         "clusters2d": (2, 1, 4)}
CONFIGURED = [(arch, "cifar") for arch in ("simplecnn", "ddnet", "resnet18", "resnet50", "vgg19")] + \
             [("lenet", "mnist"), ("simplecnn", "mnist"), ("resnet18", "cifar100"), ("mlp", "clusters2d")] + \
             [(arch, "digits") for arch, m in models.MODELS.items() if m.inputs == "images"]


@pytest.mark.parametrize("arch,where", CONFIGURED)
def test_forward_backward_and_named_layers(arch, where):
    channels, size, classes = SIZES[where]
    torch.manual_seed(0)
    model = models.build(arch, channels, size, classes, width=0.125)
    x = torch.rand(3, channels, size, size)
    seen = {}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda m, i, o, name=name: seen.__setitem__(name, o.shape)) for name in model.layer_names]
    out = model(x)
    assert out.shape == (3, classes)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    dims = 4 if model.inputs == "images" else 2  # conv blocks (N, C, H, W); the MLP's hidden layers (N, h)
    assert list(seen) == list(model.layer_names) and all(len(s) == dims for s in seen.values())
    assert model.target_layer == model.layer_names[-1]
    for h in hooks:
        h.remove()


def test_save_load_weights_only(tmp_path):
    model = models.build("resnet18", 3, 32, 10, width=0.125, dropout=0.2, mean=[0.1, 0.2, 0.3], std=[1, 2, 3])
    model.eval()
    path = tmp_path / "model.pt"
    save_model(model, "resnet18", {"in_channels": 3, "input_size": 32, "num_classes": 10, "width": 0.125,
                                    "dropout": 0.2, "mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]}, path)
    torch.load(path, weights_only=True)
    loaded = load_model(path)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert [m.p for m in loaded.dropout_modules()] == [0.2]


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch,reference", [("resnet18", torchvision.models.resnet18),
                                            ("resnet50", torchvision.models.resnet50)])
def test_resnet_is_torchvision_resnet_in_cifar_form(arch, reference):
    ref = reference(num_classes=10)
    ref.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    ref.maxpool = nn.Identity()
    ours = models.build(arch, 3, 32, 10)
    assert _count(ours) == _count(ref)
    ours_shapes = sorted(tuple(p.shape) for p in ours.parameters())
    assert ours_shapes == sorted(tuple(p.shape) for p in ref.parameters())
    stem = ours.body.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in ours.modules())


def test_vgg19_bn_convs_match_torchvision():
    ref = torchvision.models.vgg19_bn()
    ours = models.build("vgg19", 3, 32, 10)
    ref_convs = [tuple(m.weight.shape) for m in ref.features if isinstance(m, nn.Conv2d)]
    our_convs = [tuple(m.weight.shape) for m in ours.modules() if isinstance(m, nn.Conv2d)]
    assert our_convs == ref_convs and len(our_convs) == 16
    assert sum(isinstance(m, nn.BatchNorm2d) for m in ours.modules()) == 16
    assert sum(isinstance(m, nn.MaxPool2d) for m in ours.modules()) == 5


def test_lenet5_and_ddnet_published_shapes():
    lenet = models.build("lenet", 1, 28, 10)
    linears = [m for m in lenet.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(400, 120), (120, 84), (84, 10)]
    ddnet = models.build("ddnet", 3, 32, 10)
    convs = [m for m in ddnet.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 64, 128, 128] and all(m.padding == (0, 0) for m in convs)
    linears = [m for m in ddnet.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(128 * 5 * 5, 256), (256, 256), (256, 10)]


def test_normalization_lives_in_the_model():
    model = models.build("simplecnn", 3, 32, 10, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    x = torch.rand(2, 3, 32, 32)
    expected = (x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(model.normalize(x), expected)


def test_unknown_architecture_names_valid_ones():
    with pytest.raises(KeyError, match="resnet18"):
        models.build("resnet19", 3, 32, 10)
