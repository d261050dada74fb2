"""What the filled images of ROAR reveal on scikit-learn's digits, with and without the value-grid dither.

    python benchmarks/roar_leakage.py [--fraction 0.5] [--methods random saliency integrated_gradients]
        [--fill noisy_linear] [--epochs 30]

Trains the demo's base cell (SimpleCNN at width 0.5, SGD 0.05, 15 epochs, seed 0), ranks every image's
pixels by each method, removes the top fraction (ROAR) and fills it, then prints per method and
dither setting: the share of removed pixels whose value is off the data's value grid (the off-grid
rule's recall; its precision is 1 since kept pixels are on the grid), the detector's pixel accuracy
(reglens.leakage.detect_removed) against the majority rate, and the class accuracy of the demo's
ROAR learner (SimpleCNN, Adam 5e-3, `--epochs`) on the mask alone and on the masks the detector
recovered (chance is 0.1); and which removed pixels the detector finds: the share of those filled
with black (0) and of those filled with a grey level.
"""
from __future__ import annotations

import argparse
import time

import torch

from reglens import data as datasets, leakage, regularizers, roar
from reglens.train import train

BASE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "cosine", "epochs": 15, "batch_size": 64,
        "augment": {"crop_padding": 0, "hflip": False}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--methods", nargs="+", default=["random", "saliency", "integrated_gradients"])
    parser.add_argument("--fill", default="noisy_linear", choices=roar.FILLS)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    data = datasets.from_blob(datasets.convert("digits", {}))
    none = regularizers.build("none", {"none": []})
    model = train(data, "simplecnn", none, BASE, {"width": 0.5}, seed=0, device="cpu").model
    learner = {"optimizer": "adam", "lr": 0.005, "batch_size": 64, "epochs": args.epochs,
               "augment": {"crop_padding": 0, "hflip": False}}
    grid = leakage.value_grid(data.x_train)
    print(f"digits, {args.fill} fill, {args.fraction:g} removed (ROAR); value grid: {len(grid)} levels")
    print("method                 dither  off-grid recall  detector (majority)  learner: mask alone / masks found"
          "  found: black fill / grey fill")
    for method in args.methods:
        ranks = {s: roar.compute_ranks(model, getattr(data, f"x_{s}"), getattr(data, f"y_{s}"), method)
                 for s in ("train", "test")}
        removed = {s: roar.removal_mask(ranks[s], args.fraction, "roar", (data.size, data.size)) for s in ranks}
        alone = roar.retrain(roar.leakage_data(data, ranks, args.fraction), "simplecnn", none, learner,
                             {"width": 0.5}, [0], "cpu")[0]["test_acc"]
        for dither in (False, True):
            ablated, _ = roar.ablated_data(data, ranks, args.fraction, "roar", args.fill, 0.01, 500, dither)
            off = ~torch.isin(ablated.x_test.double(), grid).squeeze(1)
            recall = float((off & removed["test"]).sum() / removed["test"].sum())
            found = leakage.detect_removed(ablated.x_train, removed["train"], ablated.x_test, removed["test"],
                                           data.mean, data.std, seed=500)
            masks = leakage.mask_data(data, found["recovered_train"], found["recovered_test"], "found")
            recovered = roar.retrain(masks, "simplecnn", none, learner, {"width": 0.5}, [0], "cpu")[0]["test_acc"]
            black = ablated.x_test[:, 0] == 0
            hits = [float(found["recovered_test"][removed["test"] & side].float().mean()) for side in (black, ~black)]
            print(f"{method:22s} {str(dither):6s}  {recall:15.3f}  {found['detector_acc']:.3f} ({found['detector_base']:.3f})"
                  f"        {alone:.3f} / {recovered:.3f}                   {hits[0]:.3f} / {hits[1]:.3f}")
    print(f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
