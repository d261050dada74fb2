"""Known results of the literature, checked against a finished run: each result is a few paired
contrasts (one regularizer or method against another, over the seeds both ran) with the published
direction, and reglens's mean difference, its 95 % t-interval and a verdict. Frames in, frames out.

A contrast is 'reproduced' when its interval lies on the published side of zero, 'opposite' when it
lies on the other, 'inconclusive' when it holds zero, 'too few seeds' below reglens.stats.MIN_PAIRS
pairs and 'missing' when the run has no such values. A published 'no better than' (expect 0) is
'consistent' unless the interval lies above zero. The numbers are never tuned: what the run gives
is what the report shows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reglens import measures, stats
from reglens.stats import MIN_PAIRS, paired_test, t_interval


@dataclass(frozen=True)
class Contrast:
    label: str
    value: str           # a scorecard measure, or a tidy metric ('{method}' filled from a and b)
    a: tuple[str, str]   # (regularizer, method)
    b: tuple[str, str]
    expect: int          # +1: a above b; -1: a below b; 0: a not above b
    published: str


@dataclass(frozen=True)
class Known:
    name: str
    source: str
    claim: str
    contrasts: tuple[Contrast, ...]
    setting: str         # how the published setting differs from the one reglens runs
    analyses: tuple[str, ...]  # the analyses (reglens.layout.REGISTRY) whose outputs the contrasts read
    methods_in: str | None = None           # the config list the contrasts' methods must be in
    curve: tuple[str, dict] | None = None   # (metric, {regularizer weight: published value})
    collapse_is_the_claim: bool = False     # cells that did not train count (flagged): the claim includes them


RRR_PUBLISHED = {1e-4: 0.555, 1.0: 0.842, 10.0: 0.939, 100.0: 0.960, 1e3: 0.960, 1e4: 0.951, 1e5: 0.890,
                 1e6: 0.519, 1e7: 0.103}


def _vs(label, value, a, b, expect, published):
    return Contrast(label, value, a, b, expect, published)


KNOWN = (
    Known("rrr_decoy", "Ross, Hughes & Doshi-Velez 2017 (Decoy MNIST, the dtak/rrr cross-validation)",
          "decoy-swapped test accuracy rises with the weight of the masked input-gradient penalty, peaks, "
          "and falls to chance (an inverted U)",
          (_vs("weight 10 vs 1e-4", "shortcut_acc_flipped", ("rrr_10", ""), ("rrr_1e-4", ""), +1, "0.939 vs 0.555"),
           _vs("weight 10 vs 1e7", "shortcut_acc_flipped", ("rrr_10", ""), ("rrr_1e7", ""), +1, "0.939 vs 0.103")),
          "8x8 digits with a 2x2 class mark at the class's slot on every training image (Decoy MNIST: "
          "28x28, a 4x4 corner patch whose shade tells the class); a small CNN, not their MLP", ("shortcut",),
          curve=("shortcut_acc_flipped", RRR_PUBLISHED), collapse_is_the_claim=True),
    Known("mprt_cascade", "Adebayo et al. 2018 (sanity checks, cascading randomization)",
          "Guided Backprop's maps stay similar to the trained model's as the layers are randomized; the "
          "gradient's and Grad-CAM's do not",
          (_vs("guided backprop vs gradient", "{method}_mprt_all_layers", ("none", "guided_backprop"),
               ("none", "saliency"), +1, "GBP more similar"),
           _vs("guided backprop vs Grad-CAM", "{method}_mprt_all_layers", ("none", "guided_backprop"),
               ("none", "gradcam"), +1, "GBP more similar")),
          "8x8 digits, a small CNN, the Spearman correlation of the |maps| with every layer randomized "
          "(ImageNet Inception v3 there, also SSIM)",
          ("explain",), "explain.mprt_methods"),
    Known("roar_noise_average", "Hooker et al. 2019 (ROAR)",
          "retrained on images with their top-ranked pixels removed, SmoothGrad-squared and VarGrad "
          "degrade accuracy more than random removal; the gradient and IG barely beat random",
          (_vs("SmoothGrad² vs random", "roar_score_{method}", ("none", "smoothgrad_sq"), ("none", "random"), +1,
               "more degradation"),
           _vs("VarGrad vs random", "roar_score_{method}", ("none", "vargrad"), ("none", "random"), +1,
               "more degradation"),
           _vs("gradient vs random", "roar_score_{method}", ("none", "saliency"), ("none", "random"), 0,
               "not better"),
           _vs("IG vs random", "roar_score_{method}", ("none", "integrated_gradients"), ("none", "random"), 0,
               "not better")),
          "8x8 digits, a SimpleCNN learner retrained once per fraction (ImageNet ResNet-50, 5 retrains there); "
          "the score is the area between random's accuracy curve and the method's", ("roar",), "roar.methods"),
    Known("adversarial_robust", "Madry et al. 2018; Hoffman et al. 2019; Chalasani et al. 2020",
          "adversarial training and the Jacobian penalty raise robust accuracy and the distance to the "
          "decision boundary; adversarial training gives sparser attributions (a higher Gini)",
          (_vs("PGD accuracy: adversarial vs none", "pgd_acc", ("adversarial", ""), ("none", ""), +1, "higher"),
           _vs("PGD accuracy: Jacobian vs none", "pgd_acc", ("jacobian", ""), ("none", ""), +1, "higher"),
           _vs("worst-case accuracy: adversarial vs none", "worst_acc", ("adversarial", ""), ("none", ""), +1, "higher"),
           _vs("worst-case accuracy: Jacobian vs none", "worst_acc", ("jacobian", ""), ("none", ""), +1, "higher"),
           _vs("boundary distance: adversarial vs none", "boundary_distance", ("adversarial", ""), ("none", ""), +1,
               "larger"),
           _vs("boundary distance: Jacobian vs none", "boundary_distance", ("jacobian", ""), ("none", ""), +1,
               "larger"),
           _vs("map Gini: adversarial vs none", "gini", ("adversarial", ""), ("none", ""), +1, "sparser")),
          "8x8 digits, a small CNN, eps 0.1 in [0, 1] pixels (CIFAR-10 / MNIST there)",
          ("attack", "diagnose", "explain")),
)
BY_NAME = {k.name: k for k in KNOWN}

NOT_RUN = (("Shah, Jain & Netrapalli 2021 (DiffROAR on BlockMNIST)",
            "standard models' gradients fail to favour the signal block (DiffROAR <= 0); adversarially trained "
            "models' succeed (> 0)", "BlockMNIST (a signal and a null block) is not a reglens dataset yet"),)


def requirements(known: Known) -> dict:
    """What a study must run for `known`: its regularizers, its methods and its analyses."""
    pairs = [side for c in known.contrasts for side in (c.a, c.b)]
    return {"regularizers": sorted({reg for reg, _ in pairs}), "methods": sorted({m for _, m in pairs if m}),
            "analyses": list(known.analyses), "methods_in": known.methods_in}


def weights(variants: dict, kind: str = "rrr") -> dict:
    """{variant name: weight} of the regularizer variants that are one term of `kind`, and 0 for those
    with no term (`none`: the sweep's zero)."""
    return {name: float(terms[0]["weight"]) if terms else 0.0 for name, terms in variants.items()
            if not terms or (len(terms) == 1 and terms[0]["kind"] == kind and "weight" in terms[0])}


def plan(studies: dict, variants: dict) -> dict:
    """The aggregate job's view of a config's `replicate` ({result: study}): the studies and, for the
    results with a curve, the weights of the regularizer variants ({} when nothing is replicated)."""
    return {"studies": dict(studies), "weights": weights(variants) if studies else {}}


COLUMNS = ["result", "study", "source", "contrast", "published", "expect", "n_seeds", "untrained", "mean_diff",
           "ci_low", "ci_high", "verdict"]


def _series(tidy: pd.DataFrame, card: list, study: str, value: str, reg: str, method: str) -> pd.Series:
    """Per seed (index): the measure `value` of (study, reg), or the tidy metric with its method."""
    mine = tidy[(tidy.study == study) & (tidy.reg == reg)]
    if "{" not in value and any(m.name == value for m in card):
        vals = measures.seed_values(mine, card)
        vals = vals[vals.measure == value]
    else:
        vals = mine[mine.metric == value.format(method=method)]
    return vals.groupby("seed").value.mean()


def verdict(expect: int, n: int, low: float, high: float) -> str:
    if n == 0:
        return "missing"
    if n < MIN_PAIRS or not (np.isfinite(low) and np.isfinite(high)):
        return "too few seeds"
    if expect == 0:
        return "not reproduced" if low > 0 else "consistent"
    if expect * low > 0 and expect * high > 0:
        return "reproduced"
    if expect * low < 0 and expect * high < 0:
        return "opposite"
    return "inconclusive"


def _untrained(failed: pd.DataFrame | None, study: str, regs) -> pd.DataFrame:
    if failed is None or failed.empty:
        return pd.DataFrame(columns=["reg", "seed"])
    return failed[(failed.study == study) & failed.reg.isin(list(regs))]


def replicate(tidy: pd.DataFrame, card: list, studies: dict, failed: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per contrast of each known result in `studies` ({result name: study}): the paired
    difference a - b over shared seeds, its 95 % t-interval and the verdict. `failed`: the cells that
    did not train (reglens.stats.untrained), left out and counted, except where the collapse is part of
    the published claim (a penalty so strong that the model falls to chance): there they count, flagged."""
    rows = []
    for name, study in studies.items():
        known = BY_NAME[name]
        for c in known.contrasts:
            bad = _untrained(failed, study, (c.a[0], c.b[0]))
            used = tidy if known.collapse_is_the_claim else stats.without_cells(tidy, bad)
            a = _series(used, card, study, c.value, *c.a)
            b = _series(used, card, study, c.value, *c.b)
            test = paired_test(a, b)
            low, high = t_interval(test["mean_diff"], test["sd_diff"], test["n_pairs"])
            rows.append({"result": name, "study": study, "source": known.source, "contrast": c.label,
                         "published": c.published, "expect": c.expect, "n_seeds": test["n_pairs"],
                         "untrained": len(bad),
                         "mean_diff": test["mean_diff"], "ci_low": low, "ci_high": high,
                         "verdict": verdict(c.expect, test["n_pairs"], low, high)})
    return pd.DataFrame(rows, columns=COLUMNS)


def curve(tidy: pd.DataFrame, studies: dict, weights: dict, failed: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each known result with a curve: per regularizer of its study with a weight (`weights`:
    {regularizer: weight}), the metric's mean over every seed (the cells that did not train are part of
    the curve and counted), its t-interval and the published value."""
    rows = []
    for name, study in studies.items():
        known = BY_NAME[name]
        if known.curve is None:
            continue
        metric, published = known.curve
        mine = tidy[(tidy.study == study) & (tidy.metric == metric)]
        for reg, group in mine.groupby("reg"):
            if reg not in weights:
                continue
            v = group.value.to_numpy(dtype=float)
            sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
            low, high = t_interval(float(v.mean()), sd, len(v))
            w = weights[reg]
            rows.append({"result": name, "study": study, "reg": reg, "weight": w, "metric": metric,
                         "n_seeds": len(v), "untrained": len(_untrained(failed, study, [reg])),
                         "mean": float(v.mean()), "ci_low": low, "ci_high": high,
                         "published": published.get(w, float("nan"))})
    out = pd.DataFrame(rows, columns=["result", "study", "reg", "weight", "metric", "n_seeds", "untrained", "mean",
                                      "ci_low", "ci_high", "published"])
    return out.sort_values(["result", "weight"]).reset_index(drop=True)


def _interval(mean: float, low: float, high: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]" if np.isfinite(low) else f"{mean:.3g} (no interval)"


def display_tables(rep: pd.DataFrame, curve: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The contrasts (published beside reglens's mean difference [95% t-interval]) and the swept curve."""
    contrasts = pd.DataFrame({
        "result": rep.result, "study": rep.study, "contrast": rep.contrast, "published": rep.published,
        "reglens: mean difference [95% CI]": [_interval(*v) for v in zip(rep.mean_diff, rep.ci_low, rep.ci_high)],
        "seeds": rep.n_seeds, "did not train": rep.untrained, "verdict": rep.verdict})
    swept = pd.DataFrame({
        "result": curve.result, "weight": [f"{w:g}" for w in curve.weight], "published": curve.published,
        "reglens: mean [95% CI]": [_interval(*v) for v in zip(curve["mean"], curve.ci_low, curve.ci_high)],
        "seeds": curve.n_seeds, "did not train": curve.untrained})
    return contrasts, swept
