"""The leakage controls and the value-grid dither: planted truths (a fill that reveals every removed
pixel, a fill that reveals none, masks whose shape is the class), the dither's definition, and what
it does on scikit-learn's digits."""
import numpy as np
import pytest
import torch

from reglens import leakage, regularizers, roar
from reglens.data import TensorData

NONE = regularizers.build("none", {"none": []})
DETECTOR = {"epochs": 15}


def grid_noise(n, seed, levels=torch.arange(0, 256, 16)):
    """Images of i.i.d. draws from a 16-level grid: removed pixels refilled by fresh draws from the
    same distribution cannot be told from kept ones."""
    g = torch.Generator().manual_seed(seed)
    return levels[torch.randint(0, len(levels), (n, 1, 10, 10), generator=g)].to(torch.uint8), g


def test_dither_is_unbiased_on_the_grid_and_within_one_step():
    grid = torch.tensor([0.0, 16, 32, 48, 255])
    values = torch.tensor([0.0, 3.0, 16.0, 40.5, 100.0, 255.0, 300.0, -4.0]).repeat(20000, 1)
    out = leakage.dither(values, grid, torch.Generator().manual_seed(0))
    assert torch.isin(out, grid).all()
    low = grid[(torch.searchsorted(grid, values.clamp(0, 255), right=True) - 1).clamp(0, len(grid) - 1)]
    step = torch.tensor([16.0, 16, 16, 16, 207, 207, 207, 16])
    assert ((out - values.clamp(0, 255)).abs() <= step).all() and ((out == low) | (out > low)).all()
    np.testing.assert_allclose(out.mean(0).numpy(), values[0].clamp(0, 255).numpy(), atol=1.2)   # E = v
    assert (out[:, 2] == 16).all() and (out[:, 5] == 255).all() and (out[:, 6] == 255).all() and (out[:, 7] == 0).all()
    assert leakage.nearest(torch.tensor([7.0, 9.0, 200.0]), grid).tolist() == [0.0, 16.0, 255.0]


def test_detector_finds_a_flat_fill_and_nothing_where_the_fill_is_the_data():
    x_train, g = grid_noise(600, 0)
    x_test, _ = grid_noise(300, 1)
    removed_train, removed_test = torch.rand(600, 10, 10, generator=g) < 0.4, torch.rand(300, 10, 10, generator=g) < 0.4
    mean, std = [0.47], [0.3]

    def fill(x, removed, value):
        return torch.where(removed.unsqueeze(1), value, x)

    flat = leakage.detect_removed(fill(x_train, removed_train, torch.tensor(120, dtype=torch.uint8)), removed_train,
                                  fill(x_test, removed_test, torch.tensor(120, dtype=torch.uint8)), removed_test,
                                  mean, std, DETECTOR)
    assert flat["detector_status"] == "fitted" and flat["detector_acc"] > 0.97   # 120: between two levels
    assert flat["detector_base"] == pytest.approx(1 - float(removed_test.float().mean()))
    fresh_train, _ = grid_noise(600, 2)
    fresh_test, _ = grid_noise(300, 3)
    none = leakage.detect_removed(fill(x_train, removed_train, fresh_train), removed_train,
                                  fill(x_test, removed_test, fresh_test), removed_test, mean, std, DETECTOR)
    assert none["detector_status"] == "fitted"
    assert abs(none["detector_acc"] - none["detector_base"]) < 0.02 and abs(none["detector_balanced_acc"] - 0.5) < 0.03
    # the cross-fitted training masks come from the detector that did not see those images
    assert flat["recovered_train"].shape == removed_train.shape and flat["recovered_train"].dtype == torch.bool


