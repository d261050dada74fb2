"""ROAR / KAR stage: rank -> ablate -> retrain -> score, for the configured base cells."""
from __future__ import annotations

import pandas as pd

from reglens import regularizers, roar
from reglens.device import resolve_device
from reglens.io import load_torch, provenance, read_json, torch_save, write_csv, write_json
from reglens.stages.common import load_dataset, load_model


def run_rank(model_path, dataset_path, out_path, method: str, cfg: dict, device: str = "auto") -> None:
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    opts = {"batch_size": cfg["batch_size"], **cfg["options"]}
    torch_save({"method": method,
                "train": roar.compute_ranks(model, data.x_train, data.y_train, method, **opts),
                "test": roar.compute_ranks(model, data.x_test, data.y_test, method, **{**opts, "seed": 10 ** 6})},
               out_path)


def run_ablate(dataset_path, ranks_path, out_path, fraction: float, mode: str) -> None:
    blob, ranks = load_torch(dataset_path), load_torch(ranks_path)
    torch_save(roar.ablated_dataset(blob, ranks, fraction, mode), out_path)


def run_retrain(ablated_path, out_json, learner: dict, device: str = "auto") -> list[dict]:
    """Train the fixed learner (arch, reg name and specs, train and model settings, seeds) from
    scratch on an ablated dataset; `learner["meta"]` says which method, mode and fraction."""
    arch, train_cfg, model_cfg, seeds, meta = (learner[k] for k in ("arch", "train", "model", "seeds", "meta"))
    regs = regularizers.from_specs(learner["reg"], learner["regularizer"])
    dev = resolve_device(device)
    rows = roar.retrain(load_dataset(ablated_path, dev), arch, regs, train_cfg, model_cfg, seeds, dev)
    write_json(out_json, {**meta, "learner": {"arch": arch, "regularizer": regs.describe()}, "runs": rows,
                          "provenance": provenance(dev)})
    return rows


def run_score(retrain_jsons, curves_csv, scores_csv) -> pd.DataFrame:
    rows = []
    for path in retrain_jsons:
        record = read_json(path)
        for run in record["runs"]:
            rows.append({"method": record["method"], "mode": record["mode"], "fraction": record["fraction"], **run})
    curves = pd.DataFrame(rows).sort_values(["mode", "method", "fraction", "retrain_seed"])
    write_csv(curves_csv, curves)
    result = roar.scores(curves)
    write_csv(scores_csv, result)
    return result
