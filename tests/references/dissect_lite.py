"""A direct per-unit port of NetDissect-Lite's tally loop (CSAILVision/NetDissect-Lite,
feature_operation.py, `tally_job` and `tally`), the independent reference for `conventions: lite`
in tests and the benchmark. Lite calls scipy's `imresize(mode='F')`, PIL's bilinear resize of a float
image: here PIL itself where the map is larger than the mask (PIL then antialiases), torch's bilinear
resize in float64 where it is not (there PIL equals it to float32 rounding); a unit whose map has nothing above its threshold on an image is skipped, as in
Lite; a unit's category hits start from zero on each image (Lite reuses the previous image's when an
image has only image-level labels)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def upsample(feature_map: np.ndarray, shape) -> np.ndarray:
    if any(m > s for m, s in zip(feature_map.shape, shape)):
        image = Image.fromarray(feature_map.astype(np.float32), mode="F")
        return np.asarray(image.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.float64)
    return F.interpolate(torch.from_numpy(feature_map)[None, None].double(), size=tuple(shape), mode="bilinear",
                         align_corners=False)[0, 0].numpy()


def tally(features: np.ndarray, thresholds: np.ndarray, pixels: list[np.ndarray], scalars: list[list[int]],
          labelcat: np.ndarray, seg_shape) -> dict:
    """features (N, units, h, w); pixels[i] (planes, sh, sw) of label numbers (0 = none) or an empty
    array; scalars[i] image-level labels; labelcat (labels, categories) one-hot of primary categories."""
    n, units = features.shape[:2]
    labels, categories = labelcat.shape
    sh, sw = seg_shape
    tally_both = np.zeros((units, labels))
    tally_units_cat = np.zeros((units, categories))
    tally_labels = np.zeros(labels)
    for i in range(n):
        planes = pixels[i]
        for scalar in scalars[i]:
            tally_labels[scalar] += sh * sw
        if len(planes):
            tally_label = np.bincount(planes.ravel())
            tally_label[0] = 0
            tally_labels[:len(tally_label)] += tally_label
        for unit in range(units):
            feature_map = features[i, unit]
            if feature_map.max() > thresholds[unit]:
                mask = upsample(feature_map, seg_shape)
                indexes = np.argwhere(mask > thresholds[unit])
                tally_cat = np.zeros(categories)
                if len(planes):
                    tally_bt = np.bincount(planes[:, indexes[:, 0], indexes[:, 1]].ravel())
                    if len(tally_bt) > 0:
                        tally_bt[0] = 0
                    tally_cat = np.dot(tally_bt[None, :], labelcat[:len(tally_bt), :])[0]
                    tally_both[unit, :len(tally_bt)] += tally_bt
                for scalar in scalars[i]:
                    tally_cat += labelcat[scalar]
                    tally_both[unit, scalar] += len(indexes)
                tally_units_cat[unit] += len(indexes) * (tally_cat > 0)
    units_cat = np.dot(tally_units_cat, labelcat.T)
    iou = tally_both / (units_cat + tally_labels[np.newaxis, :] - tally_both + 1e-10)
    return {"iou": iou, "both": tally_both, "labels": tally_labels, "units_cat": units_cat}


def best_labels(iou: np.ndarray, primary: np.ndarray, categories: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lite's choice per unit: the best label within each category (first label on ties), then the
    category whose best scores highest (the last on ties, as `argsort(axis=0)[::-1]` orders them).
    Returns (label, category, score) per unit."""
    pciou = np.array([iou * (primary[np.arange(iou.shape[1])] == c)[np.newaxis, :] for c in range(categories)])
    label_pciou = pciou.argmax(axis=2)
    score_pciou = pciou[np.arange(categories)[:, None], np.arange(iou.shape[0])[None, :], label_pciou]
    bestcat = score_pciou.argsort(axis=0, kind="stable")[::-1][0]
    units = np.arange(iou.shape[0])
    return label_pciou[bestcat, units], bestcat, score_pciou[bestcat, units]


def thresholds(features: np.ndarray, quantile: float) -> np.ndarray:
    """Lite's `quantile_threshold`: np.percentile over images and positions, per unit."""
    return np.percentile(features, 100 * (1 - quantile), axis=(0, 2, 3))
