"""How much dissection changes when a layer's map is larger than its mask and is antialiased (PIL's
bilinear resize, as NetDissect-Lite) instead of point-sampled bilinearly (F.interpolate without
antialiasing).

    python benchmarks/dissect_downsample.py [--arch simplecnn] [--input-size 112] [--images 300]
        [--seg-size 32] [--seed 0]

Dissects one seeded, untrained model on a synthetic Broden under both `dissect.downsample` settings
(the same thresholds: they come from the maps themselves) and prints per layer: map and mask size,
the largest IoU difference over units x labels, how many units change best label, and the detectors
under each setting.
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from reglens import dissect, models
from reglens.data.broden import Broden
from reglens.data.synthetic_broden import write_broden


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="simplecnn")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seg-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = models.build(args.arch, 3, 32, 10, width=args.width).eval()
    with tempfile.TemporaryDirectory() as tmp:
        write_broden(f"{tmp}/broden", n_images=args.images, seg_size=args.seg_size, seed=args.seed)
        broden = Broden(f"{tmp}/broden")
        results = {mode: dissect.dissect(model, broden, {"input_size": args.input_size, "workers": 0,
                                                        "downsample": mode})
                   for mode in dissect.DOWNSAMPLE}
    tables = {mode: dissect.unit_table(result) for mode, result in results.items()}
    print(f"{args.arch} (width {args.width}, untrained, seed {args.seed}) on a synthetic Broden of {args.images} "
          f"images, input {args.input_size}, masks {args.seg_size}x{args.seg_size}")
    print("layer           map      max |dIoU|  best label changed  detectors antialias / sample")
    for layer in results["antialias"]["layers"]:
        iou = {mode: r["iou"][layer] for mode, r in results.items()}
        units = {mode: t[t.layer == layer].reset_index(drop=True) for mode, t in tables.items()}
        changed = int((units["antialias"].concept != units["sample"].concept).sum())
        shape = "x".join(str(s) for s in model_map_shape(model, layer, args.input_size))
        print(f"{layer:15s} {shape:8s} {float((iou['antialias'] - iou['sample']).abs().max()):10.4f}  "
              f"{changed:3d} of {len(units['antialias']):3d}          "
              f"{int(units['antialias'].detector.sum()):3d} / {int(units['sample'].detector.sum()):3d}")


def model_map_shape(model, layer: str, size: int) -> tuple[int, int]:
    with torch.no_grad():
        return tuple(dissect.layer_features(model, torch.zeros(1, 3, size, size), [layer])[layer].shape[-2:])


if __name__ == "__main__":
    main()
