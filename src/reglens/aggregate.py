"""Gather per-cell outputs into tidy long tables: one row per cell x stage x metric."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reglens import data, dissect
from reglens.io import read_csv, read_json

KEYS = ["study", "dataset", "arch", "reg", "seed"]
TRAIN_METRICS = ["train_acc", "train_loss", "test_acc", "test_loss", "train_seconds", "images_per_s"]

def _train(path: Path) -> dict:
    """The final metrics, and the generalization gap from history.csv: test minus train loss per
    epoch, at the last epoch and its largest."""
    metrics = read_json(path)
    history = read_csv(path.parent / "history.csv")
    gap = history.test_loss - history.train_loss
    return {**{k: metrics[k] for k in TRAIN_METRICS}, "gap_final": float(gap.iloc[-1]), "gap_max": float(gap.max())}


def _attacks(path: Path) -> dict:
    out = {}
    for row in read_csv(path).itertuples():
        name = "fgsm" if row.attack == "fgsm" else f"pgd{row.steps}"
        out[f"{name}_{row.norm}_acc@{row.eps:.4g}"] = row.accuracy
        out[f"{name}_{row.norm}_loss@{row.eps:.4g}"] = row.mean_loss
    return out


def _calibration(path: Path) -> dict:
    summary = read_json(path)
    return {k: summary[k] for k in ("ece", "nll", "brier")}


def _boundary(path: Path) -> dict:
    """Per plane kind: mean TV per pixel and its spread over planes, the share of planes holding any
    boundary, and the median distance to the boundary over those that hold one."""
    table = read_csv(path)
    out = {}
    for plane, group in table.groupby("plane"):
        for col in ("tv_isotropic_per_pixel", "tv_anisotropic_per_pixel"):
            out[f"{col.removesuffix('_per_pixel')}_{plane}"] = group[col].mean()
        out[f"tv_isotropic_{plane}_sd"] = group.tv_isotropic_per_pixel.std()
        out[f"boundary_fraction_{plane}"] = group.has_boundary.astype(bool).mean()
        out[f"boundary_distance_{plane}"] = group.distance.median()  # NaN rows (no boundary) are skipped
        out[f"boundary_planes_{plane}"] = float(len(group))
    return out


def _weights(path: Path) -> dict:
    table = read_csv(path)
    return {"weights_l2_total": float((table.l2 ** 2).sum() ** 0.5), "weights_l1_total": float(table.l1.sum()),
            "weights_frac_near_zero": float((table.frac_near_zero * table.params).sum() / table.params.sum()),
            "weights_sparsity": float((table.frac_below_relative * table.params).sum() / table.params.sum()),
            "weights_sigma_max_mean": float(table.sigma_max.mean())}


def _explain(path: Path) -> dict:
    table = read_csv(path)
    out = {f"{row.method}_{row.metric}": row.value for row in table.itertuples()}
    folder = path.parent
    mprt = read_csv(folder / "mprt.csv")
    for method, group in mprt.groupby("method"):
        cascade = group[group.variant == "cascading"]
        deepest = cascade[cascade.depth == cascade.depth.max()].spearman   # every layer randomized, per seed
        out[f"{method}_mprt_top_layer"] = cascade[cascade.depth == 1].spearman.mean()
        out[f"{method}_mprt_all_layers"] = deepest.mean()
        out[f"{method}_mprt_all_layers_sd"] = deepest.std()
        out[f"{method}_mprt_seeds"] = float(deepest.notna().sum())
        out[f"{method}_mprt_independent"] = group[group.variant == "independent"].spearman.mean()
        out[f"{method}_mprt_undefined"] = float(group.undefined.sum())
    agreement = read_csv(folder / "agreement.csv")
    explanations = agreement[~agreement.method_a.isin(["random", "sobel"]) & ~agreement.method_b.isin(["random", "sobel"])]
    if len(explanations):
        out["method_agreement_mean"] = explanations.spearman.mean()
        out["method_agreement_undefined"] = float(explanations.undefined.sum())
    return out


def _actmax(path: Path) -> dict:
    """How far activation maximization got: the reached value as a multiple of the dataset maximum
    (median, least), how many objectives stayed below the data, how saturated the images are, and how
    many units never fire on the data (no ratio)."""
    table = read_csv(path)
    ratio = table.ratio.dropna()
    return {"actmax_ratio_median": ratio.median(), "actmax_ratio_min": ratio.min(),
            "actmax_below_data": float((ratio < 1).sum()), "actmax_saturation": table.saturation.mean(),
            "actmax_dead_units": float(table.ratio.isna().sum())}


def _roar(path: Path) -> dict:
    """Scores (NaN where no run at a point fitted), the accuracy at the largest fraction, the number of
    retrains that did not fit, and the leakage controls per fraction (the mask alone; the detector of
    removed pixels and the learner on the masks it recovers, per mode)."""
    out = {}
    scores = read_csv(path)
    for row in scores.itertuples():
        out[f"{row.mode}_score_{row.method}"] = row.score
        out[f"{row.mode}_acc@{row.max_fraction:g}_{row.method}"] = row.acc_at_max_fraction
    out["roar_unfitted"] = float(scores.unfitted.sum())
    out["roar_runs"] = float(scores.runs.sum())
    for row in read_csv(path.parent / "leakage.csv").itertuples():
        out[f"roar_leakage@{row.fraction:g}_{row.method}"] = row.leakage_acc
    detector = path.parent / "detector.csv"
    if detector.exists():
        table = read_csv(detector)
        for row in table.itertuples():
            ok = bool(row.fitted)   # a learner that did not fit, or no detector to feed it: NaN, counted
            out[f"{row.mode}_detector@{row.fraction:g}_{row.method}"] = \
                row.detector_acc if row.detector_status == "fitted" else float("nan")
            out[f"{row.mode}_detector_base@{row.fraction:g}_{row.method}"] = row.detector_base
            out[f"{row.mode}_recovered_leakage@{row.fraction:g}_{row.method}"] = \
                row.recovered_leakage_acc if ok else float("nan")
        out["roar_detector_unfitted"] = float((~table.fitted.astype(bool)).sum())
    return out


def _road(path: Path) -> dict:
    out = {}
    for row in read_csv(path).itertuples():
        out[f"road_score_{row.method}"] = row.score
        out[f"road_morf_auc_{row.method}"] = row.morf_auc
        out[f"road_lerf_auc_{row.method}"] = row.lerf_auc
    return out


def _dissect(path: Path) -> dict:
    """Detector counts, named by how unique concepts are counted (see reglens.dissect.COUNTING)."""
    summary = read_json(path)
    out = {}
    for scope, counts in [("", summary["total"])] + [(f"@{layer.removeprefix('body.')}", c)
                                                       for layer, c in summary["layers"].items()]:
        for key in ("detectors", "unique_concepts", "unique_concepts_per_category"):
            out[f"dissect_{key}{scope}"] = counts[key]
        out[f"dissect_detector_fraction{scope}"] = counts["detectors"] / counts["units"]
    for category, n in summary["total"]["unique_concepts_by_category"].items():
        out[f"dissect_unique_{category}_concepts"] = n
    return out


def _net2vec(path: Path) -> dict:
    """Net2Vec per layer and over layers: concepts fitted, mean held-out IoU of the embeddings, of the
    best single units and of marking every pixel, units to reach 90 % (mean over concepts that reach it;
    those that never do are counted), the weights' entropy, and how many concepts the embedding wins."""
    table = read_csv(path)
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


