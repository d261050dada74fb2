"""Every per-cell analysis as one record (reglens.layout.Analysis): its outputs, the cells it runs on,
how its outputs become tidy rows, its scorecard measures, its figures and its cost. Adding an
analysis is one `register(Analysis(...))` here, one stage function and one rule."""
from __future__ import annotations

import math

from reglens import dissect, robustness, worstcase
from reglens.io import load_torch, read_csv, read_json
from reglens.layout import REGISTRY, Analysis, CellFigure, register
from reglens.measures import CONTROLS, GROUPS, Measure
from reglens.plots import cell as draw

_METHOD = r"(?P<method>[a-z_]+)"


def _csv_figure(name, key, drawer):
    """A figure drawn from one CSV output."""
    return CellFigure(name, (key,), lambda f, p, t: drawer(read_csv(f[key]), p, t))


# ---------------------------------------------------------------- train

def _read_train(files) -> dict:
    """The final metrics, and the generalization gap from history.csv: test minus train loss per
    epoch, at the last epoch and its largest."""
    metrics = read_json(files["metrics"])
    history = read_csv(files["history"])
    gap = history.test_loss - history.train_loss
    keys = ["train_acc", "train_loss", "test_acc", "test_loss", "train_seconds", "images_per_s"]
    return {**{k: metrics[k] for k in keys}, "gap_final": float(gap.iloc[-1]), "gap_max": float(gap.max())}


def _train_cost(c):
    return [("train", c.training(c.study["train"], c.regs.step_cost()), c.precision)]


register(Analysis(
    "train", {"model": "model.pt", "history": "history.csv", "metrics": "metrics.json"}, "metrics", _read_train,
    point_outputs={"regions": "regions.pt"},
    stacked={"history": "history"},
    figures=(_csv_figure("learning_curves.png", "history", draw.learning_curves),
             CellFigure("regions.png", ("regions",), lambda f, p, t: draw.regions(load_torch(f["regions"]), p, t)),
             CellFigure("regions.gif", ("regions",),
                        lambda f, p, t: draw.regions_animation(load_torch(f["regions"]), p, t)),
             CellFigure("filters.png", ("model",), lambda f, p, t: draw.first_filters(
                 robustness.first_layer_filters(load_torch(f["model"], mmap=True)["state_dict"]), p, t))),
    measures=(Measure("test_acc", "test accuracy", "accuracy", +1, r"test_acc", "accuracy on the clean test set"),
              Measure("gap", "generalization gap", "accuracy", -1, r"gap_final",
                      "test minus training loss at the last epoch (lower: less overfitting)"),
              Measure("train_seconds", "training time (s)", "cost", -1, r"train_seconds",
                      "wall-clock seconds to train the cell")),
    cost=_train_cost))


# ---------------------------------------------------------------- attack

def _read_attack(files) -> dict:
    """FGSM and PGD accuracy and loss per eps; per norm and eps the worst case over the attack set and
    each attack's accuracy; PGD against steps and restarts; the gradient-masking flag (1 suspected)."""
    out = {}
    for row in read_csv(files["attacks"]).itertuples():
        name = "fgsm" if row.attack == "fgsm" else f"pgd{row.steps}"
        out[f"{name}_{row.norm}_acc@{row.eps:.4g}"] = row.accuracy
        out[f"{name}_{row.norm}_loss@{row.eps:.4g}"] = row.mean_loss
    for row in read_csv(files["worst_case"]).itertuples():
        name = "worst" if row.attack == "worst" else row.attack.replace("-", "_")
        out[f"{name}_{row.norm}_acc@{row.eps:.4g}"] = row.accuracy
    for row in read_csv(files["iterations"]).itertuples():
        out[f"pgd_{row.norm}_acc_{row.curve}{getattr(row, row.curve)}@{row.eps:.4g}"] = row.accuracy
    checks = read_csv(files["masking"])
    out["gradient_masking_suspected"] = float(worstcase.suspected(checks.to_dict("records")))
    out.update({f"masking_{r.check}": float(r.value) for r in checks.itertuples()})
    return out


