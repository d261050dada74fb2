"""Network Dissection's IoU computed directly, one unit and one image at a time: the reference the
batched tally (reglens.dissect) is tested and benchmarked against."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def reference_iou_numpy(features: np.ndarray, planes: np.ndarray, label_category: np.ndarray,
                        quantile: float, seg_shape, union: str = "lite", resize=None) -> tuple[np.ndarray, np.ndarray]:
    """The same definition computed directly, one unit and one image at a time (for tests and the
    benchmark). features: (N, units, h, w); planes: (N, planes, sh, sw); resize: one map (h, w) ->
    its values at seg_shape (default: F.interpolate, bilinear). Returns (thresholds, iou)."""
    n, units = features.shape[:2]
    labels, categories = label_category.shape
    primary = label_category.argmax(1)
    thresholds = np.array([np.percentile(features[:, u].ravel(), 100 * (1 - quantile)) for u in range(units)])
    if resize is None:
        up = F.interpolate(torch.from_numpy(features).double(), size=tuple(seg_shape), mode="bilinear",
                           align_corners=False).numpy()
    else:
        up = np.array([[resize(features[i, u]) for u in range(units)] for i in range(n)])
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
