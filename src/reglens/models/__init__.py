"""Model registry: `build(name, ...)` and `from_checkpoint(blob)` are the only ways models are made."""
from __future__ import annotations

from reglens.models.alexnet import AlexNet, AlexNetB
from reglens.models.base import ReglensModel
from reglens.models.mlp import MLP
from reglens.models.resnet import ResNet18, ResNet50
from reglens.models.small import DDNet, LeNet, SimpleCNN
from reglens.models.vgg import VGG19

MODELS: dict[str, type[ReglensModel]] = {
    "simplecnn": SimpleCNN,
    "lenet": LeNet,
    "ddnet": DDNet,
    "alexnet": AlexNet,
    "alexnet_b": AlexNetB,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "vgg19": VGG19,
    "mlp": MLP,
}


def build(name: str, in_channels: int, input_size: int, num_classes: int, width: float = 1.0,
          dropout: float = 0.0, mean=None, std=None, **extra) -> ReglensModel:
    """`extra`: options only some families take (the MLP's `depth`)."""
    if name not in MODELS:
        raise KeyError(f"unknown architecture {name!r}; valid: {sorted(MODELS)}")
    return MODELS[name](in_channels=in_channels, input_size=input_size, num_classes=num_classes,
                        width=width, dropout=dropout, mean=mean, std=std, **extra)


def to_checkpoint(model: ReglensModel, arch: str, kwargs: dict) -> dict:
    """The checkpoint dictionary of a model: tensors and plain values only (loads with weights_only)."""
    return {"arch": arch, "kwargs": dict(kwargs),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def from_checkpoint(blob: dict) -> ReglensModel:
    """The model a checkpoint dictionary describes, in eval mode, on the CPU."""
    model = build(blob["arch"], **blob["kwargs"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()