def _attack_cost(c):
    rob, wc, it = c.robustness, c.robustness["worst_case"], c.robustness["iterations"]
    steps = len(rob["fgsm_eps"]) + len(rob["pgd_eps"]) * sum(rob["pgd_steps"])
    steps += sum(it["steps"]) + max(it["restarts"]) * it["restart_steps"]
    per_eps = {"apgd-ce": wc["apgd_steps"] * wc["restarts"], "apgd-t": wc["apgd_steps"] * wc["restarts"] * wc["targets"],
               "pgd": wc["apgd_steps"] * wc["restarts"]}
    eps = len(wc["linf_eps"]) + len(wc["l2_eps"])
    steps += eps * sum(per_eps.get(a, 0) for a in wc["attacks"]) + wc["apgd_steps"]  # + the unbounded eps
    queries = eps * wc["square_queries"] * wc["restarts"] * ("square" in wc["attacks"])
    return c.fwd * rob["n_images"] * (c.gradient * steps + queries + len(rob["fgsm_eps"]) + len(rob["pgd_eps"]))


register(Analysis(
    "attack", {"attacks": "robustness/attacks.csv", "worst_case": "robustness/worst_case.csv",
               "iterations": "robustness/iterations.csv", "masking": "robustness/masking.csv"},
    "masking", _read_attack, stacked={"attacks": "attacks", "worst_case": "worst_case", "iterations": "iterations",
                                          "masking": "masking"},
    figures=(_csv_figure("attack_curves.png", "attacks", draw.attack_curves),
             _csv_figure("worst_case_curves.png", "worst_case", draw.worst_case_curves),
             _csv_figure("iteration_curves.png", "iterations", draw.iteration_curves)),
    measures=(Measure("worst_acc", "worst-case accuracy", "robustness", +1, r"worst_linf_acc@[0-9.e-]+",
                      "accuracy under the per-point worst case of the attack set (APGD-CE, APGD-T, Square) at the "
                      "middle L-inf budget", middle_eps=True),
              Measure("pgd_acc", "PGD accuracy", "robustness", +1, r"pgd\d+_linf_acc@[0-9.e-]+",
                      "accuracy under the strongest PGD attack at the middle budget", middle_eps=True),
              Measure("fgsm_acc", "FGSM accuracy", "robustness", +1, r"fgsm_linf_acc@[0-9.e-]+",
                      "accuracy under FGSM at the middle budget", middle_eps=True)),
    cost=_attack_cost))


# ---------------------------------------------------------------- diagnose: boundaries, calibration, weights

def _read_diagnose(files) -> dict:
    """Calibration; per plane kind the mean TV per pixel and its spread over planes, the share of
    planes holding any boundary and the median distance to it over those that hold one; weight norms."""
    summary = read_json(files["calibration"])
    out = {k: summary[k] for k in ("ece", "nll", "brier")}
    for plane, group in read_csv(files["boundary"]).groupby("plane"):
        for col in ("tv_isotropic_per_pixel", "tv_anisotropic_per_pixel"):
            out[f"{col.removesuffix('_per_pixel')}_{plane}"] = group[col].mean()
        out[f"tv_isotropic_{plane}_sd"] = group.tv_isotropic_per_pixel.std()
        out[f"boundary_fraction_{plane}"] = group.has_boundary.astype(bool).mean()
        out[f"boundary_distance_{plane}"] = group.distance.median()  # NaN rows (no boundary) are skipped
        out[f"boundary_planes_{plane}"] = float(len(group))
    table = read_csv(files["weights"])
    out.update({"weights_l2_total": float((table.l2 ** 2).sum() ** 0.5), "weights_l1_total": float(table.l1.sum()),
                "weights_frac_near_zero": float((table.frac_near_zero * table.params).sum() / table.params.sum()),
                "weights_sparsity": float((table.frac_below_relative * table.params).sum() / table.params.sum()),
                "weights_sigma_max_mean": float(table.sigma_max.mean())})
    return out


