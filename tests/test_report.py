"""Statistics across seeds against SciPy and hand-computed values; the HTML report."""
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reglens import analyses, layout, measures, report
from reglens import stats as reglens_stats

CARD = analyses.scorecard()


def tidy_frame(values: dict, metric="gini", stage="explain"):
    rows = []
    for reg, seeds in values.items():
        for seed, v in enumerate(seeds):
            rows.append({"study": "s", "dataset": "d", "arch": "a", "reg": reg, "seed": seed, "stage": stage,
                         "metric": metric, "value": v})
    return pd.DataFrame(rows)


def test_summary_bootstrap_interval_matches_scipy_and_stays_in_range():
    vals = [0.9, 0.92, 0.95, 0.91, 0.97, 0.88, 0.93, 0.99]
    s = reglens_stats.summarize(tidy_frame({"none": vals})).iloc[0]
    ref = stats.bootstrap((np.array(vals),), np.mean, method="percentile", n_resamples=20000,
                          confidence_level=0.95, random_state=0).confidence_interval
    sem = stats.sem(vals)
    assert s["mean"] == pytest.approx(np.mean(vals)) and s["n"] == 8 and (s["min"], s["max"]) == (0.88, 0.99)
    assert abs(s.ci_low - ref.low) < 0.1 * sem and abs(s.ci_high - ref.high) < 0.1 * sem  # Monte Carlo error only
    assert reglens_stats.bootstrap_interval(vals) == reglens_stats.bootstrap_interval(vals)  # seeded
    # an accuracy at the top of its range: a t-interval would pass 1, the bootstrap cannot
    top = [1.0, 1.0, 0.98, 1.0, 1.0]
    assert stats.t.interval(0.95, 4, loc=np.mean(top), scale=stats.sem(top))[1] > 1
    lo, hi = reglens_stats.bootstrap_interval(top)
    assert 0.98 <= lo <= hi <= 1.0
    for n in (1, 2):  # fewer than 3 seeds: no interval, the seeds are reported instead
        assert np.isnan(reglens_stats.summarize(tidy_frame({"none": vals[:n]})).iloc[0].ci_low)


def test_every_metric_of_a_run_has_a_known_range():
    for metric, lo, hi in (("test_acc", 0, 1), ("pgd10_linf_acc@0.1", 0, 1), ("saliency_gini", 0, 1),
                           ("saliency_mprt_all_layers", -1, 1), ("roar_score_saliency", -1, 1), ("ece", 0, 1),
                           ("nll", 0, np.inf), ("dissect_unique_concepts", 0, np.inf),
                           ("dissect_detector_fraction", 0, 1), ("road_morf_auc_saliency", 0, 1)):
        assert measures.bounds(metric) == (lo, hi), metric


def test_scorecard_planted_effects_against_scipy():
    rng = np.random.default_rng(3)
    base = rng.normal(0.8, 0.02, 5)
    acc = tidy_frame({"none": base, "up": base + 0.05 + rng.normal(0, 0.002, 5), "flat": base + rng.normal(0, 0.01, 5)},
                     metric="test_acc", stage="train")
    ece_base = rng.uniform(0.02, 0.04, 5)
    ece = tidy_frame({"none": ece_base, "up": ece_base + 0.1, "flat": ece_base}, metric="ece", stage="diagnose")
    # a per-method measure: the scorecard averages the methods, leaving out the random baseline
    gini = pd.concat([tidy_frame({"none": [0.4] * 5, "up": [0.6] * 5, "flat": [0.4] * 5}, metric=f"{m}_gini")
                      for m in ("saliency", "gradcam")]
                     + [tidy_frame({"none": [0.0] * 5, "up": [0.9] * 5, "flat": [0.0] * 5}, metric="random_gini")])
    card = reglens_stats.scorecard(pd.concat([acc, ece, gini]), CARD).set_index(["reg", "measure"])
    up = card.loc[("up", "test_acc")]
    diff = acc[acc.reg == "up"].value.to_numpy() - base
    assert up.mean_diff == pytest.approx(diff.mean()) and up.n_pairs == 5
    assert up.p_value == pytest.approx(stats.ttest_rel(base + diff, base).pvalue)
    assert up.effect == pytest.approx(diff.mean() / acc.value.std(ddof=1)) and up.gain > 0
    assert card.loc[("up", "ece")].gain < 0  # ECE rose: worse, though the difference is positive
    assert card.loc[("up", "gini")].mean_diff == pytest.approx(0.2)  # random_gini left out
    assert np.isnan(card.loc[("flat", "ece")].p_value)  # identical seeds: the t statistic is undefined
    ps = card.p_value.tolist()
    assert card.p_holm.tolist() == pytest.approx(reglens_stats.holm(ps), nan_ok=True)  # one panel: one family
    assert bool(card.loc[("up", "test_acc")].significant) and measures.by_name("ece", CARD).better == -1
    # a study without `none` is measured against its own baseline (the TUKL study's weight decay)
    other = reglens_stats.scorecard(acc[acc.reg != "none"], CARD, baselines={"s": "flat"}).set_index(["reg", "measure"])
    assert set(other.index) == {("up", "test_acc")} and other.loc[("up", "test_acc")].baseline == "flat"
    assert other.loc[("up", "test_acc")].mean_diff == pytest.approx(
        (acc[acc.reg == "up"].value.to_numpy() - acc[acc.reg == "flat"].value.to_numpy()).mean())
    assert reglens_stats.scorecard(acc[acc.reg != "none"], CARD).empty  # no baseline in the panel: no rows


