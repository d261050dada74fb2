"""MetaQuantus's meta-evaluation of an explainability measure (Hedström et al., TMLR 2023): how its
scores behave when the model or the input is perturbed a little (the prediction kept: the scores
should not move, *noise resilience*) or a lot (the prediction changed: they should, *adaptive
reactivity*). Per perturbation type (model: every parameter times N(1, std); input: plus U(-noise,
noise), clipped to the pixel range) and test (resilience, adversary), four criteria in [0, 1], higher
better, whose mean is the meta-consistency MC:

- IAC (intra-consistency), per method: the Wilcoxon signed-rank p-value between the images' scores
  before and after a perturbation, over the images kept (prediction unchanged under resilience,
  changed under adversary); 1 - p under adversary;
- IEC (inter-consistency): under resilience, the share of (image, rank) places where the methods'
  order by score is unchanged; under adversary, the share of (method, image) scores that got worse.

A direct port of the reference code's loops (metaquantus.helpers.utils compute_iac_score,
compute_iec_resilience, compute_iec_adversary; MetaEvaluation.run_meta_consistency_analysis), one
iteration of `perturbations` draws. As there, explanations are recomputed with the perturbed model,
and kept from the clean input under input perturbations (the measure sees the perturbed input)."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from reglens import attribution, roar

META_CONSISTENCY_DEFAULTS = {
    "enabled": True, "methods": ["saliency", "integrated_gradients", "guided_backprop", "gradcam"],
    "measures": ["gini", "road_score"], "images": 50, "perturbations": 5,
    "model_std": {"resilience": 0.001, "adversary": 2.0}, "input_noise": {"resilience": 0.001, "adversary": 5.0},
    "road_fraction": 0.25, "road_noise": 0.01, "options": {}}
MEASURES = ("gini", "road_score")   # scorecard measures with a per-image score here
LOWER_IS_BETTER = {"gini": False, "road_score": False}  # as the scorecard's directions (reglens.analyses)
TESTS = ("resilience", "adversary")
CRITERIA = ("iac_nr", "iac_ar", "iec_nr", "iec_ar")


def iac(q: np.ndarray, q_hat: np.ndarray, kept: np.ndarray, adversary: bool) -> float:
    """Wilcoxon signed-rank p (two-sided, zero differences split) of the kept images' scores before
    and after; 1 - p under adversary. NaN with no kept image or no defined score."""
    q, q_hat = np.asarray(q, float)[kept], np.asarray(q_hat, float)[kept]
    ok = np.isfinite(q) & np.isfinite(q_hat)
    if not ok.any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.wilcoxon(q[ok], q_hat[ok], alternative="two-sided", zero_method="zsplit").pvalue)
    if not np.isfinite(p):
        p = 1.0  # every difference zero: nothing moved
    return 1 - p if adversary else p


def iec_resilience(q_star: np.ndarray, q_hat: np.ndarray, kept: np.ndarray) -> float:
    """(methods, images) scores: the share of kept images' rank places holding the same method."""
    r_star, r_hat = np.argsort(q_star, axis=0), np.argsort(q_hat, axis=0)
    same = (r_star == r_hat)[:, kept]
    return float(same.mean()) if same.size else float("nan")


def iec_adversary(q_star: np.ndarray, q_hat: np.ndarray, kept: np.ndarray, lower_is_better: bool) -> float:
    """The share of (method, kept image) scores that are worse after the perturbation."""
    a, b = q_star[:, kept], q_hat[:, kept]
    worse = (a < b) if lower_is_better else (a > b)
    return float(worse.mean()) if worse.size else float("nan")


def criteria(q_star: dict, runs: dict, lower_is_better: bool = False) -> dict:
    """`q_star`: {method: (images,) clean scores}; `runs`: {test: [(perturbed {method: scores}, kept
    (images,) bool), ...]} for 'resilience' and 'adversary'. The four criteria and MC (their mean)."""
    methods = list(q_star)
    star = np.stack([np.asarray(q_star[m], float) for m in methods])
    out = {}
    for test, short in (("resilience", "nr"), ("adversary", "ar")):
        adversary = test == "adversary"
        draws = runs[test]
        intra = [iac(q_star[m], scores[m], kept, adversary) for m in methods for scores, kept in draws]
        inter = []
        for scores, kept in draws:
            hat = np.stack([np.asarray(scores[m], float) for m in methods])
            inter.append(iec_adversary(star, hat, kept, lower_is_better) if adversary
                         else iec_resilience(star, hat, kept))
        out[f"iac_{short}"] = _mean(intra)
        out[f"iec_{short}"] = _mean(inter)
    parts = [out[c] for c in CRITERIA]
    out["mc"] = float(np.mean(parts)) if all(np.isfinite(parts)) else float("nan")
    return out