def _lesion(path: Path) -> dict:
    return {k: v for k, v in read_json(path).items() if k.startswith("lesion_")}


def _shortcut(path: Path) -> dict:
    """Reliance on the planted mark; per method the attribution mass inside it and the pointing game,
    and how many images had an undefined value (a map that is zero or constant)."""
    out = {}
    for row in read_csv(path).itertuples():
        method = row.method if isinstance(row.method, str) and row.method else None  # blank: a cell-level metric
        out[f"{row.metric}_{method}" if method else row.metric] = row.value
        if method and row.metric == "shortcut_mass":
            out[f"shortcut_undefined_{method}"] = float(row.undefined)
    return out


# stage -> (file under the cell folder, reader returning {metric: value})
STAGES = {
    "train": ("metrics.json", _train),
    "attack": ("robustness/attacks.csv", _attacks),
    "calibration": ("robustness/calibration.json", _calibration),
    "boundary": ("robustness/boundary.csv", _boundary),
    "weights": ("robustness/weights.csv", _weights),
    "explain": ("explain/metrics.csv", _explain),
    "actmax": ("explain/actmax.csv", _actmax),
    "roar": ("roar/scores.csv", _roar),
    "road": ("road/scores.csv", _road),
    "dissect": ("dissect/summary.json", _dissect),
    "shortcut": ("shortcut/scores.csv", _shortcut),
    "net2vec": ("concepts/net2vec.csv", _net2vec),
    "lesion": ("lesion/summary.json", _lesion),
}
PER_CELL = [stage for stage in STAGES if stage != "roar"]  # roar runs on the configured base cells only
OPTIONAL = ("road", "dissect", "net2vec", "lesion")  # per-cell stages a config can switch off
IMAGE_ONLY = ("explain", "actmax", "roar", "road", "dissect", "shortcut", "net2vec", "lesion")  # need images