def test_recovered_masks_carry_the_class_only_when_the_fill_reveals_them():
    """Removal masks whose shape is the class (a bar, vertical or horizontal): a flat fill lets the
    detector recover them and the learner the class; a fill drawn from the data's own distribution
    leaves nothing to recover, and the learner on the recovered masks is at chance."""
    def shaped(n, seed):
        x, g = grid_noise(n, seed)
        y = torch.randint(0, 2, (n,), generator=g)
        removed = torch.zeros(n, 10, 10, dtype=torch.bool)
        removed[y == 0, 1:9, 4:6] = True
        removed[y == 1, 4:6, 1:9] = True
        return x, y, removed

    x_train, y_train, removed_train = shaped(600, 0)
    x_test, y_test, removed_test = shaped(300, 1)
    data = TensorData("bars", x_train, y_train, x_test, y_test, ["v", "h"], [0.47], [0.3])
    cfg, mcfg = {"epochs": 8, "lr": 0.05, "batch_size": 64}, {"width": 0.5}
    acc = {}
    for name, fills in (("flat", (torch.tensor(120, dtype=torch.uint8),) * 2),
                        ("data", (grid_noise(600, 2)[0], grid_noise(300, 3)[0]))):
        filled = [torch.where(r.unsqueeze(1), f, x) for x, r, f in ((x_train, removed_train, fills[0]),
                                                                   (x_test, removed_test, fills[1]))]
        found = leakage.detect_removed(filled[0], removed_train, filled[1], removed_test, data.mean, data.std, DETECTOR)
        masks = leakage.mask_data(data, found["recovered_train"], found["recovered_test"], name)
        acc[name] = roar.retrain(masks, "simplecnn", NONE, cfg, mcfg, [0], "cpu")[0]["test_acc"]
    assert acc["flat"] > 0.95 and acc["data"] < 0.62
    alone = roar.retrain(leakage.mask_data(data, removed_train, removed_test, "true"), "simplecnn", NONE, cfg, mcfg,
                         [0], "cpu")[0]["test_acc"]
    assert alone > 0.95                                             # the masks themselves carry the class


@pytest.fixture(scope="module")
def digits_random_half(digits):
    ranks = {s: roar.compute_ranks(None, getattr(digits, f"x_{s}"), getattr(digits, f"y_{s}"), "random")
             for s in ("train", "test")}
    removed = {s: roar.removal_mask(ranks[s], 0.5, "roar", (8, 8)) for s in ("train", "test")}
    return ranks, removed


def test_dither_keeps_digits_fill_on_their_17_levels_within_one_step(digits, digits_random_half):
    ranks, removed = digits_random_half
    grid = leakage.value_grid(digits.x_train)
    assert len(grid) == 17
    plain, _ = roar.ablated_data(digits, ranks, 0.5, "roar", "noisy_linear", 0.01, 0)
    dithered, _ = roar.ablated_data(digits, ranks, 0.5, "roar", "noisy_linear", 0.01, 0, dither=True)
    for split in ("train", "test"):
        a, b = getattr(plain, f"x_{split}").double(), getattr(dithered, f"x_{split}").double()
        mask = removed[split].unsqueeze(1)
        assert torch.equal(a[~mask], b[~mask])                     # kept pixels untouched
        assert torch.isin(b, grid).all()                           # every value on the data's grid
        assert not torch.isin(a[mask], grid).all()                  # (the plain fill is not)
        assert ((a - b).abs()[mask] <= 16 + 0.5).all()              # one grid step (uint8 rounding of a included)
    mean_fill, _ = roar.ablated_data(digits, ranks, 0.5, "roar", "mean", dither=True)
    assert torch.isin(mean_fill.x_train.double(), grid).all()


def test_dither_removes_off_grid_values_but_the_linear_fill_still_shows(digits, digits_random_half):
    """What the dither does and does not do on digits (random ranks, half the pixels removed): no
    removed pixel is off the grid any more, and the detector finds fewer removed pixels; but the
    noisy-linear fill smooths the sharp stroke edges of 8x8 digits (a removed background pixel
    next to a stroke gets a grey value), so the detector stays far above its majority rate."""
    ranks, removed = digits_random_half
    grid = leakage.value_grid(digits.x_train)
    found = {}
    for dither in (False, True):
        ablated, _ = roar.ablated_data(digits, ranks, 0.5, "roar", "noisy_linear", 0.01, 0, dither)
        off_grid = ~torch.isin(ablated.x_test.double(), grid).squeeze(1)
        found[dither] = leakage.detect_removed(ablated.x_train, removed["train"], ablated.x_test, removed["test"],
                                               digits.mean, digits.std, DETECTOR)
        found[dither]["off_grid_recall"] = float((off_grid & removed["test"]).sum() / removed["test"].sum())
    assert found[False]["off_grid_recall"] > 0.5 and found[True]["off_grid_recall"] == 0
    assert found[True]["detector_acc"] < found[False]["detector_acc"] - 0.02
    assert found[True]["detector_acc"] > found[True]["detector_base"] + 0.3
