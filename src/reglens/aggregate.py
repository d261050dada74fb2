"""Gather per-cell outputs into tidy long tables: one row per cell x stage x metric."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

KEYS = ["study", "dataset", "arch", "reg", "seed"]
TRAIN_METRICS = ["train_acc", "train_loss", "test_acc", "test_loss", "train_seconds", "images_per_s"]

# stage -> (file under the cell folder, reader returning {metric: value})
STAGES = {
    "train": ("metrics.json", lambda path: {k: json.loads(path.read_text())[k] for k in TRAIN_METRICS}),
}


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
