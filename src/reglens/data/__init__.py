"""Datasets: the registry of releases, their conversion into one compact tensor dictionary, and the
dataset resident on a device. Fetching and file I/O are the data stage's (reglens.stages.data).

The tensor dictionary holds uint8 images (N, C, H, W), int64 labels, the train/test split, class names and
the per-channel training mean and std (in [0, 1] pixel units).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from reglens.data import cifar, clusters2d, digits, mnist
from reglens.data.download import RemoteFile


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    channels: int
    size: int
    num_classes: int
    remote: dict[str, RemoteFile]
    read: Callable[[dict[str, Path], dict], dict]  # (raw files, the dataset's `data.<name>` options)
    train_size: int  # images in each split of the release (for cost estimates)
    test_size: int
    inputs: str = "images"  # or "points": 2-channel 1x1 inputs, coordinates in the plane


DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec("cifar10", 3, 32, 10, {"archive": cifar.CIFAR10},
                           lambda p, o: cifar.read_archive(p["archive"], 10), 50000, 10000),
    "cifar100": DatasetSpec("cifar100", 3, 32, 100, {"archive": cifar.CIFAR100},
                            lambda p, o: cifar.read_archive(p["archive"], 100), 50000, 10000),
    "mnist": DatasetSpec("mnist", 1, 28, 10, mnist.REMOTE, lambda p, o: mnist.read_files(p), 60000, 10000),
    "digits": DatasetSpec("digits", 1, 8, 10, {}, lambda p, o: digits.load(), 1437, 360),
    "clusters2d": DatasetSpec("clusters2d", 2, 1, 4, {}, lambda p, o: clusters2d.load(o), 1000, 400, inputs="points"),
}


def spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}")
    return DATASETS[name]


def remote_files(name: str) -> dict[str, RemoteFile]:
    return spec(name).remote


def convert(name: str, raw: dict[str, Path], options: dict | None = None) -> dict:
    """Read the raw release (or generate the toy data from `options`) into the tensor-file dictionary."""
    ds = spec(name)
    arrays = ds.read(raw, options or {})
    x_train = np.array(arrays["x_train"], dtype=np.uint8)
    expected = (ds.channels, ds.size, ds.size)
    if x_train.shape[1:] != expected:
        raise ValueError(f"{name}: images have shape {x_train.shape[1:]}, expected {expected}")
    pixels = x_train.astype(np.float64) / 255.0
    return {
        "name": name,
        "x_train": torch.from_numpy(x_train),
        "y_train": torch.from_numpy(np.asarray(arrays["y_train"], dtype=np.int64)),
        "x_test": torch.from_numpy(np.array(arrays["x_test"], dtype=np.uint8)),
        "y_test": torch.from_numpy(np.asarray(arrays["y_test"], dtype=np.int64)),
        "classes": list(arrays["classes"]),
        "mean": pixels.mean(axis=(0, 2, 3)).tolist(),
        "std": pixels.std(axis=(0, 2, 3)).tolist(),
        **({"half_width": float(arrays["half_width"])} if "half_width" in arrays else {}),
    }


@dataclass
class TensorData:
    """A dataset resident on one device: uint8 images and int64 labels."""
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: list[float]
    std: list[float]
    half_width: float | None = None  # points datasets: pixel 0..1 spans -half_width..half_width in the plane
    mask_train: torch.Tensor | None = None  # shortcut datasets: each training image's planted mark (N, H, W) bool

    @property
    def channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def size(self) -> int:
        return self.x_train.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def from_blob(blob: dict, device: torch.device | str = "cpu") -> TensorData:
    """The dataset of a tensor dictionary (as `convert` makes it), its tensors on `device`."""
    return TensorData(
        name=blob["name"], classes=blob["classes"], mean=blob["mean"], std=blob["std"],
        half_width=blob.get("half_width"), mask_train=blob["mask_train"].to(device) if "mask_train" in blob else None,
        **{k: blob[k].to(device) for k in ("x_train", "y_train", "x_test", "y_test")})


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]; models normalize internally."""
    return x_uint8.float().div_(255.0)


def test_subset(data: TensorData, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The same n test images (float, [0, 1]) and labels for every cell of a dataset: a seeded choice."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.y_test), generator=gen)[:n].to(data.x_test.device)
    return to_float(data.x_test[idx]), data.y_test[idx]
