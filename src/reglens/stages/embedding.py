"""Embedding stage: the t-SNE map of one cell's penultimate representation and its scores."""
from __future__ import annotations

import pandas as pd

from reglens import data as datasets, embedding
from reglens.device import resolve_device
from reglens.io import write_csv, write_json
from reglens.stages.common import load_dataset, load_model


def run_embedding(model_path, dataset_path, out: dict, cfg: dict, device: str = "auto") -> dict:
    """t-SNE of the penultimate representation of `images` test images (the same for every cell of a
    dataset): `out["map"]` (x, y, label per image) and `out["scores"]` (trustworthiness, kNN accuracy
    in the map and in the representation, the final KL divergence). `cfg`: the validated section."""
    dev = resolve_device(device)
    data = load_dataset(dataset_path, dev)
    model = load_model(model_path, dev)
    x, y = datasets.test_subset(data, cfg["images"], seed=2)  # the PCA's images (diagnose) come first
    rows, scores = embedding.embed(model, x, y, cfg)
    write_csv(out["map"], pd.DataFrame(rows, columns=["x", "y", "label"]))
    write_json(out["scores"], scores)
    return scores
