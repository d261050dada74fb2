"""Network Dissection throughput on a Broden-format dataset (synthetic unless --broden is given).

    python benchmarks/dissect_throughput.py [--device cuda] [--arch resnet18] [--images 400]
        [--broden /path/to/broden1_224] [--reference-images 24] [--reference-units 16]

Prints (1) end-to-end images/s of reglens.dissect.dissect (both passes, loading included), and
(2) the concept tally alone in units x concepts per second, batched on the device against the
straightforward per-unit NumPy implementation of the same definition on the same features and masks
(reglens.dissect.reference_iou_numpy), with the ratio and the largest IoU difference.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from reglens import dissect, models
from reglens.data.broden import Broden, BrodenImages
from reglens.data.synthetic_broden import write_broden
from reglens.device import resolve_device


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=400, help="synthetic Broden size")
    parser.add_argument("--seg-size", type=int, default=56)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--broden", default=None, help="a real Broden folder instead of the synthetic one")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--reference-images", type=int, default=24)
    parser.add_argument("--reference-units", type=int, default=16)
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = models.build(args.arch, 3, 32, 10, width=args.width).to(device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.broden
        if root is None:
            root = f"{tmp}/broden"
            write_broden(root, n_images=args.images, seg_size=args.seg_size, scale=2)
        broden = Broden(root)
        cfg = {"input_size": args.input_size, "batch_size": args.batch_size, "workers": args.workers}
        dissect.dissect(model, _head(broden, min(64, len(broden))), cfg, device)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        result = dissect.dissect(model, broden, cfg, device)
        sync(device)
        seconds = time.perf_counter() - t0
        units = sum(len(t) for t in result["thresholds"].values())
        print(f"device={device} arch={args.arch} width={args.width} images={len(broden)} "
              f"input={args.input_size} masks={broden.seg_shape} units={units} labels={broden.num_labels - 1} "
              f"torch={torch.__version__}")
        print(f"end to end (two passes, loading included): {len(broden) / seconds:.1f} images/s")

        # the tally alone: the deepest layer's first units, on the first images
        layer = model.layer_names[-1]
        n, k = min(args.reference_images, len(broden)), args.reference_units
        dataset = BrodenImages(broden, args.input_size, 3)
        _, images, stacked = dataset.collate([dataset[i] for i in range(n)])
        x, stacked = images.to(device).float() / 255, stacked.long()
        with torch.no_grad():
            features = dissect.layer_features(model, x, [layer])[layer][:, :k].float()
        label_category = broden.label_category_matrix()
        concepts = int((label_category.sum(1) > 0).sum())

        def batched():
            q = dissect.StreamingQuantile(k, features[:, 0].numel(), 0.005, device)
            q.update(features.transpose(0, 1).flatten(1))
            tally = dissect.ConceptTally(k, torch.from_numpy(label_category), "lite", device)
            planes_dev, thr = stacked.to(device).flatten(2), q.thresholds()
            for s in range(0, n, args.batch_size):
                masks = dissect.unit_masks(features[s:s + args.batch_size], thr, broden.seg_shape)
                tally.update(masks, dissect.label_onehot(planes_dev[s:s + args.batch_size]))
            return tally.iou()

        batched()
        sync(device)
        t0 = time.perf_counter()
        ours = batched()
        sync(device)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, ref = dissect.reference_iou_numpy(features.cpu().numpy(), stacked.numpy(), label_category, 0.005,
                                             broden.seg_shape, "lite")
        t_ref = time.perf_counter() - t0
        work = k * concepts
        print(f"tally of {n} images, {k} units x {concepts} concepts (layer {layer}):")
        print(f"{'implementation':<24}{'units x concepts/s':>20}{'images/s':>12}")
        print(f"{'reglens (batched)':<24}{work / t_ours:>20.0f}{n / t_ours:>12.1f}")
        print(f"{'per-unit NumPy':<24}{work / t_ref:>20.0f}{n / t_ref:>12.1f}")
        print(f"ratio reglens/NumPy: {t_ref / t_ours:.1f}   max |IoU difference|: "
              f"{np.abs(ours.cpu().numpy() - ref).max():.2e}")


def _head(broden: Broden, n: int) -> Broden:
    import copy

    head = copy.copy(broden)
    head.images = broden.images[:n]
    return head


if __name__ == "__main__":
    main()