def _features_figure(files, path, title):
    blob = load_torch(files["features"])
    if blob["maps"]:  # none for 2-D points
        draw.feature_grid(blob, path, title)


def _boundary_figure(files, path, title):
    maps = load_torch(files["boundary_maps"])
    draw.boundary_maps(maps["maps"], read_csv(files["boundary"]), maps["span"], path, title)


def _diagnose_cost(c):
    b = c.robustness["boundary"]
    return c.fwd * (b["images"] * 2 * b["resolution"] ** 2 + c.ds.test_size + c.robustness["pca_images"])


register(Analysis(
    "diagnose", {"boundary": "robustness/boundary.csv", "boundary_maps": "robustness/boundary_maps.pt",
                 "reliability": "robustness/reliability.csv", "weights": "robustness/weights.csv",
                 "weight_hist": "robustness/weight_hist.csv", "features": "robustness/features.pt",
                 "spectrum": "robustness/spectrum.csv", "pca": "robustness/pca.csv",
                 "calibration": "robustness/calibration.json"}, "calibration", _read_diagnose,
    stacked={"weight_hist": "weight_hist"},
    figures=(_csv_figure("weights.png", "weight_hist", draw.weight_histograms),
             CellFigure("features.png", ("features",), _features_figure),
             CellFigure("boundaries.png", ("boundary_maps", "boundary"), _boundary_figure),
             CellFigure("reliability.png", ("reliability", "calibration"),
                        lambda f, p, t: draw.reliability(read_csv(f["reliability"]), read_json(f["calibration"]), p, t)),
             _csv_figure("spectrum.png", "spectrum", draw.spectrum),
             _csv_figure("pca.png", "pca", draw.pca)),
    measures=(Measure("boundary_distance", "distance to boundary", "boundary", +1, r"boundary_distance_adversarial",
                      "mean distance from a test image to the decision boundary along adversarial planes"),
              Measure("boundary_tv", "boundary TV", "boundary", -1, r"tv_isotropic_random",
                      "total variation of the predicted class over random planes per pixel (lower: smoother regions)"),
              Measure("ece", "ECE", "calibration", -1, r"ece", "expected calibration error"),
              Measure("nll", "NLL", "calibration", -1, r"nll", "negative log-likelihood on the test set")),
    cost=_diagnose_cost))


def _read_embedding(files) -> dict:
    """The t-SNE map's trustworthiness and kNN accuracy, the representation's kNN accuracy, the KL."""
    scores = read_json(files["scores"])
    return {f"embedding_{key}": float(scores[key])
            for key in ("trustworthiness", "knn_acc", "representation_knn_acc", "kl_divergence")}


register(Analysis(
    "embedding", {"map": "embedding/tsne.csv", "scores": "embedding/scores.json"}, "scores", _read_embedding,
    inputs="images", switch="embedding",
    figures=(_csv_figure("tsne.png", "map", draw.tsne),),
    cost=lambda c: c.fwd * c.cfg["embedding"]["images"]))


# ---------------------------------------------------------------- explain and activation maximization

def _read_explain(files) -> dict:
    out = {f"{row.method}_{row.metric}": row.value for row in read_csv(files["metrics"]).itertuples()}
    for method, group in read_csv(files["mprt"]).groupby("method"):
        cascade = group[group.variant == "cascading"]
        deepest = cascade[cascade.depth == cascade.depth.max()].spearman   # every layer randomized, per seed
        out[f"{method}_mprt_top_layer"] = cascade[cascade.depth == 1].spearman.mean()
        out[f"{method}_mprt_all_layers"] = deepest.mean()
        out[f"{method}_mprt_all_layers_sd"] = deepest.std()
        out[f"{method}_mprt_seeds"] = float(deepest.notna().sum())
        out[f"{method}_mprt_independent"] = group[group.variant == "independent"].spearman.mean()
        out[f"{method}_mprt_undefined"] = float(group.undefined.sum())
    agreement = read_csv(files["agreement"])
    explanations = agreement[~agreement.method_a.isin(CONTROLS) & ~agreement.method_b.isin(CONTROLS)]
    if len(explanations):
        out["method_agreement_mean"] = explanations.spearman.mean()
        out["method_agreement_undefined"] = float(explanations.undefined.sum())
    return out


