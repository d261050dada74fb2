"""Network Dissection (Bau et al., CVPR 2017) with NetDissect-Lite's conventions, batched on the device.

Per unit of each named conv layer: its threshold is the top `quantile` (0.005) of its activations over
the whole dataset (exact, kept as a per-unit top-k while streaming); each activation map is upsampled
bilinearly to the mask resolution and thresholded; for every concept (a Broden label), intersection
and union are summed over all images and IoU = sum(intersection) / sum(union). An image-level label
(scene, texture) covers its whole image. A unit's activated area enters the union of a concept's
category only over images where that area overlaps some label of the category ("lite", the default)
or over every image where the category is present ("original", NetDissect's first release). Each label
counts in its primary category. A unit detects its best concept when that IoU exceeds 0.04.

`conventions` picks between reglens' choices and NetDissect-Lite's where they differ (CONVENTIONS;
docs/dissect.md lists each difference and its measured effect). The tally never forms pixels x
labels; two engines give identical counts (reglens.dissect.tally): on the CPU a compiled loop (.cpu) that
evaluates only the pixels near each map's hot cells, elsewhere batched torch ops on runs, each unit's
activated stretches of mask rows (found from where the bilinear map crosses the threshold,
reglens.dissect.geometry.activated_runs) intersected with the runs of each label plane. The filter
groups' concept agreement is reglens.dissect.groups.
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from reglens.data.broden import Broden, BrodenImages
from reglens.dissect.geometry import resize_maps, unit_masks
from reglens.dissect.tally import BatchLabels, ConceptTally, StreamingQuantile, engine_of

DISSECT_DEFAULTS = {
    "quantile": 0.005,          # top fraction of a unit's activations that counts as "on"
    "iou_threshold": 0.04,      # a unit detects its best concept when IoU exceeds this
    "union": "lite",            # lite | original (see the module docstring)
    "conventions": "reglens",   # reglens | lite (see CONVENTIONS)
    "downsample": "antialias",  # antialias | sample: a map larger than its mask (see resize_maps)
    "input_size": 112,          # Broden images are resized to this before the conv layers
    "layers": None,             # None: every named conv layer of the model
    "categories": None,         # None: every category in category.csv
    "batch_size": 16,
    "workers": 2,
    "top_units": 8,             # units shown in the figure (highest IoU first)
    "top_images": 4,            # their top-activating images
}
BRODEN_DEFAULTS = {
    "source": "download",       # download | folder | synthetic
    "version": "broden1_224",   # 224-pixel images, 112-pixel masks
    "md5": None,                # None: the known checksum of `version`
    "folder": None,             # an unpacked Broden (source: folder)
    "synthetic": {"images": 300, "seg_size": 32, "scale": 2, "seed": 0},
}
UNION_MODES = ("lite", "original")
DOWNSAMPLE = ("antialias", "sample")
# Where reglens departs from NetDissect-Lite, and `conventions: lite` to follow Lite instead
CONVENTIONS = {
    "reglens": {"drop_unlabelled": False, "per_plane": False, "detector_at_threshold": False, "ties": "first",
                "exclude_categories": (), "lite_iou": False},
    "lite": {"drop_unlabelled": True, "per_plane": True, "detector_at_threshold": True, "ties": "last",
             "exclude_categories": ("material",), "lite_iou": True},
}
COUNTING = {
    "unique_concepts": "distinct best concepts among detector units (one label per unit)",
    "unique_concepts_per_category": "per category, distinct best-in-category concepts among units "
                                    "whose best-in-category IoU exceeds the threshold, summed over "
                                    "categories (a unit can count once per category)",
    "interpretability_score": "unique_concepts of each layer, summed over layers (TUKL's Table 1 score: a "
                              "concept detected in two layers counts twice)",
}


def settings(cfg: dict | None) -> dict:
    merged = {**DISSECT_DEFAULTS, **(cfg or {})}
    if merged["conventions"] not in CONVENTIONS:
        raise ValueError(f"dissect.conventions: {merged['conventions']!r}; valid: {list(CONVENTIONS)}")
    if merged["union"] not in UNION_MODES:
        raise ValueError(f"dissect.union: {merged['union']!r}; valid: {list(UNION_MODES)}")
    if merged["downsample"] not in DOWNSAMPLE:
        raise ValueError(f"dissect.downsample: {merged['downsample']!r}; valid: {list(DOWNSAMPLE)}")
    if merged["conventions"] == "lite" and merged["downsample"] != "antialias":
        raise ValueError("dissect.downsample: 'sample' departs from NetDissect-Lite, whose PIL resize antialiases "
                         "a map larger than its mask; with conventions: lite use downsample: antialias")
    if not 0 < merged["quantile"] < 1:
        raise ValueError(f"dissect.quantile: {merged['quantile']} must be in (0, 1)")
    return merged


def layer_features(model, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named blocks of model.body (names as in model.layer_names, e.g. body.block1),
    running the body only as far as the deepest requested block, so any input size works."""
    unknown = sorted(set(layers) - set(model.layer_names))
    if unknown:
        raise ValueError(f"dissect.layers: {unknown} not in this model's layers {list(model.layer_names)}")
    wanted = {name.split(".", 1)[1] for name in layers}
    out, h = {}, model.normalize(x)
    for name, module in model.body.named_children():
        h = module(h)
        if name in wanted:
            out[f"body.{name}"] = h
            if len(out) == len(wanted):
                break
    return out