def _mean(values) -> float:
    v = np.asarray(values, float)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")


def perturbed_model(model: torch.nn.Module, std: float, generator: torch.Generator) -> torch.nn.Module:
    """A copy with every parameter multiplied by N(1, std) noise."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            p.mul_(1 + std * torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype))
    return out.eval()


def perturbed_input(x: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """x plus U(-noise, noise), clipped to the pixel range [0, 1]."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise * (2 * u - 1)).clamp(0, 1)


def per_image(measure: str, model, x: torch.Tensor, y: torch.Tensor, attr: torch.Tensor, fraction: float,
              noise: float, generator: torch.Generator) -> np.ndarray:
    """One score per image: `gini` of |attr|; `road_score`: the probability of y with the least
    relevant `fraction` of pixels imputed minus with the most relevant imputed (ROAD at one fraction,
    per image, noisy linear imputation)."""
    if measure == "gini":
        return attribution.gini(attribution.saliency_map(attr)).cpu().numpy()
    if measure == "road_score":
        ranks = roar.rank_pixels(attr, generator)
        probs = {}
        for order in roar.ORDERS:
            removed = roar.road_mask(ranks.to(x.device), fraction, order, tuple(x.shape[-2:]))
            filled, _ = roar.noisy_linear_impute(x, removed, noise, generator)
            with torch.no_grad():
                probs[order] = F.softmax(model(filled), 1).gather(1, y.view(-1, 1)).squeeze(1)
        return (probs["lerf"] - probs["morf"]).cpu().numpy()
    raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")


def scores(model, x, y, methods, measures, cfg: dict, generator: torch.Generator, x_eval=None) -> dict:
    """{measure: {method: per-image scores}} of `model`'s maps of x, measured on `x_eval` (default x)."""
    x_eval = x if x_eval is None else x_eval
    prepared = attribution.prepare(model)
    out = {m: {} for m in measures}
    for method in methods:
        attr = attribution.attribute(prepared, x, y, method, prepared=True, **cfg["options"]).detach()
        for measure in measures:
            out[measure][method] = per_image(measure, model, x_eval, y, attr, cfg["road_fraction"],
                                             cfg["road_noise"], generator)
    return out


def predictions(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def meta_consistency(model, x: torch.Tensor, cfg: dict, lower_is_better: dict, seed: int = 0) -> list[dict]:
    """The criteria of every measure in cfg['measures'] under model and input perturbations, on images
    x with the model's own predictions as targets (as MetaQuantus). `lower_is_better`: {measure: bool}."""
    model = model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    y = predictions(model, x)
    methods, measures = cfg["methods"], cfg["measures"]
    clean = scores(model, x, y, methods, measures, cfg, gen)
    rows = []
    for kind in ("model", "input"):
        runs = {m: {t: [] for t in TESTS} for m in measures}
        for test in TESTS:
            size = cfg["model_std" if kind == "model" else "input_noise"][test]
            for _ in range(cfg["perturbations"]):
                if kind == "model":
                    other = perturbed_model(model, size, gen)
                    kept_pred = predictions(other, x)
                    got = scores(other, x, y, methods, measures, cfg, gen)
                else:
                    xp = perturbed_input(x, size, gen)
                    kept_pred = predictions(model, xp)
                    got = scores(model, x, y, methods, measures, cfg, gen, x_eval=xp)
                kept = (kept_pred == y) if test == "resilience" else (kept_pred != y)
                for m in measures:
                    runs[m][test].append((got[m], kept.cpu().numpy()))
        for m in measures:
            kept_share = {t: float(np.mean([k.mean() for _, k in runs[m][t]])) for t in TESTS}
            rows.append({"measure": m, "perturbation": kind, **criteria(clean[m], runs[m], lower_is_better[m]),
                         "kept_resilience": kept_share["resilience"], "kept_adversary": kept_share["adversary"]})
    return rows


def summary(stacked: pd.DataFrame) -> pd.DataFrame:
    """Per study, architecture, measure and perturbation type: the criteria's mean over cells, the cells
    counted and those whose MC was undefined (a test that kept no image), left out and counted."""
    if stacked.empty or "mc" not in stacked:
        return pd.DataFrame()
    keys = ["study", "arch", "measure", "perturbation"]
    groups = stacked.groupby(keys)
    out = groups[["mc", *CRITERIA]].mean().reset_index()
    out["cells"] = groups.size().to_numpy()
    out["undefined"] = groups.mc.apply(lambda v: int(v.isna().sum())).to_numpy()
    return out
