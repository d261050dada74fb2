"""Shortcut stage: plant a study's mark into its dataset once; score each cell's reliance on it and
how well each attribution method finds it."""
from __future__ import annotations

import pandas as pd
import torch

from reglens import attribution, data as datasets, shortcut
from reglens.device import resolve_device
from reglens.io import load_torch, torch_save, write_csv
from reglens.stages.common import load_model


def plant_dataset(base_path, out_path, settings: dict) -> None:
    """The study's shortcut dataset file from its base dataset file."""
    torch_save(shortcut.plant(load_torch(base_path), settings), out_path)


def _predict(model, x_uint8: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(datasets.to_float(x_uint8[i:i + batch])).argmax(1) for i in range(0, len(x_uint8), batch)])


def run_shortcut(model_path, dataset_path, out: dict, cfg: dict, options: dict | None = None,
                 device: str = "auto") -> pd.DataFrame:
    """scores.csv (metric, method, value, undefined, images): reliance on the test split (clean,
    flipped), and per method the mass inside the mark and the pointing game on the first `images`
    marked test images, attributing their labels; `maps.pt`: the maps of the first 6 of them (`cfg`: its validated config section, every default filled by reglens.config.validate)."""
    options = options or {}
    dev = resolve_device(device)
    blob = load_torch(dataset_path)
    if "x_test_flipped" not in blob:
        raise ValueError(f"{dataset_path} is not a shortcut dataset (no flipped test split); "
                         "the shortcut stage runs on studies with a `shortcut` setting")
    model = load_model(model_path, dev).eval()
    y = blob["y_test"].to(dev)
    batch = cfg["batch_size"]
    r = shortcut.reliance(_predict(model, blob["x_test"].to(dev), batch),
                          _predict(model, blob["x_test_flipped"].to(dev), batch), y, blob["mark_test_flipped"].to(dev))
    marked_pred = _predict(model, blob["x_test_marked"].to(dev), batch)
    n = min(cfg["images"], len(y))
    mask = blob["mask_test_marked"][:n].flatten(1).to(dev)
    rows = [{"metric": f"shortcut_{k}", "method": "", "value": v, "undefined": 0, "images": len(y)} for k, v in r.items()]
    rows += [{"metric": "shortcut_acc_marked", "method": "", "value": float((marked_pred == y).double().mean()),
              "undefined": 0, "images": len(y)},
             {"metric": "shortcut_area", "method": "", "value": float(mask.double().mean()), "undefined": 0, "images": n}]
    x, y_n = datasets.to_float(blob["x_test_marked"][:n].to(dev)), y[:n]
    prepared = attribution.prepare(model)
    seed = options.get("seed", attribution.DEFAULTS["seed"])
    figure = {}
    for method in cfg["methods"]:
        maps = torch.cat([attribution.saliency_map(attribution.attribute(
            prepared, x[i:i + batch], y_n[i:i + batch], method, prepared=True, **{**options, "seed": seed + i}))
            for i in range(0, n, batch)])
        figure[method] = maps[:6].view(-1, *x.shape[-2:]).cpu()
        for name, values in (("mass", shortcut.mass_inside(maps, mask)), ("pointing", shortcut.pointing(maps, mask))):
            mean, undefined = attribution.defined_mean(values)
            rows.append({"metric": f"shortcut_{name}", "method": method, "value": mean, "undefined": undefined,
                         "images": n})
    torch_save({"methods": list(figure), "images": x[:6].cpu(), "labels": y[:6].cpu(),
                "predicted": marked_pred[:6].cpu(), "masks": blob["mask_test_marked"][:6],
                "maps": torch.stack(list(figure.values()))}, out["maps"])
    table = pd.DataFrame(rows, columns=["metric", "method", "value", "undefined", "images"])
    write_csv(out["scores"], table)
    return table
