"""The bill before the run: counted FLOPs against a closed-form count, GPU-hours against their
definition, measured utilization used only where it was measured."""
import pytest
import torch
from torch import nn

from reglens import config, leakage, models, plan


def closed_form_forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """2 x multiply-adds of every convolution and linear layer, from their output shapes."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2 * output.numel() * module.in_channels // module.groups * k
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("arch,channels,size", [("lenet", 1, 28), ("simplecnn", 3, 32), ("resnet18", 3, 32)])
def test_counted_forward_flops_equal_the_closed_form(arch, channels, size):
    model = models.build(arch, channels, size, 10, width=0.5).eval()
    expected = closed_form_forward_flops(model, torch.zeros(1, channels, size, size))
    assert plan.forward_flops(arch, channels, size, 10, 0.5) == expected


CFG = {"regularizers": {"none": [], "jacobian": [{"kind": "jacobian"}]},
       "explain": {"methods": ["saliency"], "mprt_methods": []}, "dissect": {"enabled": False},
       "road": {"enabled": False}, "meta_consistency": {"enabled": False},
       "studies": {"s": {"dataset": "mnist", "archs": ["lenet"], "regularizers": ["none", "jacobian"], "seeds": [0],
                         "train": {"epochs": 2, "precision": "bf16"}}}}


def test_gpu_hours_are_flops_over_peak_times_utilization_and_fp32_where_needed():
    cfg = config.validate(CFG)
    train = [j for j in plan.jobs(cfg) if j.rule == "train"]
    assert [j.precision for j in train] == ["bf16", "fp32"]  # the Jacobian cell trains in fp32
    fwd = plan.forward_flops("lenet", 1, 28, 10, 1.0)
    assert train[0].flops == 3 * fwd * 60000 * 2 + fwd * (10000 * 2 + 70000)
    table = plan.bill(cfg, "h200", 0.25).set_index("rule")
    peak = plan.DEVICES["h200"]
    hours = train[0].flops / (peak["bf16"] * 0.25) / 3600 + train[1].flops / (peak["tf32"] * 0.25) / 3600
    assert table.loc["train", "gpu_hours"] == pytest.approx(hours)
    assert table.loc["total", "jobs"] == len(plan.jobs(cfg))
    measured = plan.bill(cfg, "h200", 0.25, measured={"bf16": 0.5}).set_index("rule")
    hours = train[0].flops / (peak["bf16"] * 0.5) / 3600 + train[1].flops / (peak["tf32"] * 0.25) / 3600
    assert measured.loc["train", "gpu_hours"] == pytest.approx(hours)


def test_measured_utilization_is_the_median_and_only_for_its_device():
    bench = {"device": "NVIDIA H200", "archs": {a: {"fp32": {"mfu": m}, "bf16": {"mfu": None}}
                                                for a, m in (("lenet", 0.1), ("resnet18", 0.4), ("vgg19", 0.3))}}
    assert plan.measured_utilization(bench, "h200") == {"fp32": pytest.approx(0.3)}
    assert plan.measured_utilization(bench, "a100") == {}
    assert plan.measured_utilization({**bench, "device": "cpu"}, "h200") == {}


def test_roar_jobs_count_every_retrain_and_the_detector_control():
    cfg = config.validate({**CFG, "roar": {"cells": ["s/lenet/none/seed0"], "methods": ["random", "saliency"],
                                           "fractions": [0.25, 0.5], "modes": ["roar", "kar"], "retrain_seeds": [0, 1]}})
    detector = leakage.MaskDetector(1, [0.5], [0.5], cfg["roar"]["detector"]["width"])
    assert leakage.detector_forward_flops(1, 28, detector.net[0].out_channels) == closed_form_forward_flops(
        detector, torch.zeros(1, 1, 28, 28))
    jobs = {j.rule: j for j in plan.jobs(cfg) if j.rule.startswith("roar")}
    one = plan.training_flops(plan.forward_flops("lenet", 1, 28, 10, 1.0), {**CFG["studies"]["s"]["train"]},
                              60000, 10000)
    found = 4 * leakage.detector_flops(1, 28, cfg["roar"]["detector"], 60000, 10000)
    # 2 modes x 2 fractions x 2 seeds, a mask-alone learner per fraction, a recovered-mask learner per point
    assert jobs["roar_retrain"].flops == pytest.approx((8 + 2 + 4) * one + found)
    off = config.validate({**CFG, "roar": {**cfg["roar"], "cells": ["s/lenet/none/seed0"], "detector": {"enabled": False}}})
    assert [j.flops for j in plan.jobs(off) if j.rule == "roar_retrain"] == [pytest.approx((8 + 2) * one)]
