"""Meta-consistency stage: MetaQuantus's resilience and reactivity criteria of each per-image
explainability measure, on one cell's own model (reglens.meta_consistency)."""
from __future__ import annotations

import pandas as pd

from reglens import data as datasets, meta_consistency
from reglens.device import resolve_device
from reglens.io import write_csv
from reglens.stages.common import load_dataset, load_model


def run_meta_consistency(model_path, dataset_path, out: dict, cfg: dict, device: str = "auto") -> pd.DataFrame:
    """`out["criteria"]`: one row per measure and perturbation type (model, input) with IAC/IEC under
    resilience and adversary, MC and the share of images each test kept."""
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    x, _ = datasets.test_subset(data, cfg["images"], seed=5)
    rows = meta_consistency.meta_consistency(model, x, cfg, meta_consistency.LOWER_IS_BETTER, seed=11)
    table = pd.DataFrame(rows)
    write_csv(out["criteria"], table)
    return table
