"""What each measure in the tidy table means for the report: its group in the question, which way
is better, and the range it can take. Pure: names and frames in, frames out."""
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
    pattern: str  # regex over tidy metrics; several matches (one per attribution method) are averaged per seed
    text: str
    middle_eps: bool = False  # the pattern matches one metric per eps: keep the middle non-zero eps

    def metrics(self, present) -> list[str]:
        found = sorted(m for m in present if re.fullmatch(self.pattern, m) and not is_random_method(m))
        if self.middle_eps and found:
            by_eps = sorted((float(m.rsplit("@", 1)[1]), m) for m in found)
            nonzero = [m for eps, m in by_eps if eps > 0]
            found = [nonzero[(len(nonzero) - 1) // 2]] if nonzero else []
        return found


def is_random_method(metric: str) -> bool:
    return metric.endswith("_random") and re.match(r"(roar|kar|road)_", metric) is not None \
        or metric.startswith("random_")


_METHOD = r"[a-z_]+"
SCORECARD = [
    Measure("test_acc", "test accuracy", "accuracy", +1, r"test_acc", "accuracy on the clean test set"),
    Measure("gap", "generalization gap", "accuracy", -1, r"gap_final",
            "test minus training loss at the last epoch (lower: less overfitting)"),
    Measure("train_seconds", "training time (s)", "cost", -1, r"train_seconds", "wall-clock seconds to train the cell"),
    Measure("pgd_acc", "PGD accuracy", "robustness", +1, r"pgd\d+_linf_acc@[0-9.e-]+",
            "accuracy under the strongest PGD attack at the middle budget", middle_eps=True),
    Measure("fgsm_acc", "FGSM accuracy", "robustness", +1, r"fgsm_linf_acc@[0-9.e-]+",
            "accuracy under FGSM at the middle budget", middle_eps=True),
    Measure("boundary_distance", "distance to boundary", "boundary", +1, r"boundary_distance_adversarial",
            "mean distance from a test image to the decision boundary along adversarial planes"),
    Measure("boundary_tv", "boundary TV", "boundary", -1, r"tv_isotropic_random",
            "total variation of the predicted class over random planes per pixel (lower: smoother regions)"),
    Measure("ece", "ECE", "calibration", -1, r"ece", "expected calibration error"),
    Measure("nll", "NLL", "calibration", -1, r"nll", "negative log-likelihood on the test set"),
    Measure("roar_score", "ROAR score", "faithfulness", +1, rf"roar_score_{_METHOD}",
            "ROAR area between random and the method's removal curve, mean over methods"),
    Measure("kar_score", "KAR score", "faithfulness", +1, rf"kar_score_{_METHOD}",
            "KAR area between the method's keep curve and random, mean over methods"),
    Measure("road_score", "ROAD score", "faithfulness", +1, rf"road_score_{_METHOD}",
            "ROAD area between LeRF and MoRF curves of the cell's own model, mean over methods"),
    Measure("mprt", "similarity to randomized model", "sanity", -1, rf"{_METHOD}_mprt_all_layers",
            "Spearman correlation of maps before and after randomizing all layers, mean over methods "
            "(lower: maps depend on what was learned)"),
    Measure("gini", "map Gini", "complexity", +1, rf"{_METHOD}_gini",
            "Gini index of |attribution| (higher: sparser, simpler maps), mean over methods"),
    Measure("unique_concepts", "unique concepts", "concepts", +1, r"dissect_unique_concepts",
            "Network Dissection: distinct concepts with a detector unit"),
    Measure("detector_fraction", "detector fraction", "concepts", +1, r"dissect_detector_fraction",
            "Network Dissection: fraction of units that detect a concept"),
    Measure("shortcut_reliance", "shortcut reliance", "shortcut", -1, r"shortcut_reliance",
            "accuracy on clean minus on mark-flipped test images"),
]

# measures compared with each other across cells (explainability and robustness): tidy metrics, one
# per attribution method, and scorecard measures that pick one attack budget or average over methods
AGREEMENT_METRICS = [r"roar_score_.+", r"kar_score_.+", r"road_score_.+", r".+_mprt_all_layers", r"method_agreement_mean",
                     r"dissect_unique_concepts", r"dissect_detector_fraction", r"tv_isotropic_random",
                     r"boundary_distance_adversarial", r"shortcut_reliance", r"shortcut_(mass|pointing)_.+",
                     r"net2vec_units_to_reach", r"net2vec_embedding_iou", r"lesion_concentration@1"]
AGREEMENT_MEASURES = ["pgd_acc", "fgsm_acc", "gini"]

_UNIT = [(r"((roar|kar|road)_score_.*|roar_score|kar_score|road_score|shortcut_reliance)", (-1.0, 1.0)),
         (r"(.*_acc(@.*)?|roar_leakage@.*|leakage_acc|(roar|kar)_(detector|detector_base|recovered_leakage)@.*|ece|.*fraction.*|.*_gini|gini|road_(morf|lerf)_auc_.*|"
          r"actmax_saturation|.*_above_tolerance|.*_undefined|shortcut_(acc_.*|follow|area|mass_.*|pointing_.*)|"
          r"net2vec_.*_iou(@.*)?|dissect_group_.*)", (0.0, 1.0)),
         (r"lesion_.*", (-1.0, 1.0)),
         (r"(.*_mprt_(all_layers|top_layer|independent)|mprt|method_agreement_mean)", (-1.0, 1.0)),
         (r"brier", (0.0, 2.0)),
         (r"(.*_loss(@.*)?|nll|.*_entropy|.*seconds|images_per_s|dissect_.*|unique_concepts|.*_sd|tv_.*|boundary_tv|"
          r"boundary_distance.*|weights_.*|actmax_.*|.*_steps_.*|.*_completeness_.*|roar_runs|roar_unfitted|roar_detector_unfitted|net2vec_.*)",
          (0.0, math.inf))]


def bounds(metric: str) -> tuple[float, float]:
    """The range a metric can take ((-inf, inf) when unknown)."""
    for pattern, (lo, hi) in _UNIT:
        if re.fullmatch(pattern, metric):
            return lo, hi
    return -math.inf, math.inf


def seed_values(tidy: pd.DataFrame, measures=SCORECARD) -> pd.DataFrame:
    """One row per cell (study, dataset, arch, reg, seed) and scorecard measure: the metric's value,
    or the mean over attribution methods of the per-method metrics (random excluded)."""
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


def by_name(name: str) -> Measure:
    return {m.name: m for m in SCORECARD}[name]
