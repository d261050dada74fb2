"""What the stages share: loading the project's own files onto a device, and the job context."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from reglens import data, models
from reglens.device import set_threads
from reglens.io import load_torch, log_to, torch_save


def load_dataset(path: str | Path, device: torch.device | str = "cpu") -> data.TensorData:
    """A converted dataset file (resources/data/<name>.pt) on `device`."""
    return data.from_blob(load_torch(path), device)


def save_model(model, arch: str, kwargs: dict, path: str | Path) -> None:
    """A checkpoint that loads with torch.load(..., weights_only=True)."""
    torch_save(models.to_checkpoint(model, arch, kwargs), path)


def load_checkpoint(path: str | Path) -> dict:
    """A saved model's checkpoint dictionary (arch, kwargs, state_dict)."""
    return load_torch(path)


def load_model(path: str | Path, device: torch.device | str = "cpu"):
    """A saved model (model.pt), in eval mode on `device`."""
    return models.from_checkpoint(load_checkpoint(path)).to(device)


@contextlib.contextmanager
def job(log: str | Path | None, threads: int | None = None):
    """A workflow job: output to its log file, torch's thread count fixed."""
    with log_to(log):
        set_threads(threads)
        yield