def test_agreement_matches_scipy_and_its_interval_covers_the_population_value():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    rows = [{"study": "s", "dataset": "d", "arch": "a", "reg": f"r{i}", "seed": 0, "stage": st, "metric": m, "value": v}
            for i in range(12) for st, m, v in (("road", "road_score_saliency", x[i]),
                                                ("diagnose", "tv_isotropic_random", -x[i] + 0.3 * rng.normal()),
                                                ("dissect", "dissect_unique_concepts", 3.0))]
    table = reglens_stats.agreement(pd.DataFrame(rows), CARD).set_index(["measure_a", "measure_b"])
    tidy = pd.DataFrame(rows).pivot_table(index="reg", columns="metric", values="value")
    pair = table.loc[("road_score_saliency", "tv_isotropic_random")]
    assert pair.rho == pytest.approx(stats.spearmanr(tidy.road_score_saliency, tidy.tv_isotropic_random).statistic)
    assert pair.n_cells == 12 and pair.ci_high < 0
    assert not table.loc[("dissect_unique_concepts", "road_score_saliency")].defined  # constant: undefined, flagged
    # coverage: bivariate normal with rho = 0.6 has Spearman 6/pi * asin(0.3); about 95% of intervals hold it
    truth = 6 / np.pi * np.arcsin(0.3)
    hits = 0
    for _ in range(300):
        z = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=40)
        lo, hi = reglens_stats.spearman_interval(stats.spearmanr(z[:, 0], z[:, 1]).statistic, 40)
        hits += lo <= truth <= hi
    assert 0.91 <= hits / 300 <= 0.985


def test_holm_hand_computed():
    assert reglens_stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert reglens_stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = reglens_stats.holm([float("nan"), 0.02])
    assert np.isnan(out[0]) and out[1] == pytest.approx(0.02)


def test_paired_comparison_against_scipy_on_planted_effect():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.05, 6)
    up = base + 0.2 + rng.normal(0, 0.01, 6)  # planted: +0.2 on the same seeds
    same = base + np.array([0.01, -0.01, 0.02, -0.02, 0.005, -0.005])  # planted: no change on average
    table = reglens_stats.compare_to_baseline(tidy_frame({"none": base, "up": up, "same": same}))
    row = table.set_index("reg")
    assert row.loc["up", "mean_diff"] == pytest.approx(np.mean(up - base))
    p_up = stats.ttest_rel(up, base).pvalue
    p_same = stats.ttest_rel(same, base).pvalue
    assert row.loc["up", "p_value"] == pytest.approx(p_up)
    assert p_up < p_same  # so Holm multiplies the smaller by 2 and keeps the larger monotone
    assert row.loc["up", "p_holm"] == pytest.approx(min(1, 2 * p_up))
    assert row.loc["same", "p_holm"] == pytest.approx(max(min(1, 2 * p_up), p_same))
    assert row.loc["up", "p_holm"] < 0.001 and row.loc["same", "p_holm"] > 0.05


def test_ranking_orders_by_mean_and_reports_the_accuracy_cost():
    tidy = pd.concat([tidy_frame({"none": [0.3, 0.3], "l2": [0.6, 0.6]}),
                      tidy_frame({"none": [0.9, 0.9], "l2": [0.85, 0.85]}, metric="test_acc", stage="train")])
    r = reglens_stats.ranking(reglens_stats.summarize(tidy))
    best = r[(r.metric == "gini") & (r["rank"] == 1)].iloc[0]
    assert best.reg == "l2" and best.accuracy_vs_none == pytest.approx(-0.05)


def write_tables(tidy, tables):
    tables.mkdir(exist_ok=True)
    summary = reglens_stats.summarize(tidy)
    tidy.to_csv(tables / "metrics.csv", index=False)
    summary.to_csv(tables / "summary.csv", index=False)
    reglens_stats.compare_to_baseline(tidy).to_csv(tables / "comparisons.csv", index=False)
    reglens_stats.ranking(summary).to_csv(tables / "ranking.csv", index=False)
    reglens_stats.scorecard(tidy, CARD).to_csv(tables / "scorecard.csv", index=False)
    reglens_stats.agreement(tidy, CARD).to_csv(tables / "agreement.csv", index=False)
    pd.DataFrame(columns=layout.KEYS + ["stage", "file"]).to_csv(tables / "missing.csv", index=False)


