"""Neurons stage: attribution maps of a cell's chosen internal units to the input pixels."""
from __future__ import annotations

import pandas as pd
import torch

from reglens import actmax, data as datasets, neurons
from reglens.device import resolve_device
from reglens.io import torch_save, write_csv
from reglens.stages.common import load_dataset, load_model


def run_neurons(model_path, dataset_path, out: dict, cfg: dict, units: dict, device: str = "auto") -> pd.DataFrame:
    """Maps of each method for each unit activation maximization draws (`units`: actmax's `units` and
    `units_per_layer`) on explain's figure images: `out["maps"]` (images, layers, units, methods and maps
    (methods, units, images, H, W)) and `out["table"]` (per method, unit and image: the unit's
    activation and the completeness error of Integrated Gradients)."""
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    chosen = actmax.default_objectives(model, 0, units["units_per_layer"], units.get("units", actmax.ACTMAX_DEFAULTS["units"]))
    x, _ = datasets.test_subset(data, cfg["images"], seed=3)  # explain's figure images
    with torch.no_grad():
        activations = actmax.objective_values(model, x, chosen).cpu()  # (images, units), one forward pass
    maps, rows = [], []
    for method in cfg["methods"]:
        per_unit = []
        for k, (layer, unit) in enumerate(chosen):
            found, error = neurons.neuron_map(model, x, layer, unit, method, cfg["ig_steps"])
            per_unit.append(found.cpu())
            rows += [{"method": method, "layer": layer, "unit": unit, "image": i, "activation": float(a),
                      "completeness_error": float(e)} for i, (a, e) in enumerate(zip(activations[:, k], error))]
        maps.append(torch.stack(per_unit))
    torch_save({"images": x.cpu(), "layers": [layer for layer, _ in chosen], "units": [u for _, u in chosen],
                "methods": list(cfg["methods"]), "maps": torch.stack(maps)}, out["maps"])
    table = pd.DataFrame(rows, columns=["method", "layer", "unit", "image", "activation", "completeness_error"])
    write_csv(out["table"], table)
    return table
