"""The bill before the run: jobs, FLOPs and GPU-hours per rule for a validated config.

FLOPs are counted, not guessed, where they can be: each model's forward pass is measured once with
torch.utils.flop_counter at its dataset's input size (multiply-adds count two). Training costs a
forward and a backward (3 forwards) per image and step, times the regularizer's measured cost per
step (reglens.regularizers: Regularizer.step_cost, from benchmarks/train_throughput.py), plus the
per-epoch test evaluation. Analysis stages are counted in forward-pass equivalents per image from
their settings (a gradient is 3 forwards; Integrated Gradients' steps, attack steps, grid points,
Broden images at the dissection input size). GPU-hours divide by a device's peak for the
training precision times an assumed utilization, both stated in the output.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from reglens import attribution, config as config_mod, data, dissect, leakage, models, regularizers, robustness
from reglens.train import effective_precision, merged_train_config

# dense peak throughput, FLOP/s (NVIDIA H200 SXM datasheet: the H100 SXM's tensor-core rates)
DEVICES = {"h200": {"name": "NVIDIA H200 SXM", "fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12},
           "a100": {"name": "NVIDIA A100 SXM", "fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12}}
GRADIENT = 3  # a forward and a backward pass, in forward-pass equivalents
ATTRIBUTION_COST = {  # forward-pass equivalents per image, given the explain options
    "saliency": lambda o: GRADIENT, "input_x_gradient": lambda o: GRADIENT, "guided_backprop": lambda o: GRADIENT,
    "deeplift": lambda o: 2 * GRADIENT, "gradcam": lambda o: GRADIENT, "random": lambda o: 0, "sobel": lambda o: 0,
    "integrated_gradients": lambda o: GRADIENT * o["ig_steps"], "smoothgrad": lambda o: GRADIENT * o["nt_samples"],
    "smoothgrad_sq": lambda o: GRADIENT * o["nt_samples"], "vargrad": lambda o: GRADIENT * o["nt_samples"],
    "occlusion": lambda o: (1 + math.ceil((1 - o["occlusion_window"]) / o["occlusion_stride"])) ** 2,
    # one forward and backward per optimization step, per area for extremal perturbation
    "extremal_perturbation": lambda o: GRADIENT * o["ep_iterations"] * len(o["ep_areas"]),
    "meaningful_perturbation": lambda o: GRADIENT * o["mp_iterations"],
}


@functools.lru_cache(maxsize=None)
def forward_flops(arch: str, channels: int, size: int, classes: int, width: float, input_size: int | None = None) -> int:
    """FLOPs of one image's forward pass (multiply-add = 2), counted by torch's FLOP counter."""
    model = models.build(arch, channels, size, classes, width=width).eval()
    side = input_size or size
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        if input_size:  # dissection runs the named convolutional blocks only, at its own input size
            dissect.layer_features(model, torch.zeros(1, channels, side, side), list(model.layer_names))
        else:
            model(torch.zeros(1, channels, side, side))
    return int(counter.get_total_flops())


@functools.lru_cache(maxsize=None)
def weighted_layers(arch: str, channels: int, size: int, classes: int, width: float) -> int:
    """Layers the cascading randomization check re-initializes one at a time."""
    model = models.build(arch, channels, size, classes, width=width)
    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d)) for m in model.modules())


def attribution_cost(method: str, options: dict) -> float:
    return ATTRIBUTION_COST[method]({**attribution.DEFAULTS, **options})


@dataclass
class Job:
    rule: str
    flops: float
    precision: str = "fp32"


def training_flops(fwd: float, train_cfg: dict, n_train: int, n_test: int, step_cost: float = 1.0) -> float:
    cfg = merged_train_config(train_cfg)
    steps = GRADIENT * fwd * n_train * cfg["epochs"] * step_cost
    evaluation = fwd * (n_test * cfg["epochs"] + n_train + n_test)
    return steps + evaluation


def jobs(cfg: dict) -> list[Job]:
    """Every job of the workflow with its FLOPs (download, conversion and report jobs cost none)."""
    out = []
    spec = lambda name: data.spec(name)
    explain, road, roar, dissect = cfg["explain"], cfg["road"], cfg["roar"], cfg["dissect"]
    rob = robustness.merged_config(cfg["robustness"])
    for cell in config_mod.cells(cfg):
        study = cfg["studies"][cell.study]
        ds = spec(cell.dataset)
        width = study["model"].get("width", 1.0)
        fwd = forward_flops(cell.arch, ds.channels, ds.size, ds.num_classes, width)
        regs = regularizers.build(cell.reg, cfg["regularizers"])
        precision = effective_precision(merged_train_config(study["train"])["precision"], regs)
        out.append(Job("train", training_flops(fwd, study["train"], ds.train_size, ds.test_size, regs.step_cost()),
                       precision))
        attack_steps = len(rob["fgsm_eps"]) + len(rob["pgd_eps"]) * sum(rob["pgd_steps"])
        out.append(Job("attack", fwd * rob["n_images"] * (GRADIENT * attack_steps + len(rob["fgsm_eps"]) + len(rob["pgd_eps"]))))
        b = rob["boundary"]
        out.append(Job("diagnose", fwd * (b["images"] * 2 * b["resolution"] ** 2 + ds.test_size + rob["pca_images"])))
        if ds.inputs != "images":  # the 2-D toy study: no explanation, ROAD or dissection
            continue
        per_image = sum(attribution_cost(m, explain["options"]) for m in explain["methods"])
        layers = weighted_layers(cell.arch, ds.channels, ds.size, ds.num_classes, width)
        mprt = sum(attribution_cost(m, explain["options"]) for m in explain["mprt_methods"]) * layers
        out.append(Job("explain", fwd * (per_image * (explain["figure_images"] + explain["metric_images"])
                                         + mprt * explain["mprt_images"])))
        out.append(Job("actmax", fwd * GRADIENT * cfg["actmax"]["steps"] * (ds.num_classes + 16)))
        if road["enabled"]:
            rank = sum(attribution_cost(m, road["options"]) for m in road["methods"])
            out.append(Job("road", fwd * road["images"] * (rank + len(road["methods"]) * 2 * len(road["fractions"]))))
        if dissect["enabled"]:
            images = dissect["broden"]["synthetic"]["images"] if dissect["broden"]["source"] == "synthetic" else 63305
            body = forward_flops(cell.arch, ds.channels, ds.size, ds.num_classes, width, dissect["input_size"])
            out.append(Job("dissect", 2 * body * images))
            if cfg["net2vec"]["enabled"]:  # the body over its images once per layer; the fit is small beside it
                n2v = min(cfg["net2vec"]["images"], images)
                out.append(Job("net2vec", body * n2v * len(models.MODELS[cell.arch].layer_names)))
            if cfg["lesion"]["enabled"]:  # importance (one gradient per image), then each ablation's test pass
                lz = cfg["lesion"]
                passes = 1 + len(lz["ks"]) * (1 + lz["draws"])
                out.append(Job("lesion", fwd * (GRADIENT * lz["train_images"] + passes * ds.test_size)))
        if cell.shortcut:  # three test splits predicted, the methods on the marked images
            per_image = sum(attribution_cost(m, explain["options"]) for m in cfg["shortcut"]["methods"])
            out.append(Job("shortcut", fwd * (3 * ds.test_size + per_image * cfg["shortcut"]["images"])))
    learners = {}
    for path in roar["cells"]:
        cell = config_mod.cell_at(cfg, path)
        study = cfg["studies"][cell.study]
        ds = spec(cell.dataset)
        arch = roar["learner"]["arch"] or cell.arch
        width = roar["learner"]["width"] or study["model"].get("width", 1.0)
        base = forward_flops(cell.arch, ds.channels, ds.size, ds.num_classes, study["model"].get("width", 1.0))
        fwd = forward_flops(arch, ds.channels, ds.size, ds.num_classes, width)
        train_cfg = {**study["train"], **roar["train"]}
        precision = merged_train_config(train_cfg)["precision"]
        one = training_flops(fwd, train_cfg, ds.train_size, ds.test_size, regularizers.build(
            roar["learner"]["reg"], cfg["regularizers"]).step_cost())
        runs = len(roar["modes"]) * len(roar["fractions"]) * len(roar["retrain_seeds"])
        runs += len(roar["fractions"]) if roar["leakage"] else 0
        detectors = len(roar["modes"]) * len(roar["fractions"]) if roar["detector"]["enabled"] else 0
        runs += detectors                                  # the learner on each point's recovered masks
        found = detectors * leakage.detector_flops(ds.channels, ds.size, roar["detector"], ds.train_size, ds.test_size)
        for method in roar["methods"]:
            if method != "random":  # the random baseline is shared by every base cell of a study
                out.append(Job("roar_rank", base * attribution_cost(method, roar["options"]) * (ds.train_size + ds.test_size)))
                out.append(Job("roar_retrain", runs * one + found, precision))
        learners[(cell.study, arch)] = Job("roar_baseline", (len(roar["retrain_seeds"]) + runs) * one + found, precision)
    return out + list(learners.values())


def measured_utilization(bench: dict, device: str) -> dict[str, float]:
    """Per precision, the median model FLOPs utilization over the architectures of a
    `benchmarks/train_throughput.py --json` file, if it was measured on `device`; else {}."""
    if device not in str(bench.get("device", "")).lower():
        return {}
    found: dict[str, list[float]] = {}
    for rows in bench.get("archs", {}).values():
        for precision, row in rows.items():
            if row.get("mfu"):
                found.setdefault(precision, []).append(row["mfu"])
    return {precision: float(pd.Series(values).median()) for precision, values in found.items()}


def bill(cfg: dict, device: str = "h200", utilization: float = 0.3, tf32: bool = True,
         measured: dict[str, float] | None = None) -> pd.DataFrame:
    """Per rule: jobs, PFLOP and GPU-hours on `device` at `utilization` of its peak for each job's
    precision (fp32 jobs at the TF32 tensor-core peak when `tf32`, which reglens enables on CUDA), or
    at the utilization `measured` for that precision (measured_utilization)."""
    peak = DEVICES[device]
    measured = measured or {}
    rows = []
    for job in jobs(cfg):
        rate = peak["tf32" if job.precision == "fp32" and tf32 else job.precision]
        used = measured.get(job.precision, utilization)
        rows.append({"rule": job.rule, "pflop": job.flops / 1e15, "gpu_hours": job.flops / (rate * used) / 3600})
    frame = pd.DataFrame(rows)
    table = frame.groupby("rule", sort=False).agg(jobs=("pflop", "size"), pflop=("pflop", "sum"),
                                                  gpu_hours=("gpu_hours", "sum")).reset_index()
    total = pd.DataFrame([{"rule": "total", "jobs": int(table.jobs.sum()), "pflop": table.pflop.sum(),
                           "gpu_hours": table.gpu_hours.sum()}])
    return pd.concat([table, total], ignore_index=True)