def open_broden(root, cfg: dict, decoded=None) -> Broden:
    """The Broden folder read with the configured conventions (see CONVENTIONS); images and masks
    from its decoded copy (reglens.data.broden.decode) when `decoded` names one."""
    rules = CONVENTIONS[cfg["conventions"]]
    categories = cfg["categories"]
    if categories is None and rules["exclude_categories"]:
        available = Broden(root).categories
        categories = [c for c in available if c not in rules["exclude_categories"]]
    broden = Broden(root, categories, rules["ties"], rules["drop_unlabelled"])
    if decoded is not None:
        broden.use_decoded(decoded)
    return broden


def dissect(model, broden: Broden, cfg: dict | None = None, device: str | torch.device = "cpu") -> dict:
    """Two streaming passes over Broden (thresholds, then tallies). Returns per-layer thresholds, IoU
    matrices, each unit's top images, and the label metadata."""
    cfg = settings(cfg)
    device = torch.device(device)
    model = model.to(device).eval()
    layers = list(cfg["layers"] or model.layer_names)
    channels = model.normalize.mean.shape[1]
    loader = torch.utils.data.DataLoader(
        BrodenImages(broden, cfg["input_size"], channels), batch_size=cfg["batch_size"],
        num_workers=cfg["workers"], collate_fn=BrodenImages.collate, pin_memory=device.type == "cuda")
    label_category = torch.from_numpy(broden.label_category_matrix())

    def batches():
        with torch.no_grad():
            for index, images, planes in loader:
                x = images.to(device, non_blocking=True).float().div_(255.0)
                yield index, planes.to(device, non_blocking=True), layer_features(model, x, layers)

    quantiles, top_images = {}, {}
    for index, _, feats in batches():
        for name, f in feats.items():
            if name not in quantiles:
                units, h, w = f.shape[1:]
                quantiles[name] = StreamingQuantile(units, len(broden) * h * w, cfg["quantile"], device)
                top_images[name] = (torch.full((units, 0), -math.inf, device=device),
                                    torch.empty((units, 0), dtype=torch.long, device=device))
            quantiles[name].update(f.transpose(0, 1).flatten(1))
            values, ids = top_images[name]
            values = torch.cat([values, f.amax(dim=(2, 3)).t()], 1)
            ids = torch.cat([ids, index.to(device).expand(f.shape[1], -1)], 1)
            best = values.topk(min(cfg["top_images"], values.shape[1]), dim=1)
            top_images[name] = (best.values, ids.gather(1, best.indices))
    thresholds = {name: q.thresholds() for name, q in quantiles.items()}

    rules = CONVENTIONS[cfg["conventions"]]
    tallies = {name: ConceptTally(len(t), label_category, cfg["union"], broden.seg_shape, device)
               for name, t in thresholds.items()}
    label_category = label_category.to(device)
    for _, planes, feats in batches():
        labels = BatchLabels(planes.flatten(2), label_category, rules["per_plane"])
        for name, f in feats.items():
            tallies[name].update(resize_maps(f, broden.seg_shape, cfg["downsample"]), thresholds[name], labels)
    return {"settings": cfg, "layers": layers, "engine": engine_of("auto", device),
            "thresholds": {n: t.cpu() for n, t in thresholds.items()},
            "iou": {n: t.iou(rules["lite_iou"]).cpu() for n, t in tallies.items()},
            "top_images": {n: ids.cpu() for n, (_, ids) in top_images.items()},
            "names": broden.names, "categories": broden.categories,
            "label_category": label_category}


