"""Concept Group Learning (Varshneya et al. 2021): the activation regularizers against direct
implementations of the paper's formulas, from the training step's own forward pass; AlexNet and
AlexNet-B; the group-agreement measure on groups whose concepts are known."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from reglens import dissect, models, regularizers  # noqa: F401
from reglens.dissect.groups import group_agreement
from reglens.regularizers import concept_groups as cg
from reglens.train import train

CGL = {"cgl": [{"kind": "group_norm", "weight": 5e-3, "groups": 2}, {"kind": "group_activation", "weight": 0.5, "groups": 2},
               {"kind": "group_spatial", "weight": 0.1}]}


def test_distance_is_one_minus_iou_on_sets():
    gen = torch.Generator().manual_seed(0)
    a = (torch.rand(6, 50, generator=gen) > 0.5).double()
    b = (torch.rand(6, 50, generator=gen) > 0.4).double()
    iou = (a * b).sum(1) / ((a + b) > 0).double().sum(1)
    assert torch.allclose(cg.soft_iou_distance(a, b), 1 - iou)
    assert torch.allclose(cg.soft_iou_distance(a, a), torch.zeros(6, dtype=torch.float64))


def reference_group_loss(psi: np.ndarray, groups: int, pairs: list[np.ndarray]) -> float:
    """Eq. 5's first term for one layer, written out: per group, (1/r) times the sum over its drawn
    pairs (i, j) of 2|psi_i - psi_j|_1 / (|psi_i|_1 + |psi_j|_1 + |psi_i - psi_j|_1), the L1 norms
    over the minibatch and all positions."""
    total = 0.0
    blocks = np.array_split(np.arange(psi.shape[1]), groups)
    for block, drawn in zip(blocks, pairs):
        n = len(block)
        terms = []
        for code in drawn:
            i, j = block[code // n], block[code % n]
            d = np.abs(psi[:, i] - psi[:, j]).sum()
            terms.append(2 * d / (np.abs(psi[:, i]).sum() + np.abs(psi[:, j]).sum() + d))
        total += sum(terms) / len(drawn)
    return total


def test_group_activation_loss_is_the_papers_formula():
    gen = torch.Generator().manual_seed(1)
    psi = torch.rand(4, 10, 5, 5, generator=gen, dtype=torch.float64)
    torch.manual_seed(7)
    ours = cg.group_activation_loss(psi, groups=3)
    torch.manual_seed(7)  # the same draws: r = 3 N_g distinct pairs per group (at most N_g^2)
    pairs = [torch.randperm(n * n)[:min(3 * n, n * n)].numpy() for n in (4, 3, 3)]
    assert all(len(set(p)) == len(p) for p in pairs)
    assert float(ours) == pytest.approx(reference_group_loss(psi.numpy(), 3, pairs), rel=1e-12)
    identical = psi[:, :1].repeat(1, 10, 1, 1)  # every filter active in the same places: no loss
    assert float(cg.group_activation_loss(identical, groups=3)) == pytest.approx(0.0, abs=1e-12)


def test_spatial_loss_is_the_papers_formula():
    psi = torch.rand(2, 3, 4, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = []
    for n in range(2):
        for c in range(3):
            m = psi[n, c].numpy()
            ys, xs = np.indices(m.shape)
            cy, cx = (ys * m).sum() / m.sum(), (xs * m).sum() / m.sum()
            expected.append((m * np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)).sum() / m.sum())
    assert float(cg.spatial_loss(psi)) == pytest.approx(np.mean(expected), rel=1e-6)
    point = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    point[0, 0, 2, 3] = 1.0  # all mass at one position: no spread
    assert float(cg.spatial_loss(point)) == pytest.approx(0.0, abs=1e-5)


def test_soft_receptive_fields_with_and_without_batch_norm():
    pre = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    std = pre.permute(1, 0, 2, 3).reshape(3, -1).std(1, unbiased=False).view(1, 3, 1, 1)
    assert torch.allclose(cg.soft_receptive_field(pre, 2.0, -1.0), torch.sigmoid(2.0 * pre / std - 1.0))
    bn = nn.BatchNorm2d(3).double().train()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.3, 0.2]))
    out = bn(pre)
    mean = pre.mean((0, 2, 3), keepdim=True)
    a_hat = (pre - mean) / torch.sqrt(pre.var((0, 2, 3), unbiased=False, keepdim=True) + bn.eps)
    tau = a_hat + (bn.bias / bn.weight).view(1, 3, 1, 1)  # Eq. 4: undo the batch norm's affine part
    assert torch.allclose(cg.soft_receptive_field(out, 1.5, 0.5, bn), torch.sigmoid(1.5 * tau + 0.5), atol=1e-10)


def test_the_penalties_use_the_training_forward_and_reach_every_conv():
    torch.manual_seed(0)
    model = models.build("alexnet_b", 1, 8, 10, width=0.125)
    regs = regularizers.build("cgl", CGL)
    regs.init_model(model)
    taps = cg.conv_taps(model)
    assert len(taps) == 5 and all(isinstance(m, nn.BatchNorm2d) for m, _ in taps)  # AlexNet-B: after batch norm
    calls = []
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        conv.register_forward_hook(lambda *a: calls.append(1))
    model.train()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    logits = model(x)
    penalties = regs.penalties(model, x, y, logits)
    assert len(calls) == 5  # one forward: the penalties ran none of their own
    assert set(penalties) == {"group_norm", "group_activation", "group_spatial"}
    (penalties["group_activation"] + penalties["group_spatial"]).backward()
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    plain = models.build("alexnet", 1, 8, 10, width=0.125)
    assert all(isinstance(m, nn.Conv2d) for m, _ in cg.conv_taps(plain))  # no batch norm: the conv itself


def test_training_with_concept_groups_is_seeded_and_finite(digits):
    cfg = {"optimizer": "adam", "lr": 1e-3, "epochs": 1, "batch_size": 128}
    runs = [train(digits, "alexnet_b", regularizers.build("cgl", CGL), cfg, {"width": 0.125}, seed=0) for _ in range(2)]
    timing = {"seconds", "images_per_s"}
    assert [{k: v for k, v in h.items() if k not in timing} for h in runs[0].history] == \
        [{k: v for k, v in h.items() if k not in timing} for h in runs[1].history]
    assert np.isfinite(runs[0].history[-1]["penalty_group_activation"]) and runs[0].history[-1]["penalty_group_activation"] > 0
    with pytest.raises(ValueError, match="convolution"):
        regularizers.build("cgl", CGL).check_task(2, 4, square_dim=2)


@pytest.mark.parametrize("arch,channels,size", [("alexnet", 3, 32), ("alexnet_b", 3, 32), ("alexnet", 1, 28),
                                                ("alexnet_b", 1, 28), ("alexnet_b", 1, 8)])
def test_alexnet_shapes_and_named_layers(arch, channels, size):
    model = models.build(arch, channels, size, 10, width=0.25).eval()
    assert model(torch.rand(2, channels, size, size)).shape == (2, 10)
    assert model.layer_names == tuple(f"body.conv{i}" for i in range(1, 6))
    feats = dissect.layer_features(model, torch.rand(2, channels, size, size), list(model.layer_names))
    assert [f.shape[1] for f in feats.values()] == [24, 64, 96, 96, 64]  # 96-256-384-384-256 x 0.25
    if size == 32:
        assert [f.shape[-1] for f in feats.values()] == [16, 8, 8, 8, 4]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == (5 if arch == "alexnet_b" else 0)


def test_group_agreement_on_groups_whose_concepts_are_known():
    # layer a: group 0's four filters are one filter copied (one concept), group 1's disagree;
    # layer b: a dead unit ('-') with a tree detector, then two tree detectors
    units = pd.DataFrame({
        "layer": ["a"] * 8 + ["b"] * 4, "unit": list(range(8)) + list(range(4)),
        "concept": ["red"] * 4 + ["sky", "grass", "red", "-"] + ["-", "tree", "tree", "tree"],
        "detector": [True] * 4 + [True, False, False, False] + [False, True, True, False]})
    table = group_agreement(units, groups=2, permutations=500).set_index(["layer", "group"])
    assert table.loc[("a", 0), "agreement"] == 1.0 and table.loc[("a", 0), "concept"] == "red"
    assert table.loc[("a", 0), "detecting"] == 1.0
    assert table.loc[("a", 1), "agreement"] == 0.25
    assert table.loc[("b", 0), "agreement"] == 0.5 and table.loc[("b", 1), "agreement"] == 1.0  # groups of 2
    # chance: layer a's 8 units shuffled into groups of 4; its modal share, by enumeration
    from itertools import combinations
    concepts = np.array(units.concept[:8])
    shares = []
    for chosen in combinations(range(8), 4):
        named = concepts[list(chosen)][concepts[list(chosen)] != "-"]
        shares.append((np.unique(named, return_counts=True)[1].max() if len(named) else 0) / 4)
    assert table.loc[("a", 0), "chance"] == pytest.approx(np.mean(shares), abs=0.03)


DEMO_REGS = {"group_norm": [{"kind": "group_norm", "weight": 5e-3, "groups": 5, "p": 2, "q": 1}],
             "cgl": [{"kind": "group_norm", "weight": 5e-3, "groups": 5, "p": 2, "q": 1},
                     {"kind": "group_activation", "weight": 0.02, "groups": 5}, {"kind": "group_spatial", "weight": 0.005}]}


@pytest.mark.parametrize("size,channels,width", [(8, 1, 0.25), (32, 3, 0.5)])
def test_plain_alexnet_starts_with_data_gradients_above_the_block_norms(size, channels, width):
    """The block norm's gradient per layer has norm weight * sqrt(groups) (each group's w/||w||): a
    closed form. At initialization conv1's data gradient must exceed it, or the penalty wins first."""
    torch.manual_seed(0)
    model = models.build("alexnet", channels, size, 10, width=width)
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    x, y = torch.rand(64, channels, size, size), torch.randint(0, 10, (64,))
    data_grad = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), convs)
    penalty = regularizers.build("group_norm", DEMO_REGS).members[0].penalty(model, x, y, None)
    penalty_grad = torch.autograd.grad(penalty, convs)
    assert [g.norm().item() for g in penalty_grad] == pytest.approx([5e-3 * 5 ** 0.5] * 5, rel=1e-5)
    assert data_grad[0].norm() > 3 * penalty_grad[0].norm()


@pytest.mark.parametrize("reg", ["group_norm", "cgl"])
def test_narrow_plain_alexnet_trains_under_the_block_norm_and_cgl(digits, reg):
    cfg = {"optimizer": "adam", "lr": 1e-3, "epochs": 4, "batch_size": 64, "augment": {"crop_padding": 0, "hflip": False}}
    result = train(digits, "alexnet", regularizers.build(reg, DEMO_REGS), cfg, {"width": 0.125}, seed=1)
    assert result.metrics["test_acc"] > 0.1 + 0.3
