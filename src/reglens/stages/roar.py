"""ROAR / KAR / ROAD stage: rank pixels -> retrain a fixed learner on the ablated data (every point of
one base cell and method in one job) -> score; ROAD scores each cell's own model without retraining."""
from __future__ import annotations

import pandas as pd
import torch

from reglens import data as datasets, leakage, regularizers, roar
from reglens.device import resolve_device
from reglens.io import load_torch, provenance, read_json, torch_save, write_csv, write_json
from reglens.stages.common import load_dataset, load_model


def run_rank(model_path, dataset_path, out_path, method: str, cfg: dict, device: str = "auto") -> None:
    """Every train and test image's pixels, ranked by `method`'s attribution of the true class."""
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    opts = {"batch_size": cfg["batch_size"], **cfg["options"]}
    torch_save({"method": method,
                "train": roar.compute_ranks(model, data.x_train, data.y_train, method, **opts),
                "test": roar.compute_ranks(model, data.x_test, data.y_test, method, **{**opts, "seed": 10 ** 6})},
               out_path)


def _learner(learner: dict):
    return learner["arch"], regularizers.from_specs(learner["reg"], learner["regularizer"])


def _points(data, ranks: dict, learner: dict, cfg: dict, device) -> dict:
    """Every ROAR / KAR point of one ranking (modes x fractions x retrain seeds) and the leakage
    controls: the learner on the removal mask alone at each fraction, and at each mode and fraction
    a detector of removed pixels in the filled images with the learner on the masks it recovers."""
    arch, regs = _learner(learner)
    runs, masks_alone, detected, imputation = [], [], [], []
    detector = cfg["detector"]

    def mask_learner(masks):
        varies = bool((masks.x_train != masks.x_train[:1]).any())
        return roar.retrain(masks, arch, regs, learner["train"], learner["model"], cfg["retrain_seeds"][:1], device,
                            fit_floor=cfg["fit_floor"], content=varies)[0]

    for mode in cfg["modes"]:
        for fraction in cfg["fractions"]:
            seed = int(1000 * fraction) + (mode == "kar")
            ablated, info = roar.ablated_data(data, ranks, fraction, mode, cfg["fill"], cfg["noise"], seed,
                                              cfg["dither"])
            imputation += [{"mode": mode, "fraction": fraction, "split": split, **v} for split, v in info.items()]
            rows = roar.retrain(ablated, arch, regs, learner["train"], learner["model"], cfg["retrain_seeds"], device,
                                clean=data, fit_floor=cfg["fit_floor"], content=info["train"]["content"])
            runs += [{"mode": mode, "fraction": fraction, **row} for row in rows]
            print(f"{mode} {fraction:g}: " + ", ".join(f"test {r['test_acc']:.3f} (train {r['train_acc']:.3f}, "
                                                       f"{r['status']})" for r in rows))
            if detector["enabled"]:
                removed = {split: roar.removal_mask(ranks[split].to(device), fraction, mode, (data.size, data.size))
                           for split in ("train", "test")}
                found = leakage.detect_removed(ablated.x_train, removed["train"], ablated.x_test, removed["test"],
                                               data.mean, data.std, detector, seed)
                row = {"mode": mode, "fraction": fraction,
                       **{k: v for k, v in found.items() if not k.startswith("recovered")}}
                if found["detector_status"] == "fitted":
                    fit = mask_learner(leakage.mask_data(data, found["recovered_train"], found["recovered_test"],
                                                         f"{mode}{fraction:g}-recovered"))
                    row.update({"recovered_leakage_acc": fit["test_acc"], "train_acc": fit["train_acc"],
                                "status": fit["status"], "fitted": fit["fitted"], "retrain_seed": fit["retrain_seed"]})
                else:   # the detector failed: nothing recovered to learn from, counted, never filled in
                    row.update({"recovered_leakage_acc": float("nan"), "train_acc": float("nan"),
                                "status": "detector_underfit", "fitted": False, "retrain_seed": cfg["retrain_seeds"][0]})
                detected.append(row)
                print(f"  detector {row['detector_acc']:.3f} (majority {row['detector_base']:.3f}), "
                      f"recovered masks -> {row['recovered_leakage_acc']:.3f}")
    if cfg["leakage"]:
        for fraction in cfg["fractions"]:
            row = mask_learner(roar.leakage_data(data, ranks, fraction))
            masks_alone.append({"fraction": fraction, "leakage_acc": row["test_acc"], "train_acc": row["train_acc"],
                                "status": row["status"], "fitted": row["fitted"], "retrain_seed": row["retrain_seed"]})
    return {"runs": runs, "leakage": masks_alone, "detector": detected, "imputation": imputation}


