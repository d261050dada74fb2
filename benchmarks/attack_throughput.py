"""PGD throughput: reglens.robustness.pgd against torchattacks.PGD on the same model and images.

    python benchmarks/attack_throughput.py [--device cuda] [--arch resnet18] [--n 2048] [--steps 10]

Prints images/s of each and the ratio (>1: reglens is faster).
"""
from __future__ import annotations

import argparse
import time

import torch

from reglens import attacks, models
from reglens.device import resolve_device


def timed(fn, device, repeats):
    best = float("inf")
    for _ in range(repeats + 1):  # the first run is warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torchattacks

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = models.build(args.arch, 3, 32, 10, width=args.width).to(device).eval()
    x = torch.rand(args.n, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.n,), device=device)
    alpha = 2.5 * args.eps / args.steps
    ours = lambda: [attacks.pgd(model, x[i:i + args.batch_size], y[i:i + args.batch_size], args.eps, alpha,
                                   args.steps) for i in range(0, args.n, args.batch_size)]
    attack = torchattacks.PGD(model, eps=args.eps, alpha=alpha, steps=args.steps, random_start=True)
    theirs = lambda: [attack(x[i:i + args.batch_size], y[i:i + args.batch_size])
                      for i in range(0, args.n, args.batch_size)]
    t_ours, t_theirs = timed(ours, device, args.repeats), timed(theirs, device, args.repeats)
    print(f"device={device} arch={args.arch} width={args.width} n={args.n} steps={args.steps} torch={torch.__version__}")
    print(f"{'implementation':<16}{'images/s':>12}")
    print(f"{'reglens':<16}{args.n / t_ours:>12.1f}")
    print(f"{'torchattacks':<16}{args.n / t_theirs:>12.1f}")
    print(f"ratio reglens/torchattacks: {t_theirs / t_ours:.2f}")


if __name__ == "__main__":
    main()
