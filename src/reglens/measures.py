"""What a measure of the tidy table means for the report: its group in the question, which way is
better, and the range it can take (the scorecard's measures are in their analyses' records,
reglens.analyses). Pure: names and frames in, frames out."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

GROUPS = ["accuracy", "cost", "robustness", "boundary", "calibration", "faithfulness", "sanity", "complexity",
          "concepts", "shortcut"]


@dataclass(frozen=True)
class Measure:
    name: str
    label: str
    group: str
    better: int  # +1: higher is better, -1: lower is better
    pattern: str  # regex over tidy metrics; one per attribution method (a `method` group) is averaged per seed
    text: str
    middle_eps: bool = False  # the pattern matches one metric per eps: keep the middle non-zero eps

    @property
    def per_method(self) -> bool:
        return "(?P<method>" in self.pattern

    def method_of(self, metric: str) -> str | None:
        """The attribution method (or control) a per-method metric of this measure belongs to."""
        match = re.fullmatch(self.pattern, metric)
        return match.group("method") if match and self.per_method else None

    def metrics(self, present) -> list[str]:
        found = sorted(m for m in present if re.fullmatch(self.pattern, m) and not is_control(m))
        if self.middle_eps and found:
            by_eps = sorted((float(m.rsplit("@", 1)[1]), m) for m in found)
            nonzero = [m for eps, m in by_eps if eps > 0]
            found = [nonzero[(len(nonzero) - 1) // 2]] if nonzero else []
        return found


COST = r".*seconds|.*_per_s"  # time and throughput: what a cell cost, reported as cost, never tested


def is_cost(metric: str) -> bool:
    return re.fullmatch(COST, metric) is not None


# attribution "methods" that are not explanations (reglens.attribution implements them): a measure
# scores them like a method, so that a measure that rates one as well as the real methods is caught
CONTROLS = ("random", "sobel", "image", "blur", "constant")


def control_of(metric: str) -> str | None:
    """The negative control a per-method metric belongs to ({control}_gini, roar_score_{control}, ...)."""
    for c in CONTROLS:
        if metric.startswith(f"{c}_") or metric.endswith(f"_{c}") and re.match(r"(roar|kar|road|shortcut)_", metric):
            return c
    return None


def is_control(metric: str) -> bool:
    return control_of(metric) is not None


# measures compared with each other across cells (explainability and robustness): tidy metrics, one
# per attribution method, and scorecard measures that pick one attack budget or average over methods
AGREEMENT_METRICS = [r"roar_score_.+", r"kar_score_.+", r"road_score_.+", r".+_mprt_all_layers", r"method_agreement_mean",
                     r"dissect_unique_concepts", r"dissect_detector_fraction", r"tv_isotropic_random",
                     r"boundary_distance_adversarial", r"shortcut_reliance", r"shortcut_(mass|pointing)_.+",
                     r"net2vec_units_to_reach", r"net2vec_embedding_iou", r"lesion_concentration@1"]
AGREEMENT_MEASURES = ["worst_acc", "pgd_acc", "fgsm_acc", "gini"]

_UNIT = [(r"((roar|kar|road)_score_.*|roar_score|kar_score|road_score|shortcut_reliance)", (-1.0, 1.0)),
         (r"(.*_acc(@.*)?|roar_leakage@.*|leakage_acc|(roar|kar)_(detector|detector_base|recovered_leakage)@.*|ece|.*fraction.*|.*_gini|gini|road_(morf|lerf)_auc_.*|"
          r"actmax_saturation|.*_above_tolerance|.*_undefined|shortcut_(acc_.*|follow|area|mass_.*|pointing_.*)|"
          r"net2vec_.*_iou(@.*)?|dissect_group_.*|mc_.*|embedding_(trustworthiness|knn_acc|representation_knn_acc))", (0.0, 1.0)),
         (r"lesion_.*", (-1.0, 1.0)),
         (r"(.*_mprt_(all_layers|top_layer|independent)|mprt|method_agreement_mean)", (-1.0, 1.0)),
         (r"brier", (0.0, 2.0)),
         (r"(.*_loss(@.*)?|nll|.*_entropy|.*seconds|images_per_s|dissect_.*|unique_concepts|.*_sd|tv_.*|boundary_tv|"
          r"boundary_distance.*|weights_.*|actmax_.*|.*_steps_.*|.*_completeness_.*|roar_runs|roar_unfitted|roar_detector_unfitted|net2vec_.*|embedding_kl_divergence)",
          (0.0, math.inf))]


def bounds(metric: str) -> tuple[float, float]:
    """The range a metric can take ((-inf, inf) when unknown)."""
    for pattern, (lo, hi) in _UNIT:
        if re.fullmatch(pattern, metric):
            return lo, hi
    return -math.inf, math.inf


def seed_values(tidy: pd.DataFrame, measures: list[Measure]) -> pd.DataFrame:
    """One row per cell (study, dataset, arch, reg, seed) and measure: the metric's value,
    or the mean over attribution methods of the per-method metrics (controls excluded)."""
    present = set(tidy.metric)
    frames = []
    for m in measures:
        names = m.metrics(present)
        if not names:
            continue
        d = tidy[tidy.metric.isin(names)]
        d = d.groupby(["study", "dataset", "arch", "reg", "seed"]).value.mean().reset_index()
        frames.append(d.assign(measure=m.name))
    cols = ["study", "dataset", "arch", "reg", "seed", "measure", "value"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def by_name(name: str, measures: list[Measure]) -> Measure:
    return {m.name: m for m in measures}[name]
