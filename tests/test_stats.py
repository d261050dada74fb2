"""Small-sample statistics: no test from fewer than 3 pairs, the exact sign-flip test against SciPy's
permutation test, seeds needed against a simulation, untrained cells and cost left out of findings."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reglens import analyses, readme, report
from reglens import stats as reglens_stats

CARD = analyses.scorecard()


def frame(values: dict, metric: str, dataset="digits", stage="attack"):
    return pd.DataFrame([{"study": "s", "dataset": dataset, "arch": "a", "reg": reg, "seed": seed, "stage": stage,
                          "metric": metric, "value": v} for reg, seeds in values.items() for seed, v in enumerate(seeds)])


@pytest.mark.parametrize("diff", [[0.3, -0.1, 0.2], [0.5, 0.4, 0.45, 0.52, -0.1], [1.0, 2.0, -0.5, 0.25, 0.75, 1.5, -2.0]])
def test_sign_flip_p_is_scipys_exact_paired_permutation_test(diff):
    d = np.array(diff)
    ref = stats.permutation_test((d, np.zeros_like(d)), lambda x, y, axis: np.mean(x - y, axis=axis),
                                 permutation_type="samples", n_resamples=np.inf, alternative="two-sided", vectorized=True)
    assert reglens_stats.sign_flip_p(d) == pytest.approx(ref.pvalue, abs=1e-12)


@pytest.mark.parametrize("n", [3, 4, 6])
def test_identical_differences_give_the_sign_flip_floor_and_no_t_test(n):
    result = reglens_stats.paired_test(pd.Series([0.7] * n), pd.Series([0.5] * n))
    assert result["test"] == "constant difference" and np.isnan(result["p_value"])
    assert result["p_sign_flip"] == pytest.approx(2.0 ** (1 - n))


def test_two_pairs_with_identical_differences_are_never_tested_or_marked():
    """The shape of the failure: two seeds whose differences are equal once gave p = 1e-16."""
    tidy = pd.concat([frame({"none": [0.30, 0.40], "adversarial": [0.80, 0.90]}, "pgd10_linf_acc@0.1"),
                      frame({"none": [0.95, 0.96], "adversarial": [0.94, 0.95]}, "test_acc", stage="train")])
    card = reglens_stats.scorecard(tidy, CARD)
    assert set(card.n_pairs) == {2} and card.p_value.isna().all() and not card.significant.any()
    assert set(card.test) == {"too few pairs"}
    comparisons = reglens_stats.compare_to_baseline(tidy)
    assert comparisons.p_value.isna().all() and comparisons.p_holm.isna().all()
    assert report.findings(card)[0].endswith("none is tested.")


def test_t_test_from_three_pairs_matches_scipy_and_holm_marks_it(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.3, 5)
    reg = base + 0.4 + rng.normal(0, 0.02, 5)
    card = reglens_stats.scorecard(frame({"none": base, "adversarial": reg}, "pgd10_linf_acc@0.1"), CARD)
    row = card[card.measure == "pgd_acc"].iloc[0]
    assert row.p_value == pytest.approx(stats.ttest_rel(reg, base).pvalue, rel=1e-12) and bool(row.significant)
    lo, hi = reglens_stats.t_interval(row.mean_diff, row.sd_diff, 5)
    ref = stats.t.interval(0.95, 4, loc=np.mean(reg - base), scale=stats.sem(reg - base))
    assert (lo, hi) == pytest.approx(ref, rel=1e-10)
    assert "significant after Holm" in report.headline_sentence(row)
    card[card.measure == "pgd_acc"].to_csv(tmp_path / "headline.csv", index=False)
    text = readme.finding(tmp_path)
    assert text.startswith("s/a: adversarial against none, PGD accuracy at eps 0.1: difference +")
    assert "5 paired seeds" in text and f"[{lo:+.3g}, {hi:+.3g}]" in text and "do not show" in text


def test_cost_is_reported_never_tested():
    rng = np.random.default_rng(1)
    tidy = frame({"none": rng.uniform(10, 11, 5), "adversarial": rng.uniform(40, 41, 5)}, "train_seconds", stage="train")
    card = reglens_stats.scorecard(tidy, CARD)
    assert list(card.test) == ["cost"] and card.p_value.isna().all() and not card.significant.any()
    assert card.mean_diff.iloc[0] > 25  # the difference itself is kept
    tidy = pd.concat([tidy, frame({"none": rng.uniform(100, 110, 5), "adversarial": rng.uniform(20, 30, 5)},
                                  "images_per_s", stage="train")])
    assert set(reglens_stats.compare_to_baseline(tidy).test) == {"cost"}
    assert report.findings(card) == []  # a panel of cost only has no finding


def test_an_untrained_cell_is_left_out_of_the_comparison():
    acc = frame({"none": [0.97, 0.96, 0.98], "cgl": [0.95, 0.12, 0.96]}, "test_acc", stage="train")
    gini = frame({"none": [0.40, 0.41, 0.42], "cgl": [0.50, 0.99, 0.52]}, "saliency_gini", stage="explain")
    tidy = pd.concat([acc, gini])
    failed = reglens_stats.untrained(tidy)
    assert failed.values.tolist() == [["s", "a", "cgl", 1]]  # 0.12 <= 0.1 + 0.05 (10 digit classes)
    card = reglens_stats.scorecard(reglens_stats.without_cells(tidy, failed), CARD)
    gini_row = card[card.measure == "gini"].iloc[0]
    assert gini_row.n_pairs == 2 and gini_row.mean_diff == pytest.approx(0.1) and gini_row.test == "too few pairs"


@pytest.mark.parametrize("effect", [0.8, 1.5, 3.0, 7.1])  # 7.1: SciPy's far tail underflows to NaN
def test_seeds_needed_reaches_the_power_in_simulation_and_one_fewer_does_not(effect):
    alpha, power = 0.01, 0.8
    n = int(reglens_stats.seeds_needed(effect, 1.0, alpha, power))
    rng = np.random.default_rng(0)

    def simulated_power(k):
        d = rng.normal(effect, 1.0, size=(40000, k))
        t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(k))
        return np.mean(2 * stats.t.sf(np.abs(t), k - 1) < alpha)
    assert simulated_power(n) >= power - 0.01
    assert simulated_power(n - 1) < power + 0.01
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)  # the normal approximation, within a few seeds
    assert abs(n - ((z / effect) ** 2 + z ** 2 / 2)) <= 3


def test_when_no_cell_trained_every_comparison_is_an_empty_table_with_its_columns():
    tidy = frame({"none": [0.1, 0.11, 0.1], "l2": [0.1, 0.12, 0.09]}, "test_acc", stage="train")
    trained = reglens_stats.without_cells(tidy, reglens_stats.untrained(tidy))
    assert trained.empty and list(trained.columns) == list(tidy.columns)
    tables = [reglens_stats.scorecard(trained, CARD), reglens_stats.agreement(trained, CARD),
              reglens_stats.compare_to_baseline(trained), reglens_stats.ranking(reglens_stats.summarize(trained)),
              reglens_stats.shortcut_detection(trained)]
    assert all(t.empty and len(t.columns) > 3 for t in tables)
