"""Small cells sharing one device: aggregate training images/s of k cells trained concurrently, each
in its own process as rule train_shared runs them in one SLURM job, against one cell alone.

    python benchmarks/shared_gpu.py [--device cuda] [--arch lenet] [--cells 8] [--n 16384] [--epochs 2]

Every process builds its data and model, trains one warm-up epoch, then waits at a barrier; the
measured epochs of all start together. Aggregate images/s = cells x images x epochs / (last finish -
first start). Prints it for 1 and k cells and their ratio (the goal on a GPU: >= 4 for 8).
On the CPU the cells compete for the same cores, so the ratio is bounded by cores / threads per cell.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import torch

from reglens.device import resolve_device


def cell(args, seed: int, barrier, results) -> None:
    from train_throughput import synthetic  # the benchmark's synthetic data (spawned: imported here)

    from reglens import regularizers
    from reglens.device import resolve_device
    from reglens.train import train

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = synthetic(args.n, args.channels, args.size, 10, seed)
    regs = regularizers.build("none", {"none": []})
    cfg = {"batch_size": args.batch_size, "lr": 0.01, "schedule": "constant", "deterministic": False,
           "precision": args.precision}
    train(data, args.arch, regs, {**cfg, "epochs": 1}, {"width": args.width}, seed=seed, device=device)  # warm-up
    barrier.wait()
    start = time.perf_counter()
    train(data, args.arch, regs, {**cfg, "epochs": args.epochs}, {"width": args.width}, seed=seed, device=device)
    results.put((start, time.perf_counter()))


def aggregate(args, cells: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(cells), ctx.Queue()
    procs = [ctx.Process(target=cell, args=(args, seed, barrier, results)) for seed in range(cells)]
    for p in procs:
        p.start()
    spans = [results.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a benchmark cell failed (exit code {p.exitcode})")
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return cells * args.n * args.epochs / wall


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", default="lenet")
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per cell (the config's torch_threads)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    args = parser.parse_args()
    args.device = str(resolve_device(args.device))  # the spawned cells get a concrete device
    alone = aggregate(args, 1)
    shared = aggregate(args, args.cells)
    print(f"device={args.device} arch={args.arch} width={args.width} n={args.n} batch={args.batch_size} "
          f"epochs={args.epochs} threads/cell={args.threads} precision={args.precision}")
    print(f"{'cells':>6}{'aggregate img/s':>18}")
    print(f"{1:>6}{alone:>18.0f}")
    print(f"{args.cells:>6}{shared:>18.0f}")
    print(f"shared-GPU ratio ({args.cells} cells / 1): {shared / alone:.2f}x")


if __name__ == "__main__":
    main()