def per_cell_stages(enabled=OPTIONAL, inputs: str = "images", shortcut: bool = False) -> list[str]:
    """The per-cell stages a cell runs: optional ones only when enabled, image ones only on images,
    the shortcut measures only in a study that plants one."""
    return [stage for stage in PER_CELL if (stage not in OPTIONAL or stage in enabled)
            and (inputs == "images" or stage not in IMAGE_ONLY) and (shortcut or stage != "shortcut")]


def stage_files(cell_dir: str, enabled=OPTIONAL, inputs: str = "images", shortcut: bool = False) -> list[str]:
    """The files of every per-cell stage, for a cell folder pattern."""
    return [f"{cell_dir}/{STAGES[stage][0]}" for stage in per_cell_stages(enabled, inputs, shortcut)]


def inputs_of(cell: dict) -> str:
    """'images' or 'points' (the 2-D toy study): what the cell's dataset holds."""
    return data.spec(cell["dataset"]).inputs


def _group_metrics(table: pd.DataFrame) -> dict:
    """One cell's concept agreement within its filter groups (rows of dissect.group_agreement): means over
    groups, per layer and in all, against the chance agreement of random groups."""
    out = {"dissect_group_agreement": table.agreement.mean(), "dissect_group_agreement_chance": table.chance.mean(),
           "dissect_group_detecting": table.detecting.mean()}
    for layer, frame in table.groupby("layer", sort=False):
        out[f"dissect_group_agreement@{layer.removeprefix('body.')}"] = frame.agreement.mean()
    return out


def group_tables(results_root, cells: list[dict]) -> pd.DataFrame:
    """Per cell with filter groups, layer and group: the group's concept and agreement (tables/dissect_groups.csv)."""
    frames = []
    for cell in cells:
        units = cell_folder(results_root, cell) / "dissect" / "units.csv"
        if cell.get("groups") and units.exists():
            frame = dissect.group_agreement(read_csv(units), cell["groups"])
            for i, key in enumerate(KEYS):
                frame.insert(i, key, cell[key])
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=KEYS + ["layer", "group"])


def cell_folder(results_root, cell: dict) -> Path:
    return Path(results_root) / cell["study"] / cell["arch"] / cell["reg"] / f"seed{cell['seed']}"


def concat_cell_tables(results_root, cells: list[dict], filename: str) -> pd.DataFrame:
    """Per-cell CSVs stacked, with the cell's keys as leading columns (absent files skipped)."""
    frames = []
    for cell in cells:
        path = cell_folder(results_root, cell) / filename
        if path.exists():
            frame = read_csv(path)
            for i, key in enumerate(KEYS):
                frame.insert(i, key, cell[key])
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=KEYS)


def collect(results_root: str | Path, cells: list[dict], roar_cells=(),
            enabled=OPTIONAL, groups: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (tidy table, missing table). A cell's stage whose file is absent is listed as missing.
    `roar_cells` are the cell paths (study/arch/reg/seed<k>) that have a ROAR stage; `groups` is
    group_tables' output (computed here when not given)."""
    if groups is None:
        groups = group_tables(results_root, cells)
    by_cell = {key: frame for key, frame in groups.groupby(KEYS)} if len(groups) else {}
    rows, missing = [], []
    for cell in cells:
        folder = cell_folder(results_root, cell)
        path_key = f"{cell['study']}/{cell['arch']}/{cell['reg']}/seed{cell['seed']}"
        for stage in per_cell_stages(enabled, inputs_of(cell), cell.get("shortcut", False)) + (["roar"] if path_key in set(roar_cells) else []):
            filename, reader = STAGES[stage]
            path = folder / filename
            if not path.exists():
                missing.append({**{k: cell[k] for k in KEYS}, "stage": stage, "file": str(path)})
                continue
            values = reader(path)
            if stage == "dissect" and tuple(cell[k] for k in KEYS) in by_cell:
                values.update(_group_metrics(by_cell[tuple(cell[k] for k in KEYS)]))
            for metric, value in values.items():
                rows.append({**{k: cell[k] for k in KEYS}, "stage": stage, "metric": metric,
                             "value": float(value)})
    tidy = pd.DataFrame(rows, columns=KEYS + ["stage", "metric", "value"])
    return tidy, pd.DataFrame(missing, columns=KEYS + ["stage", "file"])