def unit_table(result: dict) -> pd.DataFrame:
    """One row per unit: threshold, best concept, its category and IoU, the runner-up, detector flag,
    and the best concept within each category (for per-category counting). Ties: the lowest label
    number; with `conventions: lite`, the best label of the last tied category, as Lite orders them."""
    names, categories = result["names"], result["categories"]
    label_category = result["label_category"]
    primary = label_category.argmax(1)
    rules = CONVENTIONS[result["settings"]["conventions"]]
    threshold = result["settings"]["iou_threshold"]
    rows = []
    for layer in result["layers"]:
        iou = result["iou"][layer]
        order = torch.sort(iou, dim=1, descending=True, stable=True).indices
        in_category = iou.unsqueeze(2) * label_category.unsqueeze(0).to(iou.dtype)   # (units, labels, categories)
        best_in = in_category.argmax(1)                                              # first label per category
        score_in = in_category.gather(1, best_in.unsqueeze(1)).squeeze(1)            # (units, categories)
        for unit in range(iou.shape[0]):
            if rules["ties"] == "last":
                scores = score_in[unit]
                category = int(torch.nonzero(scores == scores.max()).max())
                best = int(best_in[unit, category])
            else:
                best = int(order[unit, 0])
            second = next(int(k) for k in order[unit, :2] if int(k) != best)

            def label(k):  # a unit that overlaps nothing has no concept
                return (names[k], categories[int(primary[k])]) if iou[unit, k] > 0 else ("-", "-")

            value = float(iou[unit, best])
            row = {"layer": layer, "unit": unit, "threshold": float(result["thresholds"][layer][unit]),
                   "concept": label(best)[0], "category": label(best)[1], "iou": value,
                   "runner_up": label(second)[0], "runner_up_category": label(second)[1],
                   "runner_up_iou": float(iou[unit, second]),
                   "detector": is_detector(value, threshold, result["settings"]["conventions"])}
            for c, cat in enumerate(categories):
                k = int(best_in[unit, c])
                row[f"best_{cat}"] = names[k] if score_in[unit, c] > 0 else "-"
                row[f"best_{cat}_iou"] = float(score_in[unit, c])
            rows.append(row)
    return pd.DataFrame(rows)


def is_detector(iou, threshold: float, conventions: str = "reglens"):
    """IoU above the threshold (reglens) or at least the threshold (Lite's report)."""
    return iou >= threshold if CONVENTIONS[conventions]["detector_at_threshold"] else iou > threshold


def summarize(units: pd.DataFrame, categories: list[str], cfg: dict) -> dict:
    """Per layer and in total: units, detectors, unique concepts counted both ways, per-category counts."""
    threshold, conventions = cfg["iou_threshold"], cfg["conventions"]

    def counts(frame: pd.DataFrame) -> dict:
        detectors = frame[frame["detector"]]
        per_category = {cat: int(frame.loc[is_detector(frame[f"best_{cat}_iou"], threshold, conventions),
                                           f"best_{cat}"].nunique())
                        for cat in categories}
        return {
            "units": int(len(frame)),
            "detectors": int(len(detectors)),
            "unique_concepts": int(detectors["concept"].nunique()),
            "unique_concepts_per_category": int(sum(per_category.values())),
            "detectors_by_category": {cat: int((detectors["category"] == cat).sum()) for cat in categories},
            "unique_concepts_by_category": {cat: int(detectors.loc[detectors["category"] == cat, "concept"].nunique())
                                            for cat in categories},
            "unique_concepts_per_category_by_category": per_category,
        }

    layers = {layer: counts(frame) for layer, frame in units.groupby("layer", sort=False)}
    total = {**counts(units), "interpretability_score": interpretability_score(layers)}
    return {"counting": COUNTING, "settings": cfg, "total": total, "layers": layers}


def interpretability_score(layers: dict[str, dict]) -> int:
    """Distinct detected concepts per layer, summed over layers (summarize's per-layer counts)."""
    return int(sum(counts["unique_concepts"] for counts in layers.values()))


def figure_data(model, broden: Broden, result: dict, units: pd.DataFrame, device) -> list[dict]:
    """For the best units (highest IoU): their top images at mask size, the unit's mask and the mask of
    its concept, for the figure (drawn later from this file alone)."""
    cfg = result["settings"]
    channels = model.normalize.mean.shape[1]
    best = units[units.iou > 0].sort_values("iou", ascending=False).head(cfg["top_units"])
    label_of = {name: i for i, name in enumerate(result["names"])}
    shown = []
    for _, row in best.iterrows():
        ids = result["top_images"][row["layer"]][int(row["unit"])].tolist()
        x = torch.stack([broden.load_image(i, cfg["input_size"], channels) for i in ids])
        with torch.no_grad():
            feats = layer_features(model, x.to(device).float() / 255.0, [row["layer"]])[row["layer"]]
        thr = result["thresholds"][row["layer"]].to(device)
        masks = unit_masks(feats, thr, broden.seg_shape, cfg["downsample"])[:, int(row["unit"])].view(len(ids), *broden.seg_shape)
        label = label_of[row["concept"]]
        concept = torch.stack([(broden.load_planes(i) == label).any(0) for i in ids])
        pictures = torch.stack([broden.load_image(i, broden.seg_shape[0], 3) for i in ids])
        shown.append({"layer": row["layer"], "unit": int(row["unit"]), "concept": row["concept"],
                      "category": row["category"], "iou": float(row["iou"]), "images": pictures,
                      "unit_masks": masks.cpu(), "concept_masks": concept})
    return shown
