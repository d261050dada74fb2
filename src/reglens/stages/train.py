"""Train stage: one cell -> model.pt, history.csv and metrics.json (metrics last), with an epoch
checkpoint (train_state.pt) beside them that a preempted job resumes from."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from reglens.device import resolve_device
from reglens.io import DamagedFile, load_torch, provenance, sidecar, torch_save, write_csv, write_json
from reglens import regularizers, robustness
from reglens.stages.common import load_dataset, save_model
from reglens.train import merged_train_config, train


class FileCheckpoint:
    """The training loop's epoch checkpoint, kept in one file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict | None:
        """The last epoch's state; an unreadable file is reported, set aside and training starts over."""
        if not self.path.exists():
            return None
        try:
            return load_torch(self.path)
        except DamagedFile as exc:
            warnings.warn(f"ignoring the epoch checkpoint: {exc.args[0].split(' It is')[0]} Training starts "
                          "from epoch 1 and the file is replaced.", stacklevel=2)
            self.remove()
            return None

    def save(self, state: dict) -> None:
        torch_save(state, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        sidecar(self.path).unlink(missing_ok=True)            # its integrity record goes with it


REGION_RESOLUTION = 96  # grid points per side of the toy study's decision-region maps


def run_cell(dataset_path: str | Path, out: dict, cell: dict, regularizer: list[dict],
             train_cfg: dict | None, model_cfg: dict | None, device: str = "auto") -> dict:
    """Train one cell (study, arch, reg, seed) with its resolved regularizer specs and write `out`'s
    model, history and metrics (atomically, metrics last; the epoch checkpoint lies beside them). On
    2-D points (the toy study) also `out["regions"]`: the predicted class over the plane after every
    epoch (robustness.decision_grid)."""
    arch, seed = cell["arch"], cell["seed"]
    regs = regularizers.from_specs(cell["reg"], regularizer)
    out = {key: Path(path) for key, path in out.items()}
    out["metrics"].parent.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    t0 = time.time()
    checkpoint = FileCheckpoint(out["metrics"].with_name("train_state.pt"))
    data = load_dataset(dataset_path, dev)
    points = data.half_width is not None
    record = (lambda model: robustness.decision_grid(model, REGION_RESOLUTION)) if points else None
    result = train(data, arch, regs, train_cfg, model_cfg, seed, dev, checkpoint=checkpoint, record=record)
    save_model(result.model, arch, result.model_kwargs, out["model"])
    if points:
        torch_save({"grids": torch.stack(result.records), "epochs": [r["epoch"] for r in result.history],
                    "half_width": data.half_width, "x_train": data.x_train.cpu(), "y_train": data.y_train.cpu(),
                    "classes": data.classes}, out["regions"])
    write_csv(out["history"], pd.DataFrame(result.history))
    metrics = {**result.metrics, "wall_seconds": time.time() - t0, "started_at": t0, "finished_at": time.time(),
               "cell": cell, "regularizer": regs.describe(),
               "train_config": merged_train_config(train_cfg), "model_config": model_cfg or {},
               "provenance": provenance(dev, seed)}
    write_json(out["metrics"], metrics)
    checkpoint.remove()
    return metrics
