"""Mixed precision, channels-last and compile: the same penalties, gradients and training as fp32.

bf16 keeps 8 bits of mantissa (relative rounding 2^-8 = 0.4 %); through a small CNN's forward the
stated tolerance is 3 % relative on each loss term and a gradient cosine of at least 0.99."""
import math

import pytest
import torch

from reglens import data, regularizers
from reglens.data import to_float
from reglens.models import build
from reglens.train import effective_precision, loss_terms, train

BF16_RTOL = 3e-2
GRAD_COSINE = 0.99
FAST = {"epochs": 3, "lr": 0.05, "batch_size": 128}
SPECS = {"adversarial": {"steps": 2}}


def one(kind):
    return regularizers.build(kind, {kind: [{"kind": kind, **SPECS.get(kind, {})}]})


def terms_and_grad(digits, regs, precision, arch="simplecnn"):
    torch.manual_seed(0)
    model = build(arch, digits.channels, digits.size, digits.num_classes, width=0.5,
                  mean=digits.mean, std=digits.std, **regs.model_kwargs())
    regs.init_model(model)
    model.train()
    x = to_float(digits.x_train[:64])
    y = digits.y_train[:64]
    torch.manual_seed(1)  # the same noise, dropout masks and adversarial start in both precisions
    x = regs.transform_batch(model, x, y)
    if regs.needs_input_grad:
        x.requires_grad_(True)
    with regs.perturb_weights(model):
        mark = torch.zeros(len(y), digits.size, digits.size, dtype=torch.bool)
        mark[:, :2, :2] = True  # RRR's annotated region: a corner of every image
        _, data_loss, penalties = loss_terms(model, model, regs, x, y, effective_precision(precision, regs),
                                             annotation=mark if regs.needs_annotation else None)
        loss = data_loss + sum(penalties.values()) if penalties else data_loss
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    values = {"data_loss": data_loss.item(), **{k: v.item() for k, v in penalties.items()}}
    return values, torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("kind", sorted(set(regularizers.KINDS) - {"jacobian_det"}))
def test_bf16_autocast_gives_the_fp32_penalties_and_gradient(digits, kind):
    regs = one(kind)
    ref, ref_grad = terms_and_grad(digits, regs, "fp32")
    got, got_grad = terms_and_grad(digits, regs, "bf16")
    assert got.keys() == ref.keys()
    for name in ref:
        assert got[name] == pytest.approx(ref[name], rel=BF16_RTOL, abs=1e-6), name
    cosine = torch.nn.functional.cosine_similarity(got_grad, ref_grad, dim=0).item()
    assert cosine >= GRAD_COSINE
    if regs.needs_fp32:  # double-backward penalties are computed in fp32: identical numbers
        assert got == ref and torch.equal(got_grad, ref_grad)


def test_bf16_jacobian_determinant_of_the_toy_mlp_matches_fp32():
    points = data.from_blob(data.convert("clusters2d", {}, {"train_per_class": 40, "test_per_class": 10}))
    regs = one("jacobian_det")
    ref, ref_grad = terms_and_grad(points, regs, "fp32", "mlp")
    got, got_grad = terms_and_grad(points, regs, "bf16", "mlp")
    for name in ref:
        assert got[name] == pytest.approx(ref[name], rel=BF16_RTOL, abs=1e-6), name
    assert torch.nn.functional.cosine_similarity(got_grad, ref_grad, dim=0).item() >= GRAD_COSINE


def test_double_backward_and_concept_group_kinds_keep_fp32():
    # (jacobian_det recomputes its square map outside autocast: fp32 whatever the precision)
    for kind in ("jacobian", "input_gradient", "group_activation", "group_spatial"):
        assert effective_precision("bf16", regularizers.build("d+" + kind, {
            "d": [{"kind": "dropout"}], kind: [{"kind": kind}]})) == "fp32"
    assert effective_precision("bf16", one("l2")) == "bf16"


def test_bf16_training_reaches_fp32_accuracy(digits):
    regs = one("l2")
    fp32 = train(digits, "simplecnn", regs, FAST, {"width": 0.5}, seed=0, device="cpu")
    bf16 = train(digits, "simplecnn", regs, {**FAST, "precision": "bf16"}, {"width": 0.5}, seed=0, device="cpu")
    assert bf16.metrics["precision"] == "bf16"
    assert abs(bf16.metrics["test_acc"] - fp32.metrics["test_acc"]) < 0.03
    assert bf16.metrics["test_loss"] == pytest.approx(fp32.metrics["test_loss"], rel=0.1)


def test_channels_last_trains_the_same_model(digits):
    regs = one("l2")
    ref = train(digits, "simplecnn", regs, FAST, {"width": 0.5}, seed=0, device="cpu")
    got = train(digits, "simplecnn", regs, {**FAST, "channels_last": True}, {"width": 0.5}, seed=0, device="cpu")
    assert got.metrics["channels_last"] and not ref.metrics["channels_last"]
    conv = next(m for m in got.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(ref.history, got.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    assert got.metrics["test_loss"] == pytest.approx(ref.metrics["test_loss"], rel=1e-4)


def test_compiled_forward_trains_the_same_model_and_double_backward_stays_eager(digits):
    regs = one("l2")
    cfg = {**FAST, "epochs": 1}
    ref = train(digits, "lenet", regs, cfg, {"width": 0.5}, seed=0, device="cpu")
    got = train(digits, "lenet", regs, {**cfg, "compile": "aot_eager"}, {"width": 0.5}, seed=0, device="cpu")
    assert got.metrics["compiled"] == "aot_eager"
    assert got.history[0]["train_loss"] == pytest.approx(ref.history[0]["train_loss"], rel=1e-4)
    assert got.metrics["test_loss"] == pytest.approx(ref.metrics["test_loss"], rel=1e-4)
    jac = train(digits, "lenet", one("jacobian"), {**cfg, "compile": "aot_eager"}, {"width": 0.5}, seed=0,
                device="cpu")
    assert jac.metrics["compiled"] is False and math.isfinite(jac.metrics["test_loss"])
    with pytest.raises(ValueError, match="train.compile.*valid"):
        train(digits, "lenet", regs, {**cfg, "compile": "tvm"}, {"width": 0.5}, seed=0, device="cpu")


def test_fp16_trains_with_a_loss_scaler_and_resumes_exactly(digits, tmp_path):
    from reglens.stages.train import FileCheckpoint

    regs = one("l2")
    cfg = {**FAST, "precision": "fp16"}
    full = train(digits, "lenet", regs, cfg, {"width": 0.5}, seed=0, device="cpu")
    assert full.metrics["precision"] == "fp16" and math.isfinite(full.metrics["test_loss"])
    checkpoint = FileCheckpoint(tmp_path / "state.pt")

    def stop_after_first(epoch, row):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(digits, "lenet", regs, cfg, {"width": 0.5}, seed=0, device="cpu", checkpoint=checkpoint,
              on_epoch_end=stop_after_first)
    assert "scaler" in torch.load(tmp_path / "state.pt", weights_only=False)
    resumed = train(digits, "lenet", regs, cfg, {"width": 0.5}, seed=0, device="cpu", checkpoint=checkpoint)
    assert resumed.metrics["resumed_from_epoch"] == 1
    assert resumed.metrics["test_loss"] == full.metrics["test_loss"]
