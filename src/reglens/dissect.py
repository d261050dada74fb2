"""Network Dissection (Bau et al., CVPR 2017) with NetDissect-Lite's conventions, batched on the device.

Per unit of each named conv layer: its threshold is the top `quantile` (0.005) of its activations over
the whole dataset (exact, kept as a per-unit top-k while streaming); each activation map is upsampled
bilinearly to the mask resolution and thresholded; for every concept (a Broden label), intersection
and union are summed over all images and IoU = sum(intersection) / sum(union). An image-level label
(scene, texture) covers its whole image. A unit's activated area enters the union of a concept's
category only over images where that area overlaps some label of the category ("lite", the default)
or over every image where the category is present ("original", NetDissect's first release). Each label
counts in its primary category. A unit detects its best concept when that IoU exceeds 0.04.

Tallies are matrix products: (images, units, pixels) binary masks times (images, pixels, labels)
one-hot label maps, restricted to the labels present in the batch.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from reglens.data.broden import Broden, BrodenImages

DISSECT_DEFAULTS = {
    "quantile": 0.005,          # top fraction of a unit's activations that counts as "on"
    "iou_threshold": 0.04,      # a unit detects its best concept when IoU exceeds this
    "union": "lite",            # lite | original (see the module docstring)
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
COUNTING = {
    "unique_concepts": "distinct best concepts among detector units (one label per unit)",
    "unique_concepts_per_category": "per category, distinct best-in-category concepts among units "
                                    "whose best-in-category IoU exceeds the threshold, summed over "
                                    "categories (a unit can count once per category)",
}


def settings(cfg: dict | None) -> dict:
    merged = {**DISSECT_DEFAULTS, **(cfg or {})}
    if merged["union"] not in UNION_MODES:
        raise ValueError(f"dissect.union: {merged['union']!r}; valid: {list(UNION_MODES)}")
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


class StreamingQuantile:
    """The exact upper quantile of each unit's values (numpy's linear interpolation), holding only the
    values that can still matter: the top n - floor((1 - quantile) * (n - 1)) of n per unit."""

    def __init__(self, units: int, total: int, quantile: float, device):
        position = (1.0 - quantile) * (total - 1)
        self.low = math.floor(position)
        self.frac = position - self.low
        self.keep = total - self.low
        self.total, self.seen = total, 0
        self.top = torch.empty((units, 0), device=device)

    def update(self, values: torch.Tensor) -> None:
        """values: (units, m)."""
        self.seen += values.shape[1]
        merged = torch.cat([self.top, values.float()], dim=1)
        self.top = merged.topk(min(self.keep, merged.shape[1]), dim=1, sorted=True).values

    def thresholds(self) -> torch.Tensor:
        if self.seen != self.total:
            raise RuntimeError(f"saw {self.seen} values per unit, expected {self.total}")
        low = self.top[:, self.keep - 1]                       # ascending position `low`
        high = self.top[:, self.keep - 2] if self.keep >= 2 else low
        return low + self.frac * (high - low)


class ConceptTally:
    """Sums over images of unit-concept intersections, unit areas per category, and concept areas."""

    def __init__(self, units: int, label_category: torch.Tensor, union: str, device):
        self.label_category = label_category.to(device)       # (labels, categories) one-hot
        labels, categories = label_category.shape
        self.union = union
        self.both = torch.zeros((units, labels), dtype=torch.float64, device=device)
        self.unit_in_category = torch.zeros((units, categories), dtype=torch.float64, device=device)
        self.label_area = torch.zeros(labels, dtype=torch.float64, device=device)

    def update(self, masks: torch.Tensor, labels: tuple[torch.Tensor, torch.Tensor]) -> None:
        """masks: (B, units, P) bool; labels: `label_onehot` of the batch's label planes."""
        present, onehot = labels
        if present.numel() == 0:
            return
        maskf = masks.float()
        inter = torch.bmm(maskf, onehot)                      # (B, units, labels present)
        area = maskf.sum(2)                                   # (B, units)
        label_pixels = onehot.sum(1)                          # (B, labels present)
        self.both.index_add_(1, present, inter.sum(0).double())
        self.label_area.index_add_(0, present, label_pixels.sum(0).double())
        category = self.label_category[present]               # (labels present, categories)
        if self.union == "lite":
            gate = (inter @ category) > 0                     # area overlaps a label of the category
            self.unit_in_category += (area.unsqueeze(2) * gate).sum(0).double()
        else:
            gate = ((label_pixels @ category) > 0).float()    # the category is in the image
            self.unit_in_category += (area.t() @ gate).double()

    def iou(self) -> torch.Tensor:
        """(units, labels); labels outside the chosen categories get 0."""
        primary = self.label_category.argmax(1)
        used = self.label_category.sum(1) > 0
        union = self.unit_in_category[:, primary] + self.label_area.unsqueeze(0) - self.both
        iou = torch.where(union > 0, self.both / union.clamp_min(1e-12), torch.zeros_like(union))
        return iou * used.unsqueeze(0)


def label_onehot(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, planes, P) label numbers (0 = none) -> (labels present (K,), (B, P, K) float32 one-hot);
    a pixel counts once per label. Built once per batch and shared by every layer's tally."""
    present = torch.unique(planes)
    present = present[present > 0]
    batch, _, pixels = planes.shape
    column = torch.where(planes > 0, torch.searchsorted(present, planes) + 1, 0)
    onehot = torch.zeros((batch, pixels, present.numel() + 1), device=planes.device)
    onehot.scatter_(2, column.transpose(1, 2), 1.0)
    return present, onehot[:, :, 1:]