def _explain_cost(c):
    e = c.cfg["explain"]
    per_image = c.methods_cost(e["methods"], e["options"])
    mprt = c.methods_cost(e["mprt_methods"], e["options"]) * c.layers
    return c.fwd * (per_image * (e["figure_images"] + e["metric_images"]) + mprt * e["mprt_images"])


register(Analysis(
    "explain", {"maps": "explain/maps.pt", "mprt": "explain/mprt.csv", "agreement": "explain/agreement.csv",
                "metrics": "explain/metrics.csv"}, "metrics", _read_explain, inputs="images",
    stacked={"mprt": "mprt"},
    figures=(CellFigure("maps.png", ("maps",), lambda f, p, t: draw.attribution_grid(load_torch(f["maps"]), p, t)),),
    measures=(Measure("mprt", "similarity to randomized model", "sanity", -1, rf"{_METHOD}_mprt_all_layers",
                      "Spearman correlation of maps before and after randomizing all layers, mean over methods "
                      "(lower: maps depend on what was learned)"),
              Measure("gini", "map Gini", "complexity", +1, rf"{_METHOD}_gini",
                      "Gini index of |attribution| (higher: sparser, simpler maps), mean over methods")),
    cost=_explain_cost))


def _read_actmax(files) -> dict:
    """How far activation maximization got: the reached value as a multiple of the dataset maximum
    (median, least), how many objectives stayed below the data, how saturated the images are, and how
    many units never fire on the data (no ratio)."""
    table = read_csv(files["table"])
    ratio = table.ratio.dropna()
    return {"actmax_ratio_median": ratio.median(), "actmax_ratio_min": ratio.min(),
            "actmax_below_data": float((ratio < 1).sum()), "actmax_saturation": table.saturation.mean(),
            "actmax_dead_units": float(table.ratio.isna().sum())}


register(Analysis(
    "actmax", {"images": "explain/actmax.pt", "table": "explain/actmax.csv"}, "table", _read_actmax,
    inputs="images",
    figures=(CellFigure("actmax.png", ("images",), lambda f, p, t: draw.actmax_grid(load_torch(f["images"]), p, t)),),
    cost=lambda c: c.fwd * c.gradient * c.cfg["actmax"]["steps"] * (c.ds.num_classes + 16)))


NEURON_IG_TOLERANCE = 0.05  # completeness error above which a unit's Integrated Gradients map is flagged


def _read_neurons(files) -> dict:
    """Units mapped, and Integrated Gradients' completeness on them: the median error and the share of
    (unit, image) maps above the tolerance (flagged, not averaged away)."""
    table = read_csv(files["table"])
    ig = table[table.method == "neuron_integrated_gradients"].completeness_error
    out = {"neurons_units": float(len(table.drop_duplicates(["layer", "unit"])))}
    if len(ig):
        out["neurons_ig_completeness_median"] = float(ig.median())
        out["neurons_ig_above_tolerance"] = float((ig > NEURON_IG_TOLERANCE).mean())
    return out


def _neurons_cost(c):
    n = c.cfg["neurons"]
    units = c.cfg["actmax"]["units_per_layer"] * c.named_layers + sum(len(v) for v in c.cfg["actmax"]["units"].values())
    passes = sum(1 if m == "neuron_gradient" else n["ig_steps"] for m in n["methods"])
    return c.fwd * c.gradient * n["images"] * units * passes


