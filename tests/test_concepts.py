"""Concepts beyond single units: Net2Vec on constructed layers whose concepts are carried by known
units, and lesions of a network whose classes each depend on one unit."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from reglens import attribution, concepts


def constructed_layer(n=120, side=12, seed=0):
    """Concept A is the sum of units 0 and 1, each weak alone (a strong field Z is added to one and
    subtracted from the other); concept B is unit 2 alone; unit 3 is noise."""
    gen = torch.Generator().manual_seed(seed)
    blobs = torch.rand(n, 2, side // 3, side // 3, generator=gen)
    masks = torch.nn.functional.interpolate(blobs, size=(side, side), mode="nearest") > 0.7   # (n, 2, s, s)
    z = 2.0 * torch.randn(n, side, side, generator=gen)
    a, b = masks[:, 0].float(), masks[:, 1].float()
    feats = torch.stack([a + z, a - z, b + 0.05 * torch.randn(n, side, side, generator=gen),
                         torch.randn(n, side, side, generator=gen)], 1)
    return feats, masks


def quantile_thresholds(feats, area):
    flat = feats.transpose(0, 1).flatten(1)
    return torch.quantile(flat, 1 - area, dim=1)


def test_a_concept_spread_over_two_weak_units_needs_both_and_one_carried_by_one_unit_needs_one():
    feats, masks = constructed_layer()
    train, val = slice(0, 80), slice(80, 120)
    thresholds = quantile_thresholds(feats[train], float(masks[train].float().mean()))
    cfg = {**concepts.NET2VEC_DEFAULTS, "epochs": 60, "lr": 0.05, "batch_size": 20}
    result = concepts.net2vec_layer(feats[train], masks[train], feats[val], masks[val], thresholds, cfg)
    single = concepts.unit_iou(feats[val], thresholds, masks[val])
    # concept A: the embedding segments it; each of its units alone does not
    assert result["embedding_iou"][0] > 0.8
    assert single[0, 0] < 0.4 and single[1, 0] < 0.4 and result["best_unit_iou"][0] < 0.4
    assert result["units_to_reach"][0] == 2
    assert abs(float(result["weights"][0, 0] / result["weights"][0, 1]) - 1) < 0.2  # equal weights: a + z and a - z
    # concept B: one unit carries it alone
    assert result["embedding_iou"][1] > 0.8 and result["best_unit_iou"][1] > 0.8
    assert result["units_to_reach"][1] == 1
    assert result["entropy"][1] < result["entropy"][0]


def test_embedding_iou_and_entropy_against_direct_definitions():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(5, 4, 7, 7, generator=gen)
    truth = torch.rand(5, 3, 7, 7, generator=gen) > 0.6
    wb, bias = torch.randn(3, 4, generator=gen), torch.randn(3, generator=gen)
    pred = (np.einsum("nkhw,ck->nchw", feats.numpy(), wb.numpy()) + bias.numpy()[None, :, None, None]) > 0
    t = truth.numpy()
    expected = [(pred[:, c] & t[:, c]).sum() / (pred[:, c] | t[:, c]).sum() for c in range(3)]  # summed over images
    np.testing.assert_allclose(concepts.embedding_iou(feats, truth, wb, bias, batch_size=2).numpy(), expected)
    w = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1], [-2, 2, 0, 0]])
    np.testing.assert_allclose(attribution.entropy(w.abs()).numpy(), [0, math.log(4), math.log(2)], atol=1e-12)
    # the weighted map equals upsampling every unit first, then summing (bilinear upsampling is linear)
    feats = torch.rand(2, 4, 5, 5, generator=gen)
    wb = torch.rand(3, 4, generator=gen)
    bias = torch.rand(3, generator=gen)
    direct = torch.einsum("nkhw,ck->nchw", concepts.upsample(feats, (20, 20)), wb) + bias.view(1, 3, 1, 1)
    assert torch.allclose(concepts.weighted_map(feats, wb, bias, (20, 20)), direct, atol=1e-5)


class OneUnitPerClass(nn.Module):
    """Class c's logit is unit c of layer `units`; the others get small positive noise, so a class
    whose unit is zeroed can never win."""

    layer_names = ("units",)

    def __init__(self):
        super().__init__()
        self.units = nn.Identity()

    def forward(self, x):
        return self.units(x).flatten(1)


def test_lesions_find_the_one_unit_each_class_depends_on():
    classes, n = 10, 400
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = 0.05 + 0.05 * torch.rand(n, classes, 1, 1, generator=gen)
    x[torch.arange(n), y] = 3.0
    model = OneUnitPerClass()
    importance = concepts.unit_importance(model, "units", x, y, classes)
    assert (importance.argmax(1) == torch.arange(classes)).all()
    curves = pd.DataFrame(concepts.lesion_curves(model, "units", importance, x, y, ks=[1, 3], draws=20, seed=0))
    top1 = curves[(curves.kind == "top") & (curves.k == 1)]
    assert (top1.accuracy == 0).all()  # every class lost at k = 1
    assert (curves[curves.kind == "none"].accuracy == 1).all()
    random1 = curves[(curves.kind == "random") & (curves.k == 1)]
    assert random1.accuracy.mean() > 0.8  # one random unit rarely is the class's (1 in 10)
    summary = concepts.lesion_summary(curves.to_dict("records"))
    assert summary["lesion_drop_top@1"] == 1.0
    assert summary["lesion_drop_random@1"] == pytest.approx(1 - random1.groupby("class").accuracy.mean().mean())
    assert summary["lesion_concentration@1"] == pytest.approx(summary["lesion_drop_top@1"] - summary["lesion_drop_random@1"])
