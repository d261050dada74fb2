"""Concepts stage: Net2Vec concept embeddings on Broden, and lesions, for one dissected cell."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from reglens import concepts, data as datasets, dissect
from reglens.data.broden import BrodenImages
from reglens.device import resolve_device
from reglens.io import read_csv, write_csv, write_json
from reglens.stages.common import load_dataset, load_model


def broden_splits(broden, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """Image indices of the training and held-out parts: Broden's own train/val split when the index
    has both, else a seeded split by `val_fraction`; at most `images` in all (seeded choice)."""
    gen = np.random.default_rng(cfg["seed"])
    splits = np.array([e.split for e in broden.images])
    if {"train", "val"} <= set(splits):
        train, val = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "val")
        n_val = min(len(val), int(round(cfg["images"] * cfg["val_fraction"])))
        return (np.sort(gen.permutation(train)[:cfg["images"] - n_val]), np.sort(gen.permutation(val)[:n_val]))
    chosen = gen.permutation(len(broden))[:cfg["images"]]
    n_val = int(round(len(chosen) * cfg["val_fraction"]))
    return np.sort(chosen[n_val:]), np.sort(chosen[:n_val])


def _load(broden, indices, size: int, channels: int, mask_size) -> tuple[torch.Tensor, torch.Tensor]:
    _, images, planes = BrodenImages.collate([(int(i), broden.load_image(int(i), size, channels),
                                               broden.load_planes(int(i))) for i in indices])
    if mask_size and tuple(broden.seg_shape) != (mask_size, mask_size):
        planes = F.interpolate(planes.float(), size=(mask_size, mask_size), mode="nearest").int()
    return images, planes


def choose_concepts(broden, train_planes, val_planes, cfg: dict) -> list[int]:
    """Labels of the chosen categories with at least `min_pixels` in both parts, the most frequent first."""
    allowed = [broden.categories.index(c) for c in cfg["categories"] if c in broden.categories]
    counts = []
    for planes in (train_planes, val_planes):
        counts.append(torch.bincount(planes.flatten().long(), minlength=broden.num_labels)[:broden.num_labels])
    labels = [k for k in range(1, broden.num_labels) if broden.primary[k] in allowed
              and counts[0][k] >= cfg["min_pixels"] and counts[1][k] >= cfg["min_pixels"]]
    labels.sort(key=lambda k: -int(counts[0][k]))
    return labels[:cfg["max_concepts"]]


def run_net2vec(model_path, broden_root, units_path, out: dict, dissect_cfg: dict, cfg: dict, device: str = "auto",
                decoded=None) -> pd.DataFrame:
    """`out["table"]`: per named layer and concept, the embedding's and the best single unit's held-out
    IoU, units to reach `reach` of the embedding's IoU, the weights' entropy (`cfg`: its validated config section, every default filled by reglens.config.validate)."""
    dcfg = dissect.settings(dissect_cfg)
    dev = resolve_device(device)
    model = load_model(model_path, dev).eval()
    broden = dissect.open_broden(broden_root, dcfg, decoded)
    train_idx, val_idx = broden_splits(broden, cfg)
    channels = model.normalize.mean.shape[1]
    mask_size = cfg.get("mask_size")
    x_train, p_train = _load(broden, train_idx, dcfg["input_size"], channels, mask_size)
    x_val, p_val = _load(broden, val_idx, dcfg["input_size"], channels, mask_size)
    chosen = choose_concepts(broden, p_train, p_val, cfg)
    columns = ["layer", "concept", "category", "train_pixels", "embedding_iou", "best_unit_iou", "best_unit",
               "everywhere_iou", "units_to_reach", "entropy", "units", "beats_best_unit"]
    if not chosen:
        table = pd.DataFrame(columns=columns)
        write_csv(out["table"], table)
        return table
    label = torch.tensor(chosen)
    m_train, m_val = concepts.concept_masks(p_train, label).to(dev), concepts.concept_masks(p_val, label).to(dev)
    units = read_csv(units_path)
    layers = list(dcfg["layers"] or model.layer_names)
    rows = []

    def features(x, layer):
        with torch.no_grad():
            return torch.cat([dissect.layer_features(model, x[i:i + 64].to(dev).float() / 255, [layer])[layer]
                              for i in range(0, len(x), 64)])

    for layer in layers:
        thresholds = torch.tensor(units[units.layer == layer].sort_values("unit").threshold.to_numpy(),
                                  dtype=torch.float32, device=dev)
        result = concepts.net2vec_layer(features(x_train, layer), m_train, features(x_val, layer), m_val, thresholds, cfg)
        for c, k in enumerate(chosen):
            emb, best = float(result["embedding_iou"][c]), float(result["best_unit_iou"][c])
            everywhere = float(result["everywhere_iou"][c])
            rows.append({"layer": layer, "concept": broden.names[k], "category": broden.categories[broden.primary[k]],
                         "train_pixels": int(m_train[:, c].sum()), "embedding_iou": emb, "best_unit_iou": best,
                         "best_unit": int(result["best_unit"][c]), "everywhere_iou": everywhere,
                         "units_to_reach": float(result["units_to_reach"][c]),
                         "entropy": float(result["entropy"][c]), "units": int(len(thresholds)),
                         # beats both the best unit and marking every pixel by the margin
                         "beats_best_unit": bool(emb > max(best, everywhere) + cfg["margin"])})
    table = pd.DataFrame(rows, columns=columns)
    write_csv(out["table"], table)
    return table


def run_lesion(model_path, dataset_path, out: dict, cfg: dict, device: str = "auto") -> dict:
    """`out["curves"]` (per class, k and kind: the class's test accuracy) and `out["summary"]` (`cfg`: its validated config section, every default filled by reglens.config.validate)."""
    dev = resolve_device(device)
    model = load_model(model_path, dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    data = load_dataset(dataset_path, dev)
    layer = cfg["layer"] or model.layer_names[-1]
    gen = torch.Generator().manual_seed(cfg["seed"])
    pick = torch.randperm(len(data.y_train), generator=gen)[:cfg["train_images"]].to(dev)
    importance = concepts.unit_importance(model, layer, datasets.to_float(data.x_train[pick]), data.y_train[pick],
                                          data.num_classes)
    curves = concepts.lesion_curves(model, layer, importance, datasets.to_float(data.x_test), data.y_test,
                                    cfg["ks"], cfg["draws"], cfg["seed"])
    summary = {"layer": layer, "units": int(importance.shape[1]), **concepts.lesion_summary(curves)}
    write_csv(out["curves"], pd.DataFrame(curves))
    write_json(out["summary"], summary)
    return summary
