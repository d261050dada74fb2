"""The training loop: augmentation against a per-image reference, schedule, determinism, resume, NaN."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from reglens import models, regularizers
from reglens.analyses import REGISTRY
from reglens.stages.common import load_model
from reglens.stages.train import FileCheckpoint, run_cell
from reglens.train import NonFiniteLoss, augment, lr_at, merged_train_config, train

FAST = {"epochs": 3, "lr": 0.05, "batch_size": 128}
NONE = regularizers.build("none", {"none": []})


def test_augment_matches_per_image_reference():
    x = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(3)
    out = augment(x, 2, True, gen)
    # replay the same random draws, then crop and flip image by image
    gen = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 5, (6, 1), generator=gen)
    ox = torch.randint(0, 5, (6, 1), generator=gen)
    flip = torch.rand(6, generator=gen) < 0.5
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(6):
        ref = padded[i, :, oy[i, 0]:oy[i, 0] + 5, ox[i, 0]:ox[i, 0] + 7]
        if flip[i]:
            ref = ref[:, :, ::-1]
        np.testing.assert_array_equal(out[i].numpy(), ref)


def test_lr_schedules_closed_form():
    cfg = merged_train_config({"lr": 0.1, "epochs": 10, "schedule": "cosine", "warmup_epochs": 2})
    assert lr_at(cfg, 0) == pytest.approx(0.05) and lr_at(cfg, 1) == pytest.approx(0.1)
    assert lr_at(cfg, 6) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    step = merged_train_config({"lr": 1.0, "schedule": "step", "milestones": [3, 6], "gamma": 0.1})
    assert [lr_at(step, e) for e in (2, 3, 6)] == pytest.approx([1.0, 0.1, 0.01])


def test_same_seed_same_numbers_other_seed_other_numbers(digits):
    regs = regularizers.build("dropout", {"dropout": [{"kind": "dropout", "p": 0.3}]})
    a = train(digits, "simplecnn", regs, FAST, {"width": 0.25}, seed=1, device="cpu")
    b = train(digits, "simplecnn", regs, FAST, {"width": 0.25}, seed=1, device="cpu")
    c = train(digits, "simplecnn", regs, FAST, {"width": 0.25}, seed=2, device="cpu")
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in h]
    assert strip(a.history) == strip(b.history)
    assert a.metrics["test_loss"] == b.metrics["test_loss"]
    assert strip(a.history) != strip(c.history)


def test_resume_after_interruption_matches_uninterrupted(digits, tmp_path):
    regs = regularizers.build("dropout", {"dropout": [{"kind": "dropout", "p": 0.3}]})
    cfg = {**FAST, "epochs": 4}
    full = train(digits, "lenet", regs, cfg, {"width": 0.5}, seed=0, device="cpu")

    def kill_after_second_epoch(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt("preempted")

    ckpt = FileCheckpoint(tmp_path / "train_state.pt")
    with pytest.raises(KeyboardInterrupt):
        train(digits, "lenet", regs, cfg, {"width": 0.5}, seed=0, device="cpu", checkpoint=ckpt,
              on_epoch_end=kill_after_second_epoch)
    assert ckpt.load()["epoch"] == 1
    resumed = train(digits, "lenet", regs, cfg, {"width": 0.5}, seed=0, device="cpu", checkpoint=ckpt)
    assert resumed.metrics["resumed_from_epoch"] == 2
    for key in ("train_acc", "train_loss", "test_acc", "test_loss"):
        assert resumed.metrics[key] == full.metrics[key]
    assert [r["test_loss"] for r in resumed.history] == [r["test_loss"] for r in full.history]


def test_checkpoint_of_another_configuration_is_not_resumed(digits, tmp_path):
    ckpt = FileCheckpoint(tmp_path / "train_state.pt")
    train(digits, "lenet", NONE, {**FAST, "epochs": 1}, {"width": 0.5}, seed=0, device="cpu", checkpoint=ckpt)
    other = train(digits, "lenet", NONE, {**FAST, "epochs": 2, "lr": 0.01}, {"width": 0.5}, seed=0,
                  device="cpu", checkpoint=ckpt)
    assert other.metrics["resumed_from_epoch"] == 0


def test_nan_loss_stops_the_cell_without_a_model(digits_file, tmp_path):
    with pytest.raises(NonFiniteLoss, match="lr"):
        run_cell(digits_file, REGISTRY["train"].under(tmp_path / "cell"), {"arch": "simplecnn", "reg": "none", "seed": 0}, [],
                 {"epochs": 2, "lr": 1e12, "momentum": 0.0}, {"width": 0.25}, device="cpu")
    assert not (tmp_path / "cell" / "model.pt").exists()
    assert not (tmp_path / "cell" / "metrics.json").exists()


def test_run_cell_outputs_agree_with_the_model(digits_file, digits, tmp_path):
    out = tmp_path / "cell"
    metrics = run_cell(digits_file, REGISTRY["train"].under(out), {"arch": "simplecnn", "reg": "none", "seed": 0}, [],
                       {**FAST, "epochs": 2}, {"width": 0.25}, device="cpu")
    model = load_model(out / "model.pt")
    with torch.no_grad():
        pred = model(digits.x_test.float() / 255).argmax(1)
    assert metrics["test_acc"] == pytest.approx((pred == digits.y_test).sum().item() / len(pred), abs=1e-12)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["provenance"]["torch_version"] == torch.__version__ and saved["seed"] == 0
    history = pd.read_csv(out / "history.csv")
    assert list(history.epoch) == [1, 2] and history.test_acc.iloc[-1] == pytest.approx(metrics["test_acc"])
    assert not (out / "train_state.pt").exists() and not (out / ".train_state.pt.integrity").exists()
    assert sorted(p.name for p in out.glob(".*.integrity")) == sorted(f".{p.name}.integrity" for p in out.iterdir()
                                                                      if not p.name.startswith("."))
