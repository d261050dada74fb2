"""Attack stage: FGSM and PGD robustness curves of one cell."""
from __future__ import annotations

import pandas as pd

from reglens import data as datasets, robustness
from reglens.device import resolve_device
from reglens.io import write_csv
from reglens.stages.common import load_dataset, load_model


def run_attacks(model_path, dataset_path, out: dict, cfg: dict | None = None, device: str = "auto") -> list[dict]:
    """FGSM and PGD accuracy and loss per budget on the fixed test subset, into `out["attacks"]`."""
    cfg = robustness.merged_config(cfg)
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    x, y = datasets.test_subset(data, cfg["n_images"], seed=0)
    rows = robustness.attack_curves(model, x, y, cfg["fgsm_eps"], cfg["pgd_eps"], cfg["pgd_steps"], cfg["norm"],
                                    cfg["alpha_factor"], cfg["random_start"], cfg["batch_size"])
    write_csv(out["attacks"], pd.DataFrame(rows))
    return rows
