"""Network Dissection throughput on a Broden-format dataset (synthetic unless --broden is given).

    python benchmarks/dissect_throughput.py [--device cuda] [--arch resnet18] [--images 400]
        [--broden /path/to/broden1_224] [--threads 1] [--lite-units 128]

Prints (1) end-to-end images/s of reglens.dissect.dissect (both passes, loading included) on a
synthetic Broden; (2) the tally alone at Broden's scale (112-pixel masks, 1,199 labels, ~450 present
per batch; a 512-unit 7x7 layer and a 64-unit 56x56 one) in units x images per second, for reglens (each
tally engine the device has: numba and torch on the CPU) and for a per-unit port of NetDissect-Lite's
loop (tests/references/dissect_lite.py), their ratio (also counting the batch's label data, which reglens makes
once for all layers), the peak memory of one batch's tally,
and the largest IoU difference (each the best of several runs); (3) the time to dissect ResNet-18's named layers on
all 63,305 Broden images, estimated from one batch per layer.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reglens import dissect, models
from reglens.dissect import cpu as dissect_cpu
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
    parser.add_argument("--lite-units", type=int, default=128, help="units of the 512-unit layer run through "
                        "the (slow) Lite loop; rates are per unit x image, so a subset suffices")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 for the one-core estimate)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

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

    broden_scale(args, device)
    resnet18_estimate(args, device)


def broden_like_batch(images: int, seg: int, labels: int, seed: int = 0):
    """Label planes like Broden's at its scale: per image, an object and a part plane of blocky regions
    from a few of `labels` label numbers, a colour plane, and an image-level scene label on every third
    image (a constant plane, as reglens stores it)."""
    g = torch.Generator().manual_seed(seed)
    planes = []
    for grid, palette, low, high in ((6, 9, 1, labels // 2), (10, 7, labels // 2, labels - 60),
                                     (14, 3, labels - 60, labels - 20)):
        choices = torch.randint(low, high, (images, palette), generator=g)
        pick = torch.randint(0, palette, (images, grid * grid), generator=g)
        coarse = choices.gather(1, pick).view(images, 1, grid, grid).float()
        coarse[torch.rand(coarse.shape, generator=g) < 0.3] = 0
        planes.append(F.interpolate(coarse, size=(seg, seg), mode="nearest")[:, 0].long())
    scene = torch.randint(labels - 20, labels, (images,), generator=g) * (torch.arange(images) % 3 == 0)
    planes.append(scene.view(-1, 1, 1).expand(-1, seg, seg))
    return torch.stack(planes, 1)


def smooth_features(images: int, units: int, side: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(images, units, side + 2, side + 2, generator=g)
    return F.avg_pool2d(x, 3, stride=1).relu()


def peak_rss_mb(fn) -> tuple[float, object]:
    """Run fn in this process after a fork and return the rise of the peak resident set (MB)."""
    import multiprocessing as mp
    import resource

    def child(queue):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(queue,))
    proc.start()
    rise = queue.get()
    proc.join()
    return rise


def batch_labels(planes, lc, per_plane: bool, engine: str):
    """The batch's label data as the engine's tally reads it (the torch tally's runs built now)."""
    labels = dissect.BatchLabels(planes, lc, per_plane, engine)
    if engine == "torch":
        labels.runs
    return labels


def engines(device) -> list[str]:
    return ["numba", "torch"] if device.type == "cpu" and dissect_cpu.available() else ["torch"]


def broden_scale(args, device):
    """The tally alone at Broden's scale: reglens' tally (each engine on this device) against the
    per-unit Lite loop (a port of NetDissect-Lite's tally_job, tests/references/dissect_lite.py) on the same
    features, thresholds and planes."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from references import dissect_lite

    labels, seg, n = 1200, 112, args.batch_size
    planes = broden_like_batch(n, seg, labels)
    present = int((torch.unique(planes) > 0).sum())
    lc = torch.zeros(labels, 4)
    for c, (low, high) in enumerate(((1, labels // 2), (labels // 2, labels - 60), (labels - 60, labels - 20),
                                     (labels - 20, labels))):
        lc[low:high, c] = 1
    prepared = {engine: best_of(lambda e=engine: batch_labels(planes.to(device).flatten(2), lc.to(device), True, e),
                                device) for engine in engines(device)}
    print(f"\ntally at Broden's scale: {n} images, masks {seg}x{seg}, {labels - 1} labels in the set, "
          f"{present} present in the batch, {torch.get_num_threads()} thread(s)")
    for engine, (seconds, _) in prepared.items():
        print(f"batch labels for the {engine} tally (made once, shared by every layer): {seconds * 1000:.1f} ms")
    print(f"{'layer':<14}{'engine':>7}{'reglens units*img/s':>20}{'Lite loop units*img/s':>22}{'ratio':>8}"
          f"{'with labels':>12}{'peak MB':>9}{'max|dIoU|':>11}")
    for units, side, lite_units in ((512, 7, args.lite_units), (64, 56, min(64, args.lite_units))):
        feats = smooth_features(n, units, side, seed=units)
        thr = torch.quantile(feats.transpose(0, 1).flatten(1), 0.995, dim=1)
        dev_feats, dev_thr, dev_lc = feats.to(device), thr.to(device), lc.to(device)
        pix = [p[:3].numpy() for p in planes]
        scal = [[int(p[3, 0, 0])] if p[3, 0, 0] > 0 else [] for p in planes]
        t_lite, port = best_of(lambda: dissect_lite.tally(feats[:, :lite_units].numpy(), thr[:lite_units].numpy(), pix,
                                                          scal, lc.numpy(), (seg, seg)), device, repeats=2)
        rate_lite = lite_units * n / t_lite
        for engine, (seconds_labels, labels_batch) in prepared.items():

            def ours(u=units, e=engine, lb=labels_batch):
                tally = dissect.ConceptTally(u, dev_lc, "lite", (seg, seg), device, engine=e)
                tally.update(dev_feats[:, :u], dev_thr[:u], lb)
                return tally

            t_ours, tally = best_of(ours, device)
            diff = np.abs(tally.iou(lite=True)[:lite_units].cpu().numpy() - port["iou"]).max()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                ours()
                peak = torch.cuda.max_memory_allocated(device) / 2**20
            else:
                peak = peak_rss_mb(lambda: ours())
            rate_ours, rate_with = units * n / t_ours, units * n / (t_ours + seconds_labels)
            print(f"{units}u@{side}x{side:<7}{engine:>7}{rate_ours:>20.0f}{rate_lite:>22.0f}{rate_ours / rate_lite:>8.1f}"
                  f"{rate_with / rate_lite:>12.1f}{peak:>9.0f}{diff:>11.1e}")


def best_of(fn, device, repeats: int = 5) -> tuple[float, object]:
    """The shortest of `repeats` timed runs after a warm-up (the least disturbed by other load), and the
    last run's result."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), result


def resnet18_estimate(args, device):
    """Threshold pass and tally for each of ResNet-18's named layers on a batch of random features of
    the layer's shape, scaled to Broden's 63,305 images (the forward pass and image loading excluded;
    they are in the end-to-end line above)."""
    model = models.build("resnet18", 3, 32, 10)
    with torch.no_grad():
        shapes = {n: f.shape[1:] for n, f in dissect.layer_features(
            model, torch.zeros(1, 3, args.input_size, args.input_size), list(model.layer_names)).items()}
    n, seg, labels = args.batch_size, 112, 1200
    planes = broden_like_batch(n, seg, labels).to(device)
    lc = torch.zeros(labels, 4, device=device)
    lc[1:, 0] = 1
    engine = engines(device)[0]
    total, labels_batch = best_of(lambda: batch_labels(planes.flatten(2), lc, False, engine), device)
    print(f"\nResNet-18 at input {args.input_size}, {engine} tally, per {n}-image batch: batch labels {total:.3f} s, "
          f"then per layer (thresholds + tally)")
    for name, (units, h, w) in shapes.items():
        feats = smooth_features(n, units, h, seed=1).to(device)
        thr = torch.quantile(feats.transpose(0, 1).flatten(1).cpu(), 0.995, dim=1).to(device)

        def layer():
            q = dissect.StreamingQuantile(units, 63305 * h * w, 0.005, device)
            q.update(feats.transpose(0, 1).flatten(1))
            dissect.ConceptTally(units, lc, "lite", (seg, seg), device, engine=engine).update(feats, thr, labels_batch)

        seconds, _ = best_of(layer, device, repeats=3)
        total += seconds
        print(f"  {name:<14}{units:>5} units {h}x{w:<4} {seconds:.3f} s")
    print(f"estimate for all 63,305 Broden images: {total * 63305 / n / 60:.1f} min "
          f"({torch.get_num_threads()} thread(s), {device})")


def _head(broden: Broden, n: int) -> Broden:
    import copy

    head = copy.copy(broden)
    head.images = broden.images[:n]
    return head


if __name__ == "__main__":
    main()
