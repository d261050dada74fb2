"""Planted shortcuts: the dataset holds exactly the planted marks; a model that can only learn the mark
relies on it (measured); the oracle, random and constant maps score what they must; the detection
table's correlation against SciPy."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sstats

from reglens import data, regularizers, shortcut, stats
from reglens.train import train

NONE = regularizers.build("none", {"none": []})


def noise_blob(n_train=600, n_test=200, side=12, classes=4, seed=0):
    """Pure noise images with random labels: nothing but a planted mark predicts the class."""
    gen = torch.Generator().manual_seed(seed)
    return {"name": "noise", "classes": [str(c) for c in range(classes)], "mean": [0.5], "std": [0.29],
            "x_train": torch.randint(0, 256, (n_train, 1, side, side), generator=gen, dtype=torch.uint8),
            "y_train": torch.randint(0, classes, (n_train,), generator=gen),
            "x_test": torch.randint(0, 256, (n_test, 1, side, side), generator=gen, dtype=torch.uint8),
            "y_test": torch.randint(0, classes, (n_test,), generator=gen)}


@pytest.mark.parametrize("placement", shortcut.PLACEMENTS)
def test_the_planted_dataset_holds_exactly_the_marks(placement):
    base = noise_blob()
    blob = shortcut.plant(base, {"size": 2, "rate": 0.5, "placement": placement, "seed": 3})
    patterns = blob["shortcut"]["patterns"]
    assert len({tuple(p.flatten().tolist()) for p in patterns}) == 4  # one distinct pattern per class
    marked = blob["marked_train"]
    assert abs(float(marked.double().mean()) - 0.5) < 0.06
    assert torch.equal(blob["x_train"][~marked], base["x_train"][~marked])  # unmarked images untouched
    assert torch.equal(blob["x_test"], base["x_test"])  # the clean test split stays clean
    for split, mark_class in (("marked", base["y_test"]), ("flipped", blob["mark_test_flipped"])):
        x, mask = blob[f"x_test_{split}"], blob[f"mask_test_{split}"]
        assert int(mask[0].sum()) == 4
        assert torch.equal(x.permute(0, 2, 3, 1)[~mask], base["x_test"].permute(0, 2, 3, 1)[~mask])  # only the mark changed
        for i in range(0, 200, 37):  # the pixels under the mask are the mark's class's pattern
            assert torch.equal(x[i, :, mask[i]].view(-1), patterns[mark_class[i]].flatten())
    assert (blob["mark_test_flipped"] != base["y_test"]).all()
    if placement == "class":  # each class's mark sits at its own slot
        slots = blob["shortcut"]["slots"]
        rows, cols = blob["mask_test_marked"][0].nonzero()[0]
        assert (int(rows), int(cols)) == tuple(slots[base["y_test"][0]].tolist())
    again = shortcut.plant(base, {"size": 2, "rate": 0.5, "placement": placement, "seed": 3})
    assert all(torch.equal(blob[k], again[k]) for k in ("x_train", "x_test_marked", "x_test_flipped"))


def test_a_model_that_can_only_learn_the_mark_relies_on_it():
    blob = shortcut.plant(noise_blob(), {"size": 3, "rate": 1.0, "placement": "class"})
    result = train(data.from_blob(blob), "simplecnn", NONE, {"optimizer": "adam", "lr": 0.003, "epochs": 8,
                                                             "batch_size": 32}, {"width": 0.5}, seed=0)
    model = result.model.eval()
    with torch.no_grad():
        predict = lambda x: model(data.to_float(x)).argmax(1)  # noqa: E731
        r = shortcut.reliance(predict(blob["x_test"]), predict(blob["x_test_flipped"]), blob["y_test"],
                              blob["mark_test_flipped"])
        marked = float((predict(blob["x_test_marked"]) == blob["y_test"]).double().mean())
    assert marked > 0.95           # the mark alone gives the class
    assert r["acc_flipped"] < 0.05  # a wrong mark takes the prediction with it
    assert r["follow"] > 0.95
    assert 0.1 < r["acc_clean"] < 0.45  # no mark: chance (1/4) on noise
    assert r["reliance"] == pytest.approx(r["acc_clean"] - r["acc_flipped"])


def test_oracle_random_and_constant_maps_score_what_they_must():
    blob = shortcut.plant(noise_blob(n_test=2000, side=16), {"size": 3, "rate": 1.0, "placement": "random"})
    mask = blob["mask_test_marked"].flatten(1)
    area = 9 / 256
    oracle = mask.double()
    assert torch.equal(shortcut.mass_inside(oracle, mask), torch.ones(2000, dtype=torch.float64))
    assert torch.equal(shortcut.pointing(oracle, mask), torch.ones(2000, dtype=torch.float64))
    random = torch.rand(mask.shape, generator=torch.Generator().manual_seed(0))
    mass = shortcut.mass_inside(random, mask).mean()
    hits = shortcut.pointing(random, mask)
    assert float(mass) == pytest.approx(area, abs=0.003)
    se = (area * (1 - area) / 2000) ** 0.5
    assert abs(float(hits.mean()) - area) < 4 * se
    flat = torch.ones_like(random)  # a constant map points nowhere: undefined, not a miss
    assert torch.isnan(shortcut.pointing(flat, mask)).all()
    assert float(shortcut.mass_inside(flat, mask).mean()) == pytest.approx(area)
    assert torch.isnan(shortcut.mass_inside(torch.zeros_like(random), mask)).all()
    tie = torch.zeros(1, 256)
    tie[0, mask[0].nonzero()[0]] = 1
    tie[0, (~mask[0]).nonzero()[0]] = 1
    assert float(shortcut.pointing(tie, mask[:1])) == 0.5  # a tie between one pixel in and one out


def test_marks_that_cannot_tell_the_classes_apart_are_refused():
    with pytest.raises(ValueError, match="size: a 1x1 mark on 1 channel"):
        shortcut.check({"size": 1}, 1, 8, 10)
    with pytest.raises(ValueError, match="slots"):
        shortcut.check({"size": 4, "placement": "class"}, 1, 8, 10)
    with pytest.raises(ValueError, match="below the image side"):
        shortcut.check({"size": 8}, 1, 8, 10)
    shortcut.check({"size": 2, "placement": "class"}, 1, 8, 10)


def test_detection_correlates_each_method_with_reliance_like_scipy():
    rng = np.random.default_rng(0)
    rows = []
    reliance = rng.uniform(0, 0.5, 8)
    for cell, r in enumerate(reliance):
        key = {"study": "s", "dataset": "digits", "arch": "a", "reg": f"r{cell % 4}", "seed": cell // 4, "stage": "shortcut"}
        rows += [{**key, "metric": "shortcut_reliance", "value": r}, {**key, "metric": "shortcut_area", "value": 0.06},
                 {**key, "metric": "shortcut_mass_good", "value": 0.1 + r + rng.normal(0, 0.05)},
                 {**key, "metric": "shortcut_mass_flat", "value": 0.3},
                 {**key, "metric": "shortcut_pointing_good", "value": rng.uniform()}]
    tidy = pd.DataFrame(rows)
    table = stats.shortcut_detection(tidy).set_index(["method", "score"])
    wide = tidy.pivot_table(index=["reg", "seed"], columns="metric", values="value")
    for method, score in (("good", "mass"), ("good", "pointing")):
        expected = sstats.spearmanr(wide.shortcut_reliance, wide[f"shortcut_{score}_{method}"]).statistic
        row = table.loc[(method, score)]
        assert row.rho == pytest.approx(expected) and row.n_cells == 8 and row.chance == pytest.approx(0.06)
        assert row.ci_low < row.rho < row.ci_high
    assert not table.loc[("flat", "mass")].defined and np.isnan(table.loc[("flat", "mass")].rho)  # counted, not averaged
