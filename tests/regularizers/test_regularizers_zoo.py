"""Each regularizer of the zoo against its mathematical definition."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

from reglens import config, data, models, regularizers, shortcut
from reglens.regularizers import penalized_weights
from reglens.regularizers.group_norm import group_block_norm
from reglens.regularizers.smoothness import jacobian_frobenius_estimate
from reglens.regularizers.spectral import bound_singular_values
from reglens.train import train


def one(kind, **params):
    return regularizers.build("x", {"x": [{"kind": kind, **params}]})


@pytest.fixture
def net():
    torch.manual_seed(0)
    return models.build("simplecnn", 1, 8, 10, width=0.25).double()


def test_soft_svb_equals_singular_value_identity(net):
    # ||G - I||_F^2 = sum_i (sigma_i^2 - 1)^2 over the min(out, in) singular values of W
    expected = sum(((torch.linalg.svdvals(w.detach().reshape(w.shape[0], -1)) ** 2 - 1) ** 2).sum()
                   for w in penalized_weights(net))
    got = one("soft_svb", weight=0.3).penalties(net, None, None, None)["soft_svb"]
    torch.testing.assert_close(got, 0.3 * expected, rtol=1e-9, atol=0)
    for w in penalized_weights(net):
        nn.init.orthogonal_(w)
    assert one("soft_svb", weight=1.0).penalties(net, None, None, None)["soft_svb"] < 1e-18


@pytest.mark.parametrize("shape", [(20, 12), (6, 30), (8, 3, 3, 3)])
def test_hard_svb_projection_clips_singular_values_keeps_vectors(shape):
    torch.manual_seed(1)
    rows, cols = shape[0], int(np.prod(shape[1:]))
    k = min(rows, cols)
    q1, _ = torch.linalg.qr(torch.randn(rows, k, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(cols, k, dtype=torch.float64))
    planted = torch.linspace(0.3, 2.0, k, dtype=torch.float64)
    w = ((q1 * planted) @ q2.T).reshape(shape)
    eps = 0.1
    m = w.reshape(shape[0], -1)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    assert (s > 1 + eps).any() and (s < 1 / (1 + eps)).any()  # the test exercises both bounds
    out = bound_singular_values(w, eps)
    assert out.shape == w.shape
    s_new = torch.linalg.svdvals(out.reshape(shape[0], -1))
    assert s_new.max() <= 1 + eps + 1e-9 and s_new.min() >= 1 / (1 + eps) - 1e-9
    # the old singular vectors still diagonalize the projected matrix, with the clipped values
    core = u.T @ out.reshape(shape[0], -1) @ vh.T
    torch.testing.assert_close(core, torch.diag(s.clamp(1 / (1 + eps), 1 + eps)), atol=1e-10, rtol=0)


def test_hard_svb_in_training_keeps_every_layer_in_the_band(digits):
    regs = one("hard_svb", eps=0.2, every=1)
    result = train(digits, "lenet", regs, {"epochs": 1, "lr": 0.05, "batch_size": 256}, {"width": 0.5},
                   seed=0, device="cpu")
    for w in penalized_weights(result.model):
        s = torch.linalg.svdvals(w.detach().reshape(w.shape[0], -1).double())
        assert s.max() <= 1.2 + 1e-5 and s.min() >= 1 / 1.2 - 1e-5


def _exact_jacobian_sq(net, x):
    single = lambda xi: net(xi.unsqueeze(0)).squeeze(0)
    jac = vmap(jacrev(single))(x)  # batch, classes, *input
    return jac.flatten(1).pow(2).sum(1)


def test_jacobian_estimate_is_unbiased_for_the_exact_frobenius_norm(net):
    torch.manual_seed(2)
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    exact = _exact_jacobian_sq(net, x.detach())
    logits = net(x)
    draws = torch.stack([jacobian_frobenius_estimate(logits, x, 1, create_graph=False) for _ in range(3000)])
    mean, sem = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert torch.all((mean - exact).abs() < 4 * sem), (mean, exact, sem)
    # the penalty is weight/2 times the batch mean of that estimate
    torch.manual_seed(5)
    pen = one("jacobian", weight=0.4, projections=2).penalties(net, x, None, logits)["jacobian"]
    torch.manual_seed(5)
    ref = 0.5 * 0.4 * jacobian_frobenius_estimate(logits, x, 2).mean()
    torch.testing.assert_close(pen, ref)


def test_input_gradient_penalty_matches_per_example_gradients(net):
    torch.manual_seed(3)
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 5, 7, 9])
    pen = one("input_gradient", weight=0.7).penalties(net, x, y, net(x))["input_gradient"]
    per_example = grad(lambda xi, yi: F.cross_entropy(net(xi.unsqueeze(0)), yi.unsqueeze(0)))
    grads = vmap(per_example)(x.detach(), y)
    torch.testing.assert_close(pen, 0.7 * grads.flatten(1).pow(2).sum(1).mean())


LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
TARGET = torch.tensor([0, 2])


def _softmax_row(row):
    z = [math.exp(v) for v in row]
    return [v / sum(z) for v in z]


def test_confidence_penalty_hand_computed():
    entropies = [-sum(p * math.log(p) for p in _softmax_row(row)) for row in LOGITS.tolist()]
    pen = one("confidence_penalty", beta=0.25).penalties(None, None, TARGET, LOGITS)["confidence_penalty"]
    assert pen.item() == pytest.approx(-0.25 * sum(entropies) / 2, rel=1e-12)


def test_label_smoothing_hand_computed():
    eps, k = 0.2, 3
    losses = []
    for row, y in zip(LOGITS.tolist(), TARGET.tolist()):
        logp = [math.log(p) for p in _softmax_row(row)]
        losses.append(-(1 - eps) * logp[y] - eps / k * sum(logp))
    got = one("label_smoothing", eps=eps).data_loss(LOGITS, TARGET)
    assert got.item() == pytest.approx(sum(losses) / 2, rel=1e-12)


def test_input_noise_is_the_seeded_gaussian():
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(7)
    out = one("input_noise", sigma=0.3, clip=False).transform_batch(None, x, None)
    torch.manual_seed(7)
    torch.testing.assert_close(out, x + 0.3 * torch.randn_like(x))
    torch.manual_seed(7)
    clipped = one("input_noise", sigma=0.3).transform_batch(None, x, None)
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_weight_noise_gradient_at_perturbed_weights_then_restored(net):
    regs = one("weight_noise", sigma=0.05)
    x, y = torch.rand(4, 1, 8, 8, dtype=torch.float64), torch.tensor([1, 2, 3, 4])
    clean = {k: v.detach().clone() for k, v in net.named_parameters()}
    net.train()
    torch.manual_seed(11)
    with regs.perturb_weights(net):
        F.cross_entropy(net(x), y).backward()
    got = {k: v.grad.clone() for k, v in net.named_parameters()}
    for k, v in net.named_parameters():
        assert torch.equal(v.detach(), clean[k])  # restored exactly before any update
    # reference: the gradient of the same loss at W + sigma * noise (same seed, same draw order)
    torch.manual_seed(11)
    noisy = dict(clean)
    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            noisy[f"{name}.weight"] = clean[f"{name}.weight"] + 0.05 * torch.randn_like(clean[f"{name}.weight"])
    params = {k: v.clone().requires_grad_(True) for k, v in noisy.items()}
    F.cross_entropy(functional_call(net, params, (x,)), y).backward()
    for k in got:
        torch.testing.assert_close(got[k], params[k].grad)


def test_group_block_norm_direct_formula():
    w = torch.arange(1.0, 41.0, dtype=torch.float64).reshape(10, 4, 1, 1) * torch.tensor([1, -1, 1, -1]).view(1, 4, 1, 1)
    flat = w.numpy().reshape(10, -1)
    inner = [np.linalg.norm(flat[2 * g:2 * g + 2].ravel(), 2) for g in range(5)]
    assert group_block_norm(w, 5, 2, 1).item() == pytest.approx(sum(inner), rel=1e-12)
    assert group_block_norm(w, 5, 2, 2).item() == pytest.approx(np.linalg.norm(flat.ravel()), rel=1e-12)
    assert group_block_norm(w, 3, 2, 2).item() == pytest.approx(np.linalg.norm(flat.ravel()), rel=1e-12)
    inner_p1 = [np.abs(flat[2 * g:2 * g + 2]).sum() for g in range(5)]
    assert group_block_norm(w, 5, 1, 3).item() == pytest.approx(np.linalg.norm(inner_p1, 3), rel=1e-12)
    defaults = regularizers.KINDS["group_norm"].params
    assert defaults == {"weight": 5e-3, "groups": 5, "p": 2, "q": 1}


def test_group_norm_penalty_sums_conv_layers(net):
    convs = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
    expected = sum(group_block_norm(w, 5, 2, 1) for w in convs)
    got = one("group_norm").penalties(net, None, None, None)["group_norm"]
    torch.testing.assert_close(got, 5e-3 * expected)


def test_adversarial_batch_is_stronger_and_inside_the_ball(net):
    torch.manual_seed(4)
    x, y = torch.rand(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    net.train()
    adv = one("adversarial", eps=0.1, alpha=0.03, steps=5).transform_batch(net, x, y)
    assert net.training and all(p.grad is None for p in net.parameters())
    assert (adv - x).abs().max() <= 0.1 + 1e-12 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(net(adv), y) > F.cross_entropy(net(x), y)


def test_jacobian_determinant_is_refused_with_a_config_error():
    cfg = {"regularizers": {"none": [], "jd": [{"kind": "jacobian_det"}]},
           "studies": {"s": {"dataset": "mnist", "archs": ["lenet"], "regularizers": ["jd"], "seeds": [0]}}}
    with pytest.raises(config.ConfigError, match=r"studies\.s\.regularizers\[0\].*10 x 784.*not square"):
        config.validate(cfg)


@pytest.fixture(scope="module")
def marked_blob():
    # every training digit carries its class's 2x2 mark at the class's own slot: the decoy RRR masks
    return shortcut.plant(data.convert("digits", {}), {"size": 2, "rate": 1.0, "placement": "class", "seed": 0})


def test_right_reasons_penalty_matches_per_example_masked_gradients(net):
    torch.manual_seed(4)
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 5, 7, 9])
    mask = torch.rand(5, 8, 8) < 0.2
    pen = one("rrr", weight=3.0).penalties(net.train(), x, y, net(x), annotation=mask)["rrr"]
    per_example = grad(lambda xi: F.log_softmax(net(xi.unsqueeze(0)), 1).sum())
    grads = vmap(per_example)(x.detach())
    ref = 3.0 * (grads * mask.unsqueeze(1)).pow(2).flatten(1).sum(1).mean()
    torch.testing.assert_close(pen, ref)
    # outside the mask nothing is penalized: an empty mask gives zero
    zero = one("rrr").penalties(net, x, y, net(x), annotation=torch.zeros_like(mask))["rrr"]
    assert float(zero.detach()) == 0.0


def test_right_reasons_is_refused_without_a_planted_mark(digits):
    regs = one("rrr")
    with pytest.raises(ValueError, match=r"annotated region.*shortcut"):
        train(digits, "simplecnn", regs, {"epochs": 1, "batch_size": 256}, {"width": 0.25}, seed=0, device="cpu")
    cfg = {"regularizers": {"rrr": [{"kind": "rrr"}]},
           "studies": {"s": {"dataset": "digits", "archs": ["simplecnn"], "regularizers": ["rrr"], "seeds": [0]}}}
    with pytest.raises(config.ConfigError, match=r"studies\.s\.regularizers\[0\].*plants none"):
        config.validate(cfg)


def test_right_reasons_removes_the_planted_decoy_reliance(marked_blob):
    # the planted truth: every training digit carries its class's decoy, so the plain model follows it
    # (a wrong class's mark costs accuracy); penalizing gradients on the mark removes most of that cost.
    # One seed's reliance varies by about 0.04, so the claim is read on the mean of three paired seeds.
    d = data.from_blob(marked_blob)
    result = {"none": [], "rrr": []}
    for seed in (0, 1, 2):
        for name, variant in {"none": [], "rrr": [{"kind": "rrr", "weight": 10.0}]}.items():
            model = train(d, "simplecnn", regularizers.build(name, {name: variant}),
                          {"optimizer": "adam", "lr": 0.003, "epochs": 6, "batch_size": 64}, {"width": 0.5},
                          seed=seed, device="cpu").model.eval()
            with torch.no_grad():
                pred = [model(data.to_float(marked_blob[k])).argmax(1) for k in ("x_test", "x_test_flipped")]
            result[name].append(shortcut.reliance(*pred, marked_blob["y_test"], marked_blob["mark_test_flipped"]))
    mean = {name: {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]} for name, runs in result.items()}
    assert mean["none"]["reliance"] > 0.08
    assert mean["rrr"]["reliance"] < mean["none"]["reliance"] / 3
    assert mean["rrr"]["acc_flipped"] > mean["none"]["acc_flipped"] + 0.08


@pytest.mark.parametrize("kind", sorted(set(regularizers.KINDS) - {"jacobian_det"}))
def test_every_kind_trains_combined_with_dropout_and_records_its_penalty(digits, marked_blob, kind):
    variants = {"dropout": [{"kind": "dropout", "p": 0.2}], kind: [{"kind": kind}]}
    if kind == "adversarial":
        variants[kind] = [{"kind": kind, "steps": 1}]
    regs = regularizers.build(f"dropout+{kind}", variants)
    if regs.needs_annotation:
        digits = data.from_blob(marked_blob)
    result = train(digits, "simplecnn", regs, {"epochs": 1, "lr": 0.05, "batch_size": 256}, {"width": 0.25},
                   seed=0, device="cpu")
    row = result.history[-1]
    assert math.isfinite(row["train_loss"])
    member = regs.members[1]
    has_penalty = member.has_penalty
    assert (f"penalty_{kind}" in row) == has_penalty
    if has_penalty and kind != "confidence_penalty":
        assert row[f"penalty_{kind}"] > 0


def test_hard_svb_saved_model_is_inside_the_bound_after_the_last_step(digits_file, tmp_path):
    from reglens.stages.common import load_model
    from reglens.analyses import REGISTRY
    from reglens.stages.train import run_cell

    # 1437 images / 256 = 6 steps per epoch, 2 epochs = 12 steps; projections every 5 steps leave two
    # steps after the last one: the final projection must still bound the saved weights
    run_cell(digits_file, REGISTRY["train"].under(tmp_path), {"arch": "lenet", "reg": "hsvb", "seed": 0},
             [{"kind": "hard_svb", "eps": 0.2, "every": 5}], {"epochs": 2, "lr": 0.05, "batch_size": 256},
             {"width": 0.5}, device="cpu")
    for w in penalized_weights(load_model(tmp_path / "model.pt")):
        s = torch.linalg.svdvals(w.detach().reshape(w.shape[0], -1).double())
        assert s.max() <= 1.2 + 1e-5 and s.min() >= 1 / 1.2 - 1e-5
