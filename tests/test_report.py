"""Statistics across seeds against SciPy and hand-computed values; the HTML report."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reglens import aggregate, report
from reglens import stats as reglens_stats


def tidy_frame(values: dict, metric="gini", stage="explain"):
    rows = []
    for reg, seeds in values.items():
        for seed, v in enumerate(seeds):
            rows.append({"study": "s", "dataset": "d", "arch": "a", "reg": reg, "seed": seed, "stage": stage,
                         "metric": metric, "value": v})
    return pd.DataFrame(rows)


def test_summary_mean_and_t_interval_match_scipy():
    vals = [0.9, 0.92, 0.95, 0.91, 0.97]
    s = reglens_stats.summarize(tidy_frame({"none": vals})).iloc[0]
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
    assert s["mean"] == pytest.approx(np.mean(vals)) and s["n"] == 5
    assert s.ci_low == pytest.approx(lo) and s.ci_high == pytest.approx(hi)
    single = reglens_stats.summarize(tidy_frame({"none": [0.5]})).iloc[0]
    assert np.isnan(single.ci_low)


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


def test_report_is_self_contained_and_names_the_significant_change(tmp_path):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.05, 5)
    tidy = pd.concat([tidy_frame({"none": base, "jacobian": base + 0.3 + rng.normal(0, 0.01, 5)}),
                      tidy_frame({"none": [0.9] * 5, "jacobian": [0.88] * 5}, metric="test_acc", stage="train")])
    tables = tmp_path / "tables"
    tables.mkdir()
    summary = reglens_stats.summarize(tidy)
    summary.to_csv(tables / "summary.csv", index=False)
    reglens_stats.compare_to_baseline(tidy).to_csv(tables / "comparisons.csv", index=False)
    reglens_stats.ranking(summary).to_csv(tables / "ranking.csv", index=False)
    pd.DataFrame(columns=aggregate.KEYS + ["stage", "file"]).to_csv(tables / "missing.csv", index=False)
    figures = tmp_path / "figures"
    figures.mkdir()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(figures / "line.png")
    out = tmp_path / "report.html"
    report.build(tables, figures, {"studies": {"s": {}}}, out)
    html = out.read_text()
    assert 'src="data:image/png;base64,' in html and 'src="http' not in html
    assert "jacobian raised gini by +0.3" in html
    assert "None: every configured cell and stage is present." in html


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
    assert "| none/seed0 | saliency | 0.400 ± 0.000 |" in text
    assert "1 of 8 retrains did not fit" in text and "saliency leaves the learner the least (0.400" in text
    assert "do not support a claim" in text
    mean, half, n = readme.mean_ci([0.9, 0.92, 0.95, float("nan")])
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean([0.9, 0.92, 0.95]), scale=stats.sem([0.9, 0.92, 0.95]))
    assert n == 3 and half == pytest.approx((hi - lo) / 2) and mean == pytest.approx(np.mean([0.9, 0.92, 0.95]))
    page = tmp_path / "README.md"
    page.write_text("intro\n<!-- generated:roar -->\nold\n<!-- end:roar -->\nrest\n")
    tables = tmp_path / "tables"
    tables.mkdir()
    curves.to_csv(tables / "roar_curves.csv", index=False)
    leakage.to_csv(tables / "roar_leakage.csv", index=False)
    assert readme.regenerate(page, tables) == ["roar"]
    assert page.read_text() == "intro\n<!-- generated:roar -->\n" + text + "\n<!-- end:roar -->\nrest\n"
    assert readme.regenerate(page, tables) == ["roar"] and page.read_text().count(text) == 1  # idempotent


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
    assert "| none | 2 | 0.003 ± " in text  # mean of the two seeds' medians, with its interval