def unit_masks(features: torch.Tensor, thresholds: torch.Tensor, shape) -> torch.Tensor:
    """(B, units, h, w) activations -> (B, units, sh*sw) bool masks at the segmentation size."""
    up = F.interpolate(features.float(), size=shape, mode="bilinear", align_corners=False)
    return (up > thresholds.view(1, -1, 1, 1)).flatten(2)


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

    tallies = {name: ConceptTally(len(t), label_category, cfg["union"], device) for name, t in thresholds.items()}
    for _, planes, feats in batches():
        labels = label_onehot(planes.flatten(2).long())
        for name, f in feats.items():
            tallies[name].update(unit_masks(f, thresholds[name], broden.seg_shape), labels)
    return {"settings": cfg, "layers": layers,
            "thresholds": {n: t.cpu() for n, t in thresholds.items()},
            "iou": {n: t.iou().cpu() for n, t in tallies.items()},
            "top_images": {n: ids.cpu() for n, (_, ids) in top_images.items()},
            "names": broden.names, "categories": broden.categories,
            "label_category": label_category}


def unit_table(result: dict) -> pd.DataFrame:
    """One row per unit: threshold, best concept, its category and IoU, the runner-up, detector flag,
    and the best concept within each category (for per-category counting)."""
    names, categories = result["names"], result["categories"]
    label_category = result["label_category"]
    primary = label_category.argmax(1)
    rows = []
    for layer in result["layers"]:
        iou = result["iou"][layer]
        order = iou.argsort(dim=1, descending=True)
        for unit in range(iou.shape[0]):
            best, second = int(order[unit, 0]), int(order[unit, 1])

            def label(k):  # a unit that overlaps nothing has no concept
                return (names[k], categories[int(primary[k])]) if iou[unit, k] > 0 else ("-", "-")

            row = {"layer": layer, "unit": unit, "threshold": float(result["thresholds"][layer][unit]),
                   "concept": label(best)[0], "category": label(best)[1], "iou": float(iou[unit, best]),
                   "runner_up": label(second)[0], "runner_up_category": label(second)[1],
                   "runner_up_iou": float(iou[unit, second]),
                   "detector": bool(iou[unit, best] > result["settings"]["iou_threshold"])}
            for c, cat in enumerate(categories):
                in_cat = iou[unit] * label_category[:, c]
                k = int(in_cat.argmax())
                row[f"best_{cat}"] = names[k] if in_cat[k] > 0 else "-"
                row[f"best_{cat}_iou"] = float(in_cat[k])
            rows.append(row)
    return pd.DataFrame(rows)


def summarize(units: pd.DataFrame, categories: list[str], cfg: dict) -> dict:
    """Per layer and in total: units, detectors, unique concepts counted both ways, per-category counts."""
    threshold = cfg["iou_threshold"]

    def counts(frame: pd.DataFrame) -> dict:
        detectors = frame[frame["detector"]]
        per_category = {cat: int(frame.loc[frame[f"best_{cat}_iou"] > threshold, f"best_{cat}"].nunique())
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

    return {"counting": COUNTING, "settings": cfg, "total": counts(units),
            "layers": {layer: counts(frame) for layer, frame in units.groupby("layer", sort=False)}}


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
        masks = unit_masks(feats, thr, broden.seg_shape)[:, int(row["unit"])].view(len(ids), *broden.seg_shape)
        label = label_of[row["concept"]]
        concept = torch.stack([(broden.load_planes(i) == label).any(0) for i in ids])
        pictures = torch.stack([broden.load_image(i, broden.seg_shape[0], 3) for i in ids])
        shown.append({"layer": row["layer"], "unit": int(row["unit"]), "concept": row["concept"],
                      "category": row["category"], "iou": float(row["iou"]), "images": pictures,
                      "unit_masks": masks.cpu(), "concept_masks": concept})
    return shown


def reference_iou_numpy(features: np.ndarray, planes: np.ndarray, label_category: np.ndarray,
                        quantile: float, seg_shape, union: str = "lite") -> tuple[np.ndarray, np.ndarray]:
    """The same definition computed directly, one unit and one image at a time (for tests and the
    benchmark). features: (N, units, h, w); planes: (N, planes, sh, sw). Returns (thresholds, iou)."""
    n, units = features.shape[:2]
    labels, categories = label_category.shape
    primary = label_category.argmax(1)
    thresholds = np.array([np.percentile(features[:, u].ravel(), 100 * (1 - quantile)) for u in range(units)])
    up = F.interpolate(torch.from_numpy(features).float(), size=tuple(seg_shape), mode="bilinear",
                       align_corners=False).numpy()
    iou = np.zeros((units, labels))
    for u in range(units):
        both, label_area, unit_cat = np.zeros(labels), np.zeros(labels), np.zeros(categories)
        for i in range(n):
            mask = up[i, u] > thresholds[u]
            image_planes = planes[i]
            for k in np.unique(image_planes):
                if k == 0:
                    continue
                on_label = (image_planes == k).any(0)
                both[k] += np.logical_and(mask, on_label).sum()
                label_area[k] += on_label.sum()
            for c in range(categories):
                in_category = [k for k in np.unique(image_planes) if k > 0 and label_category[k, c]]
                if union == "lite":
                    hit = any(np.logical_and(mask, (image_planes == k).any(0)).any() for k in in_category)
                else:
                    hit = len(in_category) > 0
                if hit:
                    unit_cat[c] += mask.sum()
        for k in range(1, labels):
            if label_category[k].any():
                union_area = unit_cat[primary[k]] + label_area[k] - both[k]
                iou[u, k] = both[k] / union_area if union_area > 0 else 0.0
    return thresholds, iou