def test_report_is_self_contained_ordered_by_question_and_names_the_significant_change(tmp_path):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.05, 5)
    tidy = pd.concat([tidy_frame({"none": base, "jacobian": base + 0.3 + rng.normal(0, 0.01, 5)}, metric="saliency_gini"),
                      tidy_frame({"none": [0.9] * 5, "jacobian": [0.88] * 5}, metric="test_acc", stage="train")])
    write_tables(tidy, tmp_path / "tables")
    figures = tmp_path / "figures"
    figures.mkdir()
    for name in ("line", "test_acc", "gini", "scorecard", "agreement_s"):
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        fig.savefig(figures / f"{name}.png")
        plt.close(fig)
    out = tmp_path / "report.html"
    report.build(tmp_path / "tables", figures, {"studies": {"s": {}}}, out)
    html = out.read_text()
    assert 'src="data:image/png;base64,' in html and 'src="http' not in html
    assert "jacobian raised map Gini by +0.302 (5 pairs" in html and "(1 of 1 tests; 1 untested: a constant" in html
    assert "None: every configured cell and stage is present." in html
    sections = re.findall(r'<h2 id="(\w+)"', html)
    assert sections[:2] == ["scorecard", "findings"] and sections.index("accuracy") < sections.index("where") \
        < sections.index("what") < sections.index("agreement") < sections.index("other") < sections.index("cells")
    assert html.index('alt="test_acc"') < html.index('id="robustness"') < html.index('alt="gini"') \
        < html.index('id="what"') < html.index('alt="line"')  # figures under their question; unknown ones last
    assert "0.88 [0.88, 0.88]" in html and "fewer than 3 seeds" not in html  # 5 seeds: mean [interval]
    two = tidy[tidy.seed < 2]
    write_tables(two, tmp_path / "tables")
    report.build(tmp_path / "tables", figures, {}, out)
    html = out.read_text()
    assert "rests on fewer than 3 seeds" in html and "0.88 / 0.88" in html  # 2 seeds: both values, no interval


def test_readme_blocks_are_drawn_from_the_tables(tmp_path):
    from reglens import readme

    curves = pd.DataFrame([
        {"study": "s", "arch": "a", "reg": reg, "seed": 0, "method": method, "mode": "roar", "fraction": f,
         "retrain_seed": k, "test_acc": acc, "train_acc": 0.9 if fitted else 0.2,
         "status": "fitted" if fitted else "underfit", "fitted": fitted}
        for reg in ("none", "l2") for method, accs in (("random", (0.95, 0.8)), ("saliency", (0.95, 0.4)))
        for f, acc in zip((0.0, 0.5), accs) for k, fitted in ((0, True), (1, not (reg == "l2" and method == "saliency" and f)))])
    leakage = pd.DataFrame([{"reg": r, "seed": 0, "method": m, "fraction": 0.5, "leakage_acc": 0.1}
                            for r in ("none", "l2") for m in ("random", "saliency")])
    text = readme.roar(curves, leakage)
    assert "| l2/seed0 | saliency | 0.400 (underfit) |" in text  # one fitted run: its value, the other flagged
    assert "| none/seed0 | saliency | 0.400 / 0.400 |" in text  # two retrain seeds: both values, no interval
    assert "1 of 8 retrains did not fit" in text and "saliency leaves the learner the least (0.400" in text
    assert "do not support a claim" in text
    lo, hi = reglens_stats.bootstrap_interval([0.9, 0.92, 0.95])
    assert readme.describe([0.9, 0.92, 0.95, float("nan")]) == f"0.923 [{lo:.3f}, {hi:.3f}]"
    assert readme.describe([0.9, float("nan"), 0.95]) == "0.900 / 0.950"
    page = tmp_path / "README.md"
    page.write_text("intro\n<!-- generated:roar -->\nold\n<!-- end:roar -->\nrest\n")
    tables = tmp_path / "tables"
    tables.mkdir()
    curves.to_csv(tables / "roar_curves.csv", index=False)
    leakage.to_csv(tables / "roar_leakage.csv", index=False)
    assert readme.regenerate(page, tables) == ["roar"]
    assert page.read_text() == "intro\n<!-- generated:roar -->\n" + text + "\n<!-- end:roar -->\nrest\n"
    assert readme.regenerate(page, tables) == ["roar"] and page.read_text().count(text) == 1  # idempotent


