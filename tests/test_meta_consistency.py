"""MetaQuantus's criteria: the port's loops on hand-computed cases, planted measures whose behaviour
under perturbation is known, and one run on a trained model."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from reglens import analyses, meta_consistency as mc, regularizers, report_trust
from reglens.train import train

RNG = np.random.default_rng(0)


def test_iec_and_iac_by_hand():
    star = np.array([[0.1, 0.9, 0.5, 0.2], [0.3, 0.8, 0.1, 0.4], [0.2, 0.7, 0.9, 0.6]])
    hat = star.copy()
    hat[:, 2] = [0.9, 0.1, 0.5]            # image 2: the order of the three methods reversed
    kept = np.array([True, True, True, False])
    # images 0, 1 keep all three places; image 2 keeps only its middle one: 7 of 9
    assert mc.iec_resilience(star, hat, kept) == pytest.approx(7 / 9)
    worse = star - 0.05
    worse[0, 0] = 0.5
    assert mc.iec_adversary(star, worse, kept, lower_is_better=False) == pytest.approx(8 / 9)
    assert mc.iec_adversary(star, worse, kept, lower_is_better=True) == pytest.approx(1 / 9)
    q, q_hat = RNG.normal(size=30), RNG.normal(size=30) + 0.5
    p = stats.wilcoxon(q, q_hat, zero_method="zsplit").pvalue
    everyone = np.ones(30, bool)
    assert (mc.iac(q, q_hat, everyone, False), mc.iac(q, q_hat, everyone, True)) == pytest.approx((p, 1 - p))
    assert (mc.iac(q, q, everyone, False), mc.iac(q, q, everyone, True)) == (1.0, 0.0)  # nothing moved
    assert np.isnan(mc.iac(q, q_hat, np.zeros(30, bool), False))


def planted(q_star, draw, n_draws=5):
    """criteria() of a measure whose perturbed scores are draw(test, k) -> {method: scores}."""
    n = len(next(iter(q_star.values())))
    runs = {test: [(draw(test, k), np.ones(n, bool)) for k in range(n_draws)] for test in mc.TESTS}
    return mc.criteria(q_star, runs)


def test_planted_measures_rank_as_their_design_says():
    n, methods = 60, ["a", "b", "c"]
    star = {m: RNG.normal(i, 0.3, n) for i, m in enumerate(methods)}
    # blind: ignores every perturbation; perfectly resilient, never reactive
    blind = planted(star, lambda test, k: star)
    assert (blind["iac_nr"], blind["iec_nr"], blind["iac_ar"], blind["iec_ar"], blind["mc"]) == (1, 1, 0, 0, 0.5)
    # ideal: unchanged under small perturbations, every score worse under disruptive ones
    ideal = planted(star, lambda test, k: star if test == "resilience" else {m: v - 5 for m, v in star.items()})
    assert ideal["iac_nr"] == 1 and ideal["iec_nr"] == 1 and ideal["iec_ar"] == 1 and ideal["iac_ar"] > 0.999
    # noise: fresh scores at every draw, whatever the perturbation
    noise = planted(star, lambda test, k: {m: RNG.normal(i, 0.3, n) for i, m in enumerate(methods)})
    assert noise["iac_nr"] < 0.8 and 0.3 < noise["iec_ar"] < 0.7
    assert ideal["mc"] > blind["mc"] and ideal["mc"] > noise["mc"]


def test_the_measures_directions_are_the_scorecards():
    card = {m.name: m for m in analyses.scorecard()}
    assert mc.LOWER_IS_BETTER == {name: card[name].better < 0 for name in mc.MEASURES}


@pytest.fixture(scope="module")
def criteria(digits):
    regs = regularizers.build("none", {"none": []})
    model = train(digits, "simplecnn", regs, {"epochs": 6, "lr": 0.05, "batch_size": 64}, {"width": 0.5},
                  seed=0, device="cpu").model.eval()
    cfg = {**mc.META_CONSISTENCY_DEFAULTS, "methods": ["saliency", "gradcam"], "perturbations": 2}
    x = digits.x_test[:24].float() / 255
    rows = mc.meta_consistency(model, x, cfg, mc.LOWER_IS_BETTER, seed=3)
    again = mc.meta_consistency(model, x, cfg, mc.LOWER_IS_BETTER, seed=3)
    return {(r["measure"], r["perturbation"]): r for r in rows}, rows, again


def test_on_a_trained_model_the_perturbations_do_what_they_should(criteria):
    by, rows, again = criteria
    assert rows == again  # same seed, same numbers
    for measure in mc.MEASURES:
        model = by[measure, "model"]
        assert model["kept_resilience"] > 0.95 and model["kept_adversary"] > 0.5
        assert all(0 <= model[c] <= 1 for c in (*mc.CRITERIA, "mc"))
    # the Gini of maps from the clean input cannot see the input's noise: blind to input perturbations
    gini = by["gini", "input"]
    assert (gini["iac_nr"], gini["iec_nr"], gini["iac_ar"], gini["iec_ar"]) == (1.0, 1.0, 0.0, 0.0)


def test_the_report_averages_the_criteria_over_cells_and_counts_the_undefined(tmp_path):
    rows = [{"study": "s", "dataset": "digits", "arch": "a", "reg": reg, "seed": 0, "measure": "gini",
             "perturbation": "model", "mc": v, "iac_nr": v, "iac_ar": v, "iec_nr": v, "iec_ar": v}
            for reg, v in (("none", 0.6), ("l2", 0.8), ("l1", float("nan")))]
    pd.DataFrame(rows).to_csv(tmp_path / "meta_consistency.csv", index=False)
    table = mc.summary(pd.read_csv(tmp_path / "meta_consistency.csv")).iloc[0]
    assert (table.mc, table.cells, table.undefined) == (pytest.approx(0.7), 3, 1)
    html = report_trust.resilience_part(tmp_path)
    assert "Resilience and reactivity (MetaQuantus)" in html and "0.7" in html
    assert report_trust.resilience_part(tmp_path / "absent") == ""
