"""The meta-evaluation on planted cases: ICC against SciPy's one-way ANOVA and planted variance
components; negative controls against a planted truth and a measure that rewards edges; the
controls' maps against SciPy's filters."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage, stats

from reglens import analyses, attribution, measures, metaeval
from reglens import stats as reglens_stats

CARD = analyses.scorecard()
REAL = ("saliency", "integrated_gradients", "gradcam")


def cells(values: dict, metric: str, study="s", arch="a", stage="explain") -> list[dict]:
    return [{"study": study, "dataset": "digits", "arch": arch, "reg": reg, "seed": seed, "stage": stage,
             "metric": metric, "value": float(v)} for reg, seeds in values.items() for seed, v in enumerate(seeds)]


def test_icc_is_scipy_anova_f_through_the_closed_form():
    rng = np.random.default_rng(0)
    groups = [rng.normal(mu, 1.0, n) for mu, n in ((0, 4), (1, 5), (0.5, 3), (2, 4))]
    out = metaeval.icc_oneway(groups)
    f, p = stats.f_oneway(*groups)
    sizes = np.array([len(g) for g in groups])
    k0 = (sizes.sum() - (sizes ** 2).sum() / sizes.sum()) / (len(groups) - 1)
    assert out["icc"] == pytest.approx((f - 1) / (f + k0 - 1)) and out["icc_p"] == pytest.approx(p)
    assert out["icc_low"] < out["icc"] < out["icc_high"] and out["status"] == "ok"
    assert metaeval.icc_oneway([[1.0], [2.0], [3.0]])["status"] == "too few seeds"  # one seed per class
    assert metaeval.icc_oneway([[1.0, 1.0], [1.0, 1.0]])["status"] == "constant"
    assert metaeval.icc_oneway([[1.0, 1.0], [2.0, 2.0]])["icc"] == 1.0  # no seed noise at all


def test_icc_recovers_planted_variance_components():
    rng = np.random.default_rng(1)
    # between-class SD 1, within 1: the true ICC is 1 / (1 + 1) = 0.5
    effects = rng.normal(0, 1, 300)
    out = metaeval.icc_oneway([e + rng.normal(0, 1, 4) for e in effects])
    assert out["icc"] == pytest.approx(0.5, abs=0.08) and out["icc_low"] < 0.5 < out["icc_high"]
    # pure noise: near 0, and over many studies the F test rejects at its level
    noise = [metaeval.icc_oneway([rng.normal(0, 1, 3) for _ in range(5)]) for _ in range(400)]
    assert abs(np.mean([r["icc"] for r in noise])) < 0.1
    assert np.mean([r["icc_p"] < 0.05 for r in noise]) == pytest.approx(0.05, abs=0.035)


def planted(rng, measure_of_method, regs=("none", "up"), seeds=4, study="s"):
    """A tidy table of `{method}_gini` with values from measure_of_method(method, reg, rng)."""
    rows = cells({r: [0.97] * seeds for r in regs}, "test_acc", study=study, stage="train")
    for method in REAL + measures.CONTROLS:
        rows += cells({r: [measure_of_method(method, r, rng) for _ in range(seeds)] for r in regs},
                      f"{method}_gini", study=study)
    return pd.DataFrame(rows)


def meta_of(tidy):
    card = reglens_stats.scorecard(tidy, CARD)
    return metaeval.metaeval(tidy, CARD, card).set_index(["study", "arch", "measure"]), card


def test_a_measure_equal_to_the_planted_truth_passes_every_control():
    # the truth: real methods find the structure (high), controls do not (low); "up" raises it by 0.2
    def truth(method, reg, rng):
        return (0.1 if method in measures.CONTROLS else 0.6) + (0.2 if reg == "up" else 0.0) + rng.normal(0, 0.01)
    meta, card = meta_of(planted(np.random.default_rng(2), truth))
    row = meta.loc[("s", "a", "gini")]
    assert row.failed_controls == "" and row.icc > 0.9 and row.icc_p < 0.05 and row.significant
    assert bool(row.trusted) and row.reason == ""
    marked = metaeval.mark_trust(card, meta.reset_index())
    assert marked[marked.measure == "gini"].trusted.all()


def test_a_measure_that_rewards_edges_is_caught_by_the_sobel_control():
    def edges(method, reg, rng):
        return (0.9 if method == "sobel" else 0.1 if method in measures.CONTROLS else 0.5) \
            + (0.2 if reg == "up" else 0.0) + rng.normal(0, 0.01)
    meta, _ = meta_of(planted(np.random.default_rng(3), edges))
    row = meta.loc[("s", "a", "gini")]
    assert row.failed_controls == "sobel" and not row.trusted and "rates sobel as well as the methods" in row.reason
    checks = metaeval.control_check(metaeval.method_values(planted(np.random.default_rng(3), edges), CARD), CARD)
    sobel = checks[checks.control == "sobel"].iloc[0]
    assert sobel.control_mean == pytest.approx(1.0, abs=0.02) and sobel.methods_median == pytest.approx(0.6, abs=0.02)


def test_a_measure_that_is_pure_noise_gets_an_icc_near_zero_and_is_flagged():
    def noise(method, reg, rng):
        return rng.uniform(0, 1) if method not in measures.CONTROLS else 0.0
    meta, _ = meta_of(planted(np.random.default_rng(4), noise, regs=[f"r{i}" for i in range(12)] + ["none"], seeds=5))
    row = meta.loc[("s", "a", "gini")]
    assert abs(row.icc) < 0.2 and row.icc_p > 0.05 and not row.trusted
    assert "seed noise not exceeded" in row.reason


def test_a_lower_is_better_measure_flags_a_control_that_is_as_low():
    # MPRT: lower similarity to the randomized model is better; a control's map ignores the model (1.0)
    rows = cells({"none": [0.97] * 3, "up": [0.97] * 3}, "test_acc", stage="train")
    for method, value in (("saliency", 0.2), ("gradcam", 0.3), ("sobel", 1.0), ("random", 0.1)):
        rows += cells({"none": [value] * 3, "up": [value + 0.01, value + 0.02, value]}, f"{method}_mprt_all_layers")
    checks = metaeval.control_check(metaeval.method_values(pd.DataFrame(rows), CARD), CARD).set_index("control")
    assert not checks.loc["sobel"].fails and checks.loc["random"].fails  # a fresh random map passes MPRT


def test_one_seed_per_regularizer_leaves_reliability_unknown():
    meta, _ = meta_of(planted(np.random.default_rng(5), lambda m, r, g: g.uniform(), seeds=1))
    row = meta.loc[("s", "a", "gini")]
    assert row.icc_status == "too few seeds" and "reliability unknown" in row.reason and not row.trusted


def test_controls_are_scored_but_never_averaged_into_a_measure():
    tidy = planted(np.random.default_rng(6), lambda m, r, g: 1.0 if m in measures.CONTROLS else 0.5)
    values = measures.seed_values(tidy, CARD)
    assert values[values.measure == "gini"].value.tolist() == pytest.approx([0.5] * len(values[values.measure == "gini"]))
    assert measures.control_of("input_x_gradient_gini") is None and measures.control_of("image_gini") == "image"
    assert measures.control_of("roar_score_blur") == "blur" and measures.control_of("tv_isotropic_random") is None


def test_control_maps_against_scipy():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    y = torch.zeros(2, dtype=torch.long)
    sigma = 0.1 * 16
    blur = attribution.attribute(None, x, y, "blur")
    ref = np.stack([[ndimage.gaussian_filter(c, sigma, mode="nearest", truncate=3.0) for c in img] for img in x.numpy()])
    assert np.allclose(blur.numpy(), ref, atol=1e-10)
    assert torch.equal(attribution.attribute(None, x, y, "image"), x)
    assert torch.equal(attribution.attribute(None, x, y, "constant"), torch.ones_like(x))
    assert torch.isnan(attribution.spearman(attribution.saliency_map(torch.ones_like(x)),
                                            attribution.saliency_map(x))).all()  # a constant map has no ranking


def test_plan_prints_the_seeds_a_pilot_says_each_measure_needs(tmp_path, capsys):
    from reglens import cli

    def truth(method, reg, rng):
        return (0.1 if method in measures.CONTROLS else 0.6) + (0.02 if reg == "up" else 0.0) + rng.normal(0, 0.02)
    tidy = planted(np.random.default_rng(7), truth, seeds=3)
    meta, card = meta_of(tidy)
    meta.reset_index().to_csv(tmp_path / "metaeval.csv", index=False)
    assert cli.main(["plan", "--pilot", str(tmp_path)]) == 0
    gini = card[card.measure == "gini"].iloc[0]
    expected = reglens_stats.seeds_needed(gini.mean_diff, gini.sd_diff, 0.05 / card.p_value.notna().sum())
    line = next(l for l in capsys.readouterr().out.splitlines() if " gini " in l)
    assert f"{int(expected)} seeds" in line and 3 < expected < 1000
    assert cli.main(["plan", "--pilot", str(tmp_path / "nothing")]) == 2  # no metaeval.csv: named, no traceback
