"""Diagnose stage: decision boundaries, calibration, weights and representations of one cell."""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from reglens import data as datasets, robustness
from reglens.data import to_float
from reglens.device import resolve_device
from reglens.io import torch_save, write_csv, write_json
from reglens.stages.common import load_dataset, load_model


FEATURE_IMAGES, FEATURE_CHANNELS = 4, 8


def run_diagnostics(model_path, dataset_path, out: dict, cfg: dict | None = None, device: str = "auto") -> dict:
    """Decision-boundary maps and their TV, calibration, weight statistics, histograms and spectra,
    PCA, and the feature maps of the first and last named layers on the figure images.
    `out` maps boundary, boundary_maps, calibration, reliability, weights, weight_hist, spectrum, pca,
    features to paths."""
    cfg = robustness.merged_config(cfg)
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    b = cfg["boundary"]
    x, y = datasets.test_subset(data, b["images"], seed=1)
    rows, maps = robustness.boundary_planes(model, x, y, b["span"], b["resolution"])
    write_csv(out["boundary"], pd.DataFrame(rows))
    torch_save({"maps": torch.stack(maps), "planes": [r["plane"] for r in rows],
                "images": [r["image"] for r in rows], "span": b["span"]}, out["boundary_maps"])
    with torch.no_grad():
        probs = torch.cat([F.softmax(model(to_float(data.x_test[i:i + cfg["batch_size"]])), 1)
                           for i in range(0, len(data.y_test), cfg["batch_size"])])
    summary, table = robustness.calibration(probs, data.y_test, cfg["calibration_bins"])
    write_json(out["calibration"], summary)
    write_csv(out["reliability"], pd.DataFrame(table))
    stats, spectrum = robustness.weight_stats(model, cfg["near_zero"])
    write_csv(out["weights"], pd.DataFrame(stats))
    write_csv(out["spectrum"], pd.DataFrame(spectrum))
    write_csv(out["weight_hist"], pd.DataFrame(robustness.weight_histograms(model)))
    xf, _ = datasets.test_subset(data, FEATURE_IMAGES, seed=3)  # explain's figure images come first in this order
    layers = [model.layer_names[0], model.layer_names[-1]] if data.size > 1 else []  # 2-D points: no maps
    torch_save({"images": xf.cpu(), "maps": robustness.feature_maps(model, xf, dict.fromkeys(layers),
                                                                    FEATURE_CHANNELS)}, out["features"])
    xp, yp = datasets.test_subset(data, cfg["pca_images"], seed=2)
    write_csv(out["pca"], pd.DataFrame(robustness.penultimate_pca(model, xp, yp)))
    return {"calibration": summary, "boundary": rows}
