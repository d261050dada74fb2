"""Explain stage: attribution maps and their metrics ("where"); activation maximization ("what")."""
from __future__ import annotations

import pandas as pd
import torch

from reglens import actmax, attribution, data as datasets, models
from reglens.device import resolve_device
from reglens.io import torch_save, write_csv
from reglens.stages.common import load_checkpoint, load_dataset, load_model


def run_explain(model_path, dataset_path, out: dict, cfg: dict | None = None, device: str = "auto") -> None:
    """Maps of the fixed figure images, per-method complexity (Gini, entropy), the cascading
    randomization check and pairwise agreement. `out` maps maps, metrics, mprt, agreement to paths."""
    cfg = {**attribution.EXPLAIN_DEFAULTS, **(cfg or {})}
    opts = cfg["options"]
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    prepared = attribution.prepare(model)

    def maps_of(x, y, method):
        return torch.cat([attribution.attribute(prepared, x[i:i + cfg["batch_size"]], y[i:i + cfg["batch_size"]],
                                                method, prepared=True, **opts)
                          for i in range(0, len(y), cfg["batch_size"])])

    xf, yf = datasets.test_subset(data, cfg["figure_images"], seed=3)
    with torch.no_grad():
        predicted = model(xf).argmax(1)
    torch_save({"methods": cfg["methods"], "images": xf.cpu(), "labels": yf.cpu(), "predicted": predicted.cpu(),
                "maps": torch.stack([attribution.saliency_map(maps_of(xf, yf, m)).view(len(yf), *xf.shape[-2:]).cpu()
                                     for m in cfg["methods"]])}, out["maps"])

    xm, ym = datasets.test_subset(data, cfg["metric_images"], seed=4)
    flat = {m: attribution.saliency_map(maps_of(xm, ym, m)) for m in cfg["methods"]}
    rows = []
    for method, maps in flat.items():
        rows += [{"method": method, "metric": "gini", "value": float(attribution.gini(maps).mean())},
                 {"method": method, "metric": "entropy", "value": float(attribution.entropy(maps).mean())}]
    write_csv(out["metrics"], pd.DataFrame(rows))
    agreement = [{"method_a": a, "method_b": b, "spearman": float(attribution.spearman(flat[a], flat[b]).mean())}
                 for i, a in enumerate(cfg["methods"]) for b in cfg["methods"][i + 1:]]
    write_csv(out["agreement"], pd.DataFrame(agreement, columns=["method_a", "method_b", "spearman"]))
    xr, yr = xm[:cfg["mprt_images"]], ym[:cfg["mprt_images"]]
    mprt = [row for m in cfg["mprt_methods"] for row in attribution.cascading_randomization(model, xr, yr, m, **opts)]
    write_csv(out["mprt"], pd.DataFrame(mprt, columns=["method", "depth", "layer", "spearman"]))


def run_actmax(model_path, out_path, cfg: dict | None = None, device: str = "auto") -> None:
    """Maximize the first units of every named layer and every class logit; save images and labels."""
    cfg = {**actmax.ACTMAX_DEFAULTS, **(cfg or {})}
    dev = resolve_device(device)
    blob = load_checkpoint(model_path)
    model, kwargs = models.from_checkpoint(blob).to(dev), blob["kwargs"]
    objectives = actmax.default_objectives(model, kwargs["num_classes"], cfg.pop("units_per_layer"))
    images = actmax.maximize(model, (kwargs["in_channels"], kwargs["input_size"], kwargs["input_size"]),
                             objectives, **cfg)
    torch_save({"images": images.cpu(), "layers": [layer or "logit" for layer, _ in objectives],
                "units": [index for _, index in objectives]}, out_path)