def run_baseline(dataset_path, out_json, learner: dict, cfg: dict, device: str = "auto") -> dict:
    """What every base cell of a study shares: the learner on the unablated data (the 0 % point of
    every curve) and on data with random pixels removed (the random baseline: it does not depend on
    the base model, so it is trained once per study and learner, not once per base cell)."""
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    arch, regs = _learner(learner)
    clean = roar.retrain(data, arch, regs, learner["train"], learner["model"], cfg["retrain_seeds"], dev,
                         clean=data, fit_floor=cfg["fit_floor"])
    ranks = {split: roar.compute_ranks(None, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), "random",
                                       cfg["batch_size"], **{**cfg["options"], **({"seed": 10 ** 6} if split == "test" else {})})
             for split in ("train", "test")}
    record = {"learner": {"arch": arch, "regularizer": regs.describe()}, "fill": cfg["fill"], "fit_floor": cfg["fit_floor"],
              "clean": clean, "random": _points(data, ranks, learner, cfg, dev), "provenance": provenance(dev)}
    write_json(out_json, record)
    return record


def run_retrain(dataset_path, ranks_path, out_json, learner: dict, cfg: dict, device: str = "auto") -> dict:
    """Every ROAR / KAR point of one base cell and method, and its leakage control."""
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    arch, regs = _learner(learner)
    record = {**learner["meta"], "learner": {"arch": arch, "regularizer": regs.describe()}, "fill": cfg["fill"],
              "fit_floor": cfg["fit_floor"], **_points(data, load_torch(ranks_path), learner, cfg, dev),
              "provenance": provenance(dev)}
    write_json(out_json, record)
    return record


DETECTOR_COLUMNS = ["method", "mode", "fraction", "detector_acc", "detector_base", "detector_balanced_acc",
                    "detector_status", "recovered_leakage_acc", "train_acc", "status", "fitted", "retrain_seed"]


def run_score(baseline_json, retrain_jsons, out: dict) -> pd.DataFrame:
    """curves.csv (every run; the clean point and the shared random baseline included), leakage.csv
    (the learner on the mask alone), detector.csv (removed pixels found in the filled images, and the
    learner on the masks found) and scores.csv of one base cell."""
    baseline = read_json(baseline_json)
    records = [{"method": "random", **baseline["random"]}] + [read_json(path) for path in retrain_jsons]
    rows, leaks, detected = [], [], []
    for record in records:
        method = record["method"]
        for mode in sorted({r["mode"] for r in record["runs"]}):
            rows += [{"method": method, "mode": mode, "fraction": 0.0, **run} for run in baseline["clean"]]
        rows += [{"method": method, **run} for run in record["runs"]]
        leaks += [{"method": method, **row} for row in record["leakage"]]
        detected += [{"method": method, **row} for row in record.get("detector", [])]
    curves = pd.DataFrame(rows).sort_values(["mode", "method", "fraction", "retrain_seed"])
    write_csv(out["curves"], curves)
    write_csv(out["leakage"], pd.DataFrame(leaks, columns=["method", "fraction", "leakage_acc", "train_acc", "status",
                                                         "fitted", "retrain_seed"]))
    write_csv(out["detector"], pd.DataFrame(detected, columns=DETECTOR_COLUMNS))
    result = roar.scores(curves)
    write_csv(out["scores"], result)
    return result


def run_road(model_path, dataset_path, out: dict, cfg: dict, device: str = "auto") -> pd.DataFrame:
    """ROAD for one cell: MoRF and LeRF accuracy of its own model on `images` test images with the
    ranked pixels imputed, for every method; score = area between the LeRF and MoRF curves."""
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    x, y = datasets.test_subset(data, cfg["images"], seed=5)
    x8 = (x * 255).round().to(torch.uint8)
    grid = leakage.value_grid(data.x_train) if cfg["dither"] else None
    rows, scores = [], []
    for method in cfg["methods"]:
        ranks = roar.compute_ranks(model, x8, y, method, cfg["batch_size"], **cfg["options"])
        curves = pd.DataFrame(roar.road_curves(model, x, y, ranks.to(dev), cfg["fractions"], cfg["noise"],
                                               seed=7, batch_size=cfg["batch_size"], grid=grid))
        rows.append(curves.assign(method=method))
        scores.append({"method": method, "score": roar.road_score(curves),
                       "morf_auc": roar.area_under(curves[curves.order == "morf"]),
                       "lerf_auc": roar.area_under(curves[curves.order == "lerf"]),
                       "converged": bool((curves.residual <= 1e-6).all())})
    curves = pd.concat(rows, ignore_index=True)[["method", "order", "fraction", "accuracy", "iterations", "residual"]]
    write_csv(out["curves"], curves)
    result = pd.DataFrame(scores)
    write_csv(out["scores"], result)
    return result
