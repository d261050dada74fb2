"""Training throughput: reglens' loop (device-resident uint8 data, batched augmentation) against a
plain PyTorch loop (DataLoader over float tensors, per-batch host->device copy), same model, same data.

    python benchmarks/train_throughput.py [--device cuda] [--archs resnet18 vgg19] [--n 8192]
    python benchmarks/train_throughput.py --regularizers none l2 dropout   # cost per step vs none
    python benchmarks/train_throughput.py --precisions fp32 bf16 --json results/bench/train_throughput.json

Prints images/s of each and their ratio (>1: reglens is faster); with --precisions, reglens' images/s
per precision, the training FLOP/s they mean (3 forward passes per image, each counted by torch's FLOP
counter) and the model FLOPs utilization: that rate over the device's dense peak for the precision
(fp32 on CUDA: the TF32 peak, which reglens enables; on the CPU only with --peak-tflops). --json
keeps the numbers for `python -m reglens plan --measured`.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from reglens import models, plan, regularizers
from reglens.data import TensorData
from reglens.device import resolve_device
from reglens.train import train


def synthetic(n: int, channels: int, size: int, classes: int, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return TensorData("synthetic", x, y, x[:256], y[:256], [str(i) for i in range(classes)],
                      [0.5] * channels, [0.25] * channels)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(data: TensorData, arch: str, width: float, batch_size: int, epochs: int, device) -> float:
    torch.manual_seed(0)
    model = models.build(arch, data.channels, data.size, data.num_classes, width=width,
                         mean=data.mean, std=data.std).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dataset = torch.utils.data.TensorDataset(data.x_train.float() / 255, data.y_train)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    model.train()
    seconds = []
    for _ in range(epochs + 1):  # the first epoch is warm-up
        sync(device)
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return len(data.y_train) / min(seconds[1:])


def reglens_loop(data, arch, width, batch_size, epochs, device, reg="none", variants=None,
                 precision="fp32") -> float:
    regs = regularizers.build(reg, variants or {"none": []})
    result = train(data, arch, regs, {"epochs": epochs + 1, "batch_size": batch_size, "lr": 0.01,
                                      "schedule": "constant", "deterministic": False, "precision": precision},
                   {"width": width}, seed=0, device=device)
    return max(r["images_per_s"] for r in result.history[1:])


DEFAULT_VARIANTS = {
    "none": [], "l1": [{"kind": "l1", "weight": 1e-5}], "l2": [{"kind": "l2", "weight": 5e-4}],
    "elastic_net": [{"kind": "elastic_net"}], "dropout": [{"kind": "dropout", "p": 0.5}],
    "soft_svb": [{"kind": "soft_svb"}], "hard_svb": [{"kind": "hard_svb", "every": 1}],
    "jacobian": [{"kind": "jacobian", "projections": 1}], "input_gradient": [{"kind": "input_gradient"}],
    "confidence_penalty": [{"kind": "confidence_penalty"}], "label_smoothing": [{"kind": "label_smoothing"}],
    "input_noise": [{"kind": "input_noise"}], "weight_noise": [{"kind": "weight_noise"}],
    "group_norm": [{"kind": "group_norm"}], "adversarial": [{"kind": "adversarial", "steps": 7}],
    "group_activation": [{"kind": "group_activation"}], "group_spatial": [{"kind": "group_spatial"}],
}


def device_peak(device, precision: str, peak_tflops: float | None) -> float | None:
    """Dense peak FLOP/s for a precision: given, or the datasheet's for a known GPU (plan.DEVICES)."""
    if peak_tflops:
        return peak_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).lower()
    for key, peaks in plan.DEVICES.items():
        if key in name:
            return peaks["tf32" if precision == "fp32" else precision]
    return None


def utilization(data, args, device) -> dict:
    """Per architecture and precision: images/s, training TFLOP/s and the fraction of the peak."""
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "archs": {}}
    print(f"{'arch':<12}{'precision':>10}{'images/s':>12}{'TFLOP/s':>10}{'MFU':>8}{'vs fp32':>9}")
    for arch in args.archs:
        flops = plan.GRADIENT * plan.forward_flops(arch, args.channels, args.size, 10, args.width)
        rows = {}
        for precision in args.precisions:
            ips = max(reglens_loop(data, arch, args.width, args.batch_size, args.epochs, device, precision=precision)
                      for _ in range(args.repeats))
            peak = device_peak(device, precision, args.peak_tflops)
            rows[precision] = {"images_per_s": ips, "tflops": ips * flops / 1e12,
                               "mfu": ips * flops / peak if peak else None}
            mfu = f"{rows[precision]['mfu']:.1%}" if peak else "n/a"
            ratio = ips / rows[args.precisions[0]]["images_per_s"]
            print(f"{arch:<12}{precision:>10}{ips:>12.0f}{ips * flops / 1e12:>10.2f}{mfu:>8}{ratio:>8.2f}x")
        out["archs"][arch] = rows
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--archs", nargs="+", default=list(models.MODELS))
    parser.add_argument("--regularizers", nargs="+", default=[])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs; the best of each is kept")
    parser.add_argument("--precisions", nargs="+", default=[], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak (CPU: yours)")
    parser.add_argument("--json", default=None, help="write the --precisions results here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = synthetic(args.n, args.channels, args.size, 10)
    print(f"device={device} n={args.n} size={args.size} width={args.width} batch={args.batch_size} "
          f"torch={torch.__version__} threads={torch.get_num_threads()}")
    if args.precisions:
        result = utilization(data, args, device)
        if args.json:
            os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
            with open(args.json + ".tmp", "w") as handle:
                json.dump(result, handle, indent=1)
            os.replace(args.json + ".tmp", args.json)
        return
    if args.regularizers:
        arch = args.archs[0]
        run = lambda reg: reglens_loop(data, arch, args.width, args.batch_size, args.epochs, device, reg,
                                       DEFAULT_VARIANTS)
        run("none")  # warm-up
        best = {reg: 0.0 for reg in ["none", *args.regularizers]}
        for _ in range(args.repeats):
            for reg in best:
                best[reg] = max(best[reg], run(reg))
        print(f"{'regularizer':<20}{'images/s':>12}{'cost per step vs none':>24}")
        for reg, ips in best.items():
            print(f"{reg:<20}{ips:>12.0f}{best['none'] / ips:>23.2f}x")
        return
    print(f"{'arch':<12}{'reglens img/s':>16}{'plain img/s':>16}{'ratio':>8}")
    for arch in args.archs:
        ours = plain = 0.0
        for _ in range(args.repeats):
            plain = max(plain, plain_loop(data, arch, args.width, args.batch_size, args.epochs, device))
            ours = max(ours, reglens_loop(data, arch, args.width, args.batch_size, args.epochs, device))
        print(f"{arch:<12}{ours:>16.0f}{plain:>16.0f}{ours / plain:>8.2f}")


if __name__ == "__main__":
    main()
