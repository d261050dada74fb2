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

from reglens import analyses  # noqa: F401  (registers the analyses and their costs)
from reglens import attribution, data, dissect, grid, layout, leakage, models, regularizers, robustness
from reglens import roar as roar_mod
from reglens.layout import Cell
from reglens.measures import CONTROLS
from reglens.train import effective_precision, merged_train_config

# dense peak throughput, FLOP/s (NVIDIA H200 SXM datasheet: the H100 SXM's tensor-core rates)
DEVICES = {"h200": {"name": "NVIDIA H200 SXM", "fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12},
           "a100": {"name": "NVIDIA A100 SXM", "fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12}}
GRADIENT = 3  # a forward and a backward pass, in forward-pass equivalents
ATTRIBUTION_COST = {  # forward-pass equivalents per image, given the explain options
    "saliency": lambda o: GRADIENT, "input_x_gradient": lambda o: GRADIENT, "guided_backprop": lambda o: GRADIENT,
    "deeplift": lambda o: 2 * GRADIENT, "gradcam": lambda o: GRADIENT, **{control: (lambda o: 0) for control in CONTROLS},
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


@dataclass
class CellCost:
    """What an analysis's cost (reglens.layout.Analysis.cost) is computed from, for one cell."""
    cfg: dict
    cell: Cell
    gradient: int = GRADIENT

    def __post_init__(self):
        self.study = self.cfg["studies"][self.cell.study]
        self.ds = data.spec(self.cell.dataset)
        self.width = self.study["model"].get("width", 1.0)
        self.robustness = robustness.merged_config(self.cfg["robustness"])
        self.regs = regularizers.build(self.cell.reg, self.cfg["regularizers"])
        self.precision = effective_precision(merged_train_config(self.study["train"])["precision"], self.regs)

    def forward(self, arch: str, width: float, input_size: int | None = None) -> int:
        return forward_flops(arch, self.ds.channels, self.ds.size, self.ds.num_classes, width, input_size)

    @property
    def fwd(self) -> int:
        """FLOPs of the cell's model on one image."""
        return self.forward(self.cell.arch, self.width)

    @property
    def body(self) -> int:
        """FLOPs of the named blocks on one image at the dissection's input size."""
        return self.forward(self.cell.arch, self.width, self.cfg["dissect"]["input_size"])

    @property
    def broden_images(self) -> int:
        broden = self.cfg["dissect"]["broden"]
        return broden["synthetic"]["images"] if broden["source"] == "synthetic" else BRODEN_IMAGES

    @property
    def layers(self) -> int:
        return weighted_layers(self.cell.arch, self.ds.channels, self.ds.size, self.ds.num_classes, self.width)

    @property
    def named_layers(self) -> int:
        return len(models.MODELS[self.cell.arch].layer_names)

    def methods_cost(self, methods, options: dict) -> float:
        """Forward-pass equivalents per image of running every attribution method."""
        return sum(attribution_cost(m, options) for m in methods)

    def training(self, train_cfg: dict, step_cost: float = 1.0, fwd: float | None = None) -> float:
        return training_flops(self.fwd if fwd is None else fwd, train_cfg, self.ds.train_size, self.ds.test_size,
                              step_cost)

    def roar_jobs(self) -> list[tuple]:
        """ROAR's jobs for this base cell: per method a ranking and its retrains (with the detector
        controls); and the study's random baseline, shared by the base cells of one learner."""
        roar = self.cfg["roar"]
        learner = roar_mod.learner_of(self.cfg, self.cell.study, self.cell.arch)
        fwd = self.forward(learner["arch"], learner["model"].get("width", 1.0))
        one = self.training(learner["train"], regularizers.build(learner["reg"], self.cfg["regularizers"]).step_cost(),
                            fwd)
        precision = learner["train"]["precision"]
        runs = len(roar["modes"]) * len(roar["fractions"]) * len(roar["retrain_seeds"])
        runs += len(roar["fractions"]) if roar["leakage"] else 0
        detectors = len(roar["modes"]) * len(roar["fractions"]) if roar["detector"]["enabled"] else 0
        runs += detectors                                  # the learner on each point's recovered masks
        found = detectors * leakage.detector_flops(self.ds.channels, self.ds.size, roar["detector"],
                                                   self.ds.train_size, self.ds.test_size)
        out = []
        for method in roar["methods"]:
            if method != "random":  # the random baseline is shared by every base cell of a study
                out.append(("roar_rank", self.fwd * attribution_cost(method, roar["options"])
                            * (self.ds.train_size + self.ds.test_size), "fp32"))
                out.append(("roar_retrain", runs * one + found, precision))
        baseline = ("roar_baseline", (len(roar["retrain_seeds"]) + runs) * one + found, precision)
        return out + [(*baseline, (self.cell.study, learner["arch"]))]


BRODEN_IMAGES = 63305  # images of the Broden release NetDissect uses (broden1_224)


def jobs(cfg: dict) -> list[Job]:
    """Every job of the workflow with its FLOPs (download, conversion and report jobs cost none):
    per cell, each analysis it runs, costed by its record (layout.Analysis.cost). A cost is FLOPs
    (one job of the analysis's rule) or a list of (rule, FLOPs, precision[, key]) jobs, where jobs
    with one key are one shared job."""
    out, shared = [], {}
    for cell in grid.cells(cfg):
        ctx = CellCost(cfg, cell)
        for analysis in layout.analyses_of(cfg, cell):
            cost = analysis.cost(ctx) if analysis.cost else 0.0
            if not isinstance(cost, list):
                out.append(Job(analysis.name, float(cost)))
                continue
            for rule, flops, precision, *key in cost:
                if key:
                    shared[key[0]] = Job(rule, flops, precision)
                else:
                    out.append(Job(rule, flops, precision))
    return out + list(shared.values())


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