def test_readme_roar_block_reports_the_detector_control_and_counts_what_failed():
    from reglens import readme

    curves = pd.DataFrame([{"study": "s", "arch": "a", "reg": "none", "seed": 0, "method": m, "mode": "roar",
                            "fraction": f, "retrain_seed": 0, "test_acc": 0.9 - f, "train_acc": 1.0,
                            "status": "fitted", "fitted": True}
                           for m in ("random", "saliency") for f in (0.0, 0.5, 0.75)])
    leakage = pd.DataFrame([{"reg": "none", "seed": 0, "method": m, "fraction": 0.5, "leakage_acc": a}
                            for m, a in (("random", 0.1), ("saliency", 0.8))])
    detector = pd.DataFrame([
        {"reg": "none", "seed": 0, "method": m, "mode": "roar", "fraction": f, "detector_acc": acc,
         "detector_base": 0.5 if f == 0.5 else 0.75, "detector_status": status, "recovered_leakage_acc": rec,
         "fitted": fitted}
        for m, f, acc, status, rec, fitted in (("random", 0.5, 0.96, "fitted", 0.11, True),
                                               ("saliency", 0.5, 0.9, "fitted", 0.7, True),
                                               ("random", 0.75, 0.97, "fitted", 0.1, False),
                                               ("saliency", 0.75, 0.75, "underfit", float("nan"), False))])
    text = readme.roar(curves, leakage, detector)
    assert "| none/seed0 | random | 0.400 | 0.150 | 0.100 | 0.960 (0.500) | 0.110 |" in text
    assert "| none/seed0 | saliency | 0.400 | 0.150 | 0.800 | 0.900 (0.500) | 0.700 |" in text
    assert "pixel accuracy is 0.900–0.960 against majority rates of 0.500–0.500" in text
    assert "1 of 3 learners on recovered masks that did not fit, 1 of 4 detectors that did not fit" in text
    assert "leakage (masks found, 0.5)" not in readme.roar(curves, leakage)      # no detector table: no column


def test_readme_quality_block_counts_what_did_not_converge():
    from reglens import readme

    rows = []
    for reg, seed, median, worst, above, steps, least, below in (
            ("none", 0, 0.004, 0.14, 0.02, 512, 1.3, 0), ("none", 1, 0.002, 0.009, 0.0, 128, 0.9, 1),
            ("l2", 0, 0.006, 0.01, 0.0, 64, 1.5, 0)):
        for metric, value in (("integrated_gradients_completeness_median", median),
                              ("integrated_gradients_completeness_max", worst),
                              ("integrated_gradients_completeness_above_tolerance", above),
                              ("integrated_gradients_steps_max", steps), ("actmax_ratio_min", least),
                              ("actmax_below_data", below)):
            rows.append({"study": "s", "dataset": "d", "arch": "a", "reg": reg, "seed": seed, "stage": "explain",
                         "metric": metric, "value": value})
    text = readme.quality(pd.DataFrame(rows))
    assert f"median completeness error of {100 * np.median([0.004, 0.002, 0.006]):.2f}%" in text
    assert "worst image in any cell: 14.00%" in text and f"{100 * np.mean([0.02, 0, 0]):.1f}% of images" in text
    assert "1 cells needed 512 steps" in text
    assert "every objective but 1 across 3 cells (least ratio 0.90×)" in text
    assert "| s / a | none | 2 | 0.004 / 0.002 |" in text  # two seeds: each seed's median, in seed order


def test_readme_flags_cells_that_did_not_train_and_leaves_them_out_of_sentences():
    from reglens import readme

    rows = []
    for arch, reg, seed, acc, agreement, chance in (("a", "l2", 0, 0.9, 0.6, 0.4), ("a", "l2", 1, 0.85, 0.5, 0.4),
                                                     ("a", "cgl", 0, 0.1, 0.9, 0.1), ("a", "cgl", 1, 0.8, 0.7, 0.5)):
        for stage, metric, value in (("train", "test_acc", acc), ("dissect", "dissect_group_agreement", agreement),
                                     ("dissect", "dissect_group_agreement_chance", chance)):
            rows.append({"study": "s", "dataset": "digits", "arch": arch, "reg": reg, "seed": seed, "stage": stage,
                         "metric": metric, "value": value})
    tidy = pd.DataFrame(rows)
    assert reglens_stats.untrained(tidy)[["reg", "seed"]].values.tolist() == [["cgl", 0]]  # 0.1 is chance for 10 digits
    text = readme.groups(tidy)
    assert "1 cell(s) did not train" in text and "s/a/cgl/seed0" in text
    assert "cgl 0.700 vs 0.500" in text and "l2 0.550 vs 0.400" in text  # the failed cell's 0.9 left out
    assert "| s / a | cgl | 2 | 0.100 / 0.800 |" in text  # the table still shows it
    assert np.isnan(reglens_stats.spearman_interval(1.0, 6)[0])  # |rho| = 1: no Fisher-z interval
