"""Attack stage: FGSM and PGD curves, the worst case over the attack set, PGD against iterations and
restarts, and the gradient-masking checks of one cell."""
from __future__ import annotations

import pandas as pd

from reglens import data as datasets, robustness, worstcase
from reglens.device import resolve_device
from reglens.io import write_csv
from reglens.stages.common import load_dataset, load_model


def run_attacks(model_path, dataset_path, out: dict, cfg: dict | None = None, device: str = "auto") -> dict:
    """Into out["attacks"], out["worst_case"], out["iterations"] and out["masking"] (last: the target),
    on the fixed test subset. Returns the masking checks (reglens.worstcase.masking_checks)."""
    cfg = robustness.merged_config(cfg)
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    x, y = datasets.test_subset(data, cfg["n_images"], seed=0)
    size = cfg["batch_size"]
    rows = robustness.attack_curves(model, x, y, cfg["fgsm_eps"], cfg["pgd_eps"], cfg["pgd_steps"], cfg["norm"],
                                    cfg["alpha_factor"], cfg["random_start"], size)
    write_csv(out["attacks"], pd.DataFrame(rows))
    worst = worstcase.worst_case_curves(model, x, y, cfg["worst_case"], size)
    write_csv(out["worst_case"], pd.DataFrame(worst))
    eps = robustness.middle_eps(cfg["pgd_eps"])
    iterations = worstcase.iteration_curves(model, x, y, eps, cfg["norm"], cfg["iterations"], size) if eps else []
    write_csv(out["iterations"], pd.DataFrame(iterations, columns=["curve", "norm", "eps", "alpha", "steps",
                                                                   "restarts", "accuracy", "n_images"]))
    masking_cfg = cfg["masking"]
    large = masking_cfg["large_eps"]
    large_acc = worstcase.large_eps_accuracy(model, x, y, large, cfg["worst_case"], size) if large else None
    checks = worstcase.masking_checks(rows, worst, iterations, large_acc, masking_cfg)
    write_csv(out["masking"], pd.DataFrame(checks, columns=["check", "passed", "value", "detail"]))
    return checks