register(Analysis(
    "neurons", {"maps": "neurons/maps.pt", "table": "neurons/units.csv"}, "table", _read_neurons,
    inputs="images", switch="neurons",
    figures=(CellFigure("neurons.png", ("maps",), lambda f, p, t: draw.neuron_maps(load_torch(f["maps"]), p, t)),),
    cost=_neurons_cost))


# ---------------------------------------------------------------- ROAR / KAR and ROAD

def _read_roar(files) -> dict:
    """Scores (NaN where no run at a point fitted), the accuracy at the largest fraction, the number of
    retrains that did not fit, and the leakage controls per fraction (the mask alone; the detector of
    removed pixels and the learner on the masks it recovers, per mode)."""
    out = {}
    scores = read_csv(files["scores"])
    for row in scores.itertuples():
        out[f"{row.mode}_score_{row.method}"] = row.score
        out[f"{row.mode}_acc@{row.max_fraction:g}_{row.method}"] = row.acc_at_max_fraction
    out["roar_unfitted"] = float(scores.unfitted.sum())
    out["roar_runs"] = float(scores.runs.sum())
    for row in read_csv(files["leakage"]).itertuples():
        out[f"roar_leakage@{row.fraction:g}_{row.method}"] = row.leakage_acc
    if files["detector"].exists():
        table = read_csv(files["detector"])
        for row in table.itertuples():
            ok = bool(row.fitted)   # a learner that did not fit, or no detector to feed it: NaN, counted
            out[f"{row.mode}_detector@{row.fraction:g}_{row.method}"] = \
                row.detector_acc if row.detector_status == "fitted" else float("nan")
            out[f"{row.mode}_detector_base@{row.fraction:g}_{row.method}"] = row.detector_base
            out[f"{row.mode}_recovered_leakage@{row.fraction:g}_{row.method}"] = \
                row.recovered_leakage_acc if ok else float("nan")
        out["roar_detector_unfitted"] = float((~table.fitted.astype(bool)).sum())
    return out


def _roar_figure(files, path, title):
    draw.roar_curves(read_csv(files["curves"]), read_csv(files["leakage"]), path, title, read_csv(files["detector"]))


register(Analysis(
    "roar", {"curves": "roar/curves.csv", "leakage": "roar/leakage.csv", "detector": "roar/detector.csv",
             "scores": "roar/scores.csv"}, "scores", _read_roar,
    rules=("roar_rank", "roar_retrain", "roar_score"), inputs="images", base_cells_only=True,
    intermediate={"ranks": "roar/{method}/ranks.pt", "retrain": "roar/{method}/retrain.json"},
    stacked={"roar_curves": "curves", "roar_leakage": "leakage", "roar_detector": "detector"},
    figures=(CellFigure("roar_curves.png", ("curves", "leakage", "detector"), _roar_figure),),
    measures=(Measure("roar_score", "ROAR score", "faithfulness", +1, rf"roar_score_{_METHOD}",
                      "ROAR area between random and the method's removal curve, mean over methods"),
              Measure("kar_score", "KAR score", "faithfulness", +1, rf"kar_score_{_METHOD}",
                      "KAR area between the method's keep curve and random, mean over methods")),
    cost=lambda c: c.roar_jobs()))


def _read_road(files) -> dict:
    out = {}
    for row in read_csv(files["scores"]).itertuples():
        out[f"road_score_{row.method}"] = row.score
        out[f"road_morf_auc_{row.method}"] = row.morf_auc
        out[f"road_lerf_auc_{row.method}"] = row.lerf_auc
    return out


def _road_cost(c):
    road = c.cfg["road"]
    rank = c.methods_cost(road["methods"], road["options"])
    return c.fwd * road["images"] * (rank + len(road["methods"]) * 2 * len(road["fractions"]))


