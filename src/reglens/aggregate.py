"""Gather per-cell outputs into tidy long tables: one row per cell x stage x metric."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

KEYS = ["study", "dataset", "arch", "reg", "seed"]
TRAIN_METRICS = ["train_acc", "train_loss", "test_acc", "test_loss", "train_seconds", "images_per_s"]

def _train(path: Path) -> dict:
    metrics = json.loads(path.read_text())
    return {k: metrics[k] for k in TRAIN_METRICS}


def _attacks(path: Path) -> dict:
    out = {}
    for row in pd.read_csv(path).itertuples():
        name = "fgsm" if row.attack == "fgsm" else f"pgd{row.steps}"
        out[f"{name}_{row.norm}_acc@{row.eps:.4g}"] = row.accuracy
        out[f"{name}_{row.norm}_loss@{row.eps:.4g}"] = row.mean_loss
    return out


def _calibration(path: Path) -> dict:
    summary = json.loads(path.read_text())
    return {k: summary[k] for k in ("ece", "nll", "brier")}


def _boundary(path: Path) -> dict:
    table = pd.read_csv(path)
    out = {}
    for plane, group in table.groupby("plane"):
        for col in ("tv_isotropic_per_pixel", "tv_anisotropic_per_pixel"):
            out[f"{col.removesuffix('_per_pixel')}_{plane}"] = group[col].mean()
    return out


def _weights(path: Path) -> dict:
    table = pd.read_csv(path)
    return {"weights_l2_total": float((table.l2 ** 2).sum() ** 0.5), "weights_l1_total": float(table.l1.sum()),
            "weights_frac_near_zero": float((table.frac_near_zero * table.params).sum() / table.params.sum()),
            "weights_sigma_max_mean": float(table.sigma_max.mean())}


# stage -> (file under the cell folder, reader returning {metric: value})
STAGES = {
    "train": ("metrics.json", _train),
    "attack": ("robustness/attacks.csv", _attacks),
    "calibration": ("robustness/calibration.json", _calibration),
    "boundary": ("robustness/boundary.csv", _boundary),
    "weights": ("robustness/weights.csv", _weights),
}


def stage_files(cell_dir: str) -> list[str]:
    return [f"{cell_dir}/{filename}" for filename, _ in STAGES.values()]


def collect(results_root: str | Path, cells: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (tidy table, missing table). A cell's stage whose file is absent is listed as missing."""
    rows, missing = [], []
    root = Path(results_root)
    for cell in cells:
        folder = root / cell["study"] / cell["arch"] / cell["reg"] / f"seed{cell['seed']}"
        for stage, (filename, reader) in STAGES.items():
            path = folder / filename
            if not path.exists():
                missing.append({**{k: cell[k] for k in KEYS}, "stage": stage, "file": str(path)})
                continue
            for metric, value in reader(path).items():
                rows.append({**{k: cell[k] for k in KEYS}, "stage": stage, "metric": metric,
                             "value": float(value)})
    tidy = pd.DataFrame(rows, columns=KEYS + ["stage", "metric", "value"])
    return tidy, pd.DataFrame(missing, columns=KEYS + ["stage", "file"])
