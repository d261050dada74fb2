"""Explain stage: attribution maps and their metrics ("where"); activation maximization ("what")."""
from __future__ import annotations

import pandas as pd
import torch

from reglens import actmax, attribution, data as datasets, models
from reglens.device import resolve_device
from reglens.io import torch_save, write_csv
from reglens.stages.common import load_checkpoint, load_dataset, load_model


def run_explain(model_path, dataset_path, out: dict, cfg: dict, device: str = "auto") -> None:
    """Maps of the fixed figure images; per method the complexity (Gini, entropy); Integrated Gradients'
    completeness; the model-randomization checks (cascading and independent, over seeds); pairwise
    agreement. `out` maps maps, metrics, mprt, agreement to paths (`cfg`: its validated config section, every default filled by reglens.config.validate)."""
    opts = cfg["options"]
    seed = opts.get("seed", attribution.DEFAULTS["seed"])
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    prepared = attribution.prepare(model)
    size = cfg["batch_size"]

    def maps_of(x, y, method):  # each batch its own seed, so batches do not share their noise
        return torch.cat([attribution.attribute(prepared, x[i:i + size], y[i:i + size], method, prepared=True,
                                                **{**opts, "seed": seed + i}) for i in range(0, len(y), size)])

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
    if "integrated_gradients" in cfg["methods"]:
        o = {**attribution.DEFAULTS, **opts}
        errors, steps = [], []
        for i in range(0, len(ym), size):
            _, error, used = attribution.integrated_gradients(prepared, xm[i:i + size], ym[i:i + size], o["ig_steps"],
                                                              o["ig_tolerance"], o["ig_max_steps"], o["internal_batch_size"])
            errors.append(error.cpu())
            steps.append(used.cpu())
        error, used = torch.cat(errors).double(), torch.cat(steps).double()
        rows += [{"method": "integrated_gradients", "metric": name, "value": value} for name, value in (
            ("completeness_median", float(error.median())), ("completeness_max", float(error.max())),
            ("completeness_above_tolerance", float((error > o["ig_tolerance"]).double().mean())),
            ("steps_mean", float(used.mean())), ("steps_max", float(used.max())))]
    write_csv(out["metrics"], pd.DataFrame(rows))
    agreement = []
    for i, a in enumerate(cfg["methods"]):
        for b in cfg["methods"][i + 1:]:
            mean, undefined = attribution.defined_mean(attribution.spearman(flat[a], flat[b]))
            agreement.append({"method_a": a, "method_b": b, "spearman": mean, "undefined": undefined, "images": len(ym)})
    write_csv(out["agreement"], pd.DataFrame(agreement, columns=["method_a", "method_b", "spearman", "undefined", "images"]))
    xr, yr = xm[:cfg["mprt_images"]], ym[:cfg["mprt_images"]]
    mprt = [row for m in cfg["mprt_methods"] for s in cfg["mprt_seeds"] for variant in ("cascading", "independent")
            for row in attribution.model_randomization(model, xr, yr, m, variant, seed=s, **opts)]
    write_csv(out["mprt"], pd.DataFrame(mprt, columns=["method", "variant", "randomization_seed", "depth", "layer", "spearman",
                                                       "undefined", "images"]))


def run_actmax(model_path, dataset_path, out: dict, cfg: dict, device: str = "auto") -> pd.DataFrame:
    """Maximize the chosen units of every named layer (`units`, else its first `units_per_layer`) and
    every class logit, each measured against its maximum over `reference_images` training images: actmax.pt (images) and actmax.csv (per objective:
    the dataset maximum, the value reached, their ratio, the image's saturated pixels) (`cfg`: its validated config section, every default filled by reglens.config.validate)."""
    dev = resolve_device(device)
    blob = load_checkpoint(model_path)
    model, kwargs = models.from_checkpoint(blob).to(dev), blob["kwargs"]
    data = load_dataset(dataset_path, dev)
    chosen = cfg.pop("units", actmax.ACTMAX_DEFAULTS["units"])  # left out of params at its default (config.ADDED_OPTIONS)
    objectives = actmax.default_objectives(model, kwargs["num_classes"], cfg.pop("units_per_layer"), chosen)
    gen = torch.Generator(device=dev).manual_seed(cfg["seed"])
    pick = torch.randperm(len(data.y_train), generator=gen, device=dev)[:cfg.pop("reference_images")]
    maxima, top = actmax.dataset_maxima(model, datasets.to_float(data.x_train[pick]), objectives)
    images = actmax.maximize(model, (kwargs["in_channels"], kwargs["input_size"], kwargs["input_size"]),
                             objectives, scale=maxima, starts=top, **cfg)
    with torch.no_grad():
        reached = actmax.objective_values(model, images, objectives, torch.arange(len(objectives), device=dev))
    rows = [{"layer": layer or "logit", "unit": index, "dataset_max": float(m), "reached": float(r),
             "ratio": float(r / m) if m > 0 else float("nan"), "saturation": actmax.saturation(images[k])}
            for k, ((layer, index), m, r) in enumerate(zip(objectives, maxima, reached))]
    table = pd.DataFrame(rows)
    torch_save({"images": images.cpu(), "layers": [layer or "logit" for layer, _ in objectives],
                "units": [index for _, index in objectives]}, out["images"])
    write_csv(out["table"], table)
    return table