register(Analysis(
    "road", {"curves": "road/curves.csv", "scores": "road/scores.csv"}, "scores", _read_road, inputs="images",
    switch="road", stacked={"road_curves": "curves"},
    figures=(_csv_figure("road.png", "curves", draw.road_curves),),
    measures=(Measure("road_score", "ROAD score", "faithfulness", +1, rf"road_score_{_METHOD}",
                      "ROAD area between LeRF and MoRF curves of the cell's own model, mean over methods"),),
    cost=_road_cost))


def _read_meta_consistency(files) -> dict:
    """MC and its four criteria per measure and perturbation type, and the share of images each test kept."""
    out = {}
    for row in read_csv(files["criteria"]).itertuples():
        for key in ("mc", "iac_nr", "iac_ar", "iec_nr", "iec_ar", "kept_resilience", "kept_adversary"):
            name = "mc" if key == "mc" else f"mc_{key}"
            out[f"{name}_{row.measure}_{row.perturbation}"] = getattr(row, key)
    return out


def _meta_consistency_cost(c):
    m = c.cfg["meta_consistency"]
    passes = 1 + 4 * m["perturbations"]  # clean, then (model, input) x (resilience, adversary) draws
    return c.fwd * m["images"] * passes * (c.methods_cost(m["methods"], m["options"]) + 2 * len(m["methods"]))


register(Analysis(
    "meta_consistency", {"criteria": "meta_consistency/criteria.csv"}, "criteria", _read_meta_consistency,
    inputs="images", switch="meta_consistency", stacked={"meta_consistency": "criteria"},
    cost=_meta_consistency_cost))


# ---------------------------------------------------------------- dissection, Net2Vec, lesions

def _read_dissect(files) -> dict:
    """Detector counts, named by how unique concepts are counted (see reglens.dissect.COUNTING)."""
    summary = read_json(files["summary"])
    out = {}
    for scope, counts in [("", summary["total"])] + [(f"@{layer.removeprefix('body.')}", c)
                                                       for layer, c in summary["layers"].items()]:
        for key in ("detectors", "unique_concepts", "unique_concepts_per_category"):
            out[f"dissect_{key}{scope}"] = counts[key]
        out[f"dissect_detector_fraction{scope}"] = counts["detectors"] / counts["units"]
    for category, n in summary["total"]["unique_concepts_by_category"].items():
        out[f"dissect_unique_{category}_concepts"] = n
    out["dissect_interpretability_score"] = dissect.interpretability_score(summary["layers"])
    return out


register(Analysis(
    "dissect", {"units": "dissect/units.csv", "top": "dissect/top.pt", "summary": "dissect/summary.json"},
    "summary", _read_dissect, inputs="images", switch="dissect", stacked={"dissect_units": "units"},
    figures=(CellFigure("dissection.png", ("top",), lambda f, p, t: draw.dissection_units(load_torch(f["top"]), p, t)),),
    measures=(Measure("unique_concepts", "unique concepts", "concepts", +1, r"dissect_unique_concepts",
                      "Network Dissection: distinct concepts with a detector unit"),
              Measure("detector_fraction", "detector fraction", "concepts", +1, r"dissect_detector_fraction",
                      "Network Dissection: fraction of units that detect a concept"),
              Measure("interpretability_score", "interpretability score", "concepts", +1,
                      r"dissect_interpretability_score",
                      "Network Dissection: distinct concepts detected per layer, summed over layers (TUKL)")),
    cost=lambda c: 2 * c.body * c.broden_images))


def _read_net2vec(files) -> dict:
    """Net2Vec per layer and over layers: concepts fitted, mean held-out IoU of the embeddings, of the
    best single units and of marking every pixel, units to reach 90 % (mean over concepts that reach it;
    those that never do are counted), the weights' entropy, and how many concepts the embedding wins."""
    table = read_csv(files["table"])
    out = {}
    for scope, frame in [("", table)] + [(f"@{layer.removeprefix('body.')}", f) for layer, f in table.groupby("layer", sort=False)]:
        out[f"net2vec_concepts{scope}"] = float(len(frame))
        if not len(frame):
            continue
        out[f"net2vec_embedding_iou{scope}"] = frame.embedding_iou.mean()
        out[f"net2vec_best_unit_iou{scope}"] = frame.best_unit_iou.mean()
        out[f"net2vec_units_to_reach{scope}"] = frame.units_to_reach.mean()
        out[f"net2vec_entropy{scope}"] = frame.entropy.mean()
        out[f"net2vec_beats{scope}"] = float(frame.beats_best_unit.astype(bool).sum())
    if len(table):
        out["net2vec_everywhere_iou"] = table.everywhere_iou.mean()
        out["net2vec_unreached"] = float(table.units_to_reach.isna().sum())
    return out


register(Analysis(
    "net2vec", {"table": "concepts/net2vec.csv"}, "table", _read_net2vec, inputs="images", switch="net2vec",
    needs=("dissect",),
    stacked={"net2vec": "table"},   # the body over its images once per layer; the fit is small beside it
    cost=lambda c: c.body * min(c.cfg["net2vec"]["images"], c.broden_images) * c.named_layers))


def _lesion_cost(c):  # importance (one gradient per image), then each ablation's test pass
    lz = c.cfg["lesion"]
    return c.fwd * (c.gradient * lz["train_images"] + (1 + len(lz["ks"]) * (1 + lz["draws"])) * c.ds.test_size)


register(Analysis(
    "lesion", {"curves": "lesion/curves.csv", "summary": "lesion/summary.json"}, "summary",
    lambda files: {k: v for k, v in read_json(files["summary"]).items() if k.startswith("lesion_")},
    inputs="images", switch="lesion", stacked={"lesion_curves": "curves"}, cost=_lesion_cost))


# ---------------------------------------------------------------- planted shortcut

def _read_shortcut(files) -> dict:
    """Reliance on the planted mark; per method the attribution mass inside it and the pointing game,
    and how many images had an undefined value (a map that is zero or constant)."""
    out = {}
    for row in read_csv(files["scores"]).itertuples():
        method = row.method if isinstance(row.method, str) and row.method else None  # blank: a cell-level metric
        out[f"{row.metric}_{method}" if method else row.metric] = row.value
        if method and row.metric == "shortcut_mass":
            out[f"shortcut_undefined_{method}"] = float(row.undefined)
    return out


def _shortcut_cost(c):  # three test splits predicted, the methods on the marked images
    per_image = c.methods_cost(c.cfg["shortcut"]["methods"], c.cfg["explain"]["options"])
    return c.fwd * (3 * c.ds.test_size + per_image * c.cfg["shortcut"]["images"])


register(Analysis(
    "shortcut", {"maps": "shortcut/maps.pt", "scores": "shortcut/scores.csv"}, "scores", _read_shortcut,
    inputs="images", shortcut_only=True, stacked={"shortcut_scores": "scores"},
    figures=(CellFigure("shortcut_maps.png", ("maps",),
                        lambda f, p, t: draw.attribution_grid(load_torch(f["maps"]), p, t + " (marked images)")),),
    measures=(Measure("shortcut_reliance", "shortcut reliance", "shortcut", -1, r"shortcut_reliance",
                      "accuracy on clean minus on mark-flipped test images"),),
    cost=_shortcut_cost))


def scorecard() -> list[Measure]:
    """The scorecard's measures, from every analysis, in the order of the question's groups."""
    found = [m for a in REGISTRY.values() for m in a.measures]
    return sorted(found, key=lambda m: GROUPS.index(m.group) if m.group in GROUPS else math.inf)


def stacked_tables() -> dict[str, tuple[str, str]]:
    """tables/<name>.csv -> (analysis, output key) whose per-cell files it stacks."""
    return {table: (a.name, key) for a in REGISTRY.values() for table, key in a.stacked.items()}
