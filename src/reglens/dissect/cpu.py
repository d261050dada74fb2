"""The dissection tally on the CPU as one compiled loop (numba), the same counts as the run-based
torch tally of reglens.dissect that serves GPUs.

Per (image, unit) pair: the source cells at or above the unit's threshold (less a rounding margin)
mark the blocks of mask pixels whose bilinear value can exceed it; only those pixels are evaluated,
each by the same float64 expression as `dissect._bilinear` (along x, then y), and each activated
pixel adds one to its unit x label count for every label plane that varies over the image. A plane
holding one label over the whole image (scene, texture) adds the pair's activated area at once.
Cost: one read of each map plus the pixels near its hot cells; no pass over pixels x labels.
One thread; compiled on first use and cached beside this file (numba's `cache=True`).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

_kernels = {}


@functools.cache
def available() -> bool:
    """Whether numba imports (without it, the torch tally serves: same counts, slower)."""
    try:
        import numba  # noqa: F401  (imported only when a tally is made: it takes a moment)
    except ImportError:
        return False
    return True


def _compiled(fn):
    """fn compiled on first use (imported late: numba takes a moment to import); cached on disk."""
    if fn.__name__ not in _kernels:
        import numba

        _kernels[fn.__name__] = numba.njit(cache=True, nogil=True)(fn)
    return _kernels[fn.__name__]


def _label_stats(source, category_of, per_plane, planes, area, present, varies, uniform):
    batch, count, pixels = source.shape
    last_image = np.full(category_of.shape[0], -1, np.int64)
    for b in range(batch):
        for k in range(count):
            first, same = 0, True
            for p in range(pixels):
                label = source[b, k, p]
                if not per_plane and label != 0:   # a label already in an earlier plane at the pixel is cleared
                    for j in range(k):
                        if planes[b, j, p] == label:
                            label = 0
                            break
                planes[b, k, p] = label
                if p == 0:
                    first = label
                same = same and label == first
                area[label] += 1
                if last_image[label] != b:
                    last_image[label] = b
                    if category_of[label] >= 0:
                        present[b, category_of[label]] = True
            varies[b, k] = not same
            uniform[b, k] = first if same else 0
    area[0] = 0


def label_stats(planes: torch.Tensor, category_of: torch.Tensor, categories: int, per_plane: bool):
    """dissect.BatchLabels' fields in one pass on the CPU: the planes (a copy, int16 where the label
    numbers allow, with repeated labels cleared unless per_plane), label areas, categories present per
    image, and per (image, plane) whether the plane varies and its single label where it does not."""
    batch, count, pixels = planes.shape
    out = np.empty((batch, count, pixels), np.int16 if len(category_of) <= 2**15 else np.int32)
    area = torch.zeros(len(category_of), dtype=torch.long)
    present = torch.zeros((batch, categories), dtype=torch.bool)
    varies = torch.zeros((batch, count), dtype=torch.bool)
    uniform = torch.zeros((batch, count), dtype=torch.long)
    _compiled(_label_stats)(planes.contiguous().numpy(), category_of.numpy(), per_plane, out, area.numpy(),
                            present.numpy(), varies.numpy(), uniform.numpy())
    return torch.from_numpy(out), area, present, varies, uniform


def _tally(maps, thr, floors, floor32s, row_low, row_high, row_w, row_first, row_end,
           col_low, col_high, col_w, col_first, col_end, col_segments, col_segment_start,
           planes, varying, varying_count, uniform, category_of, present, lite, both, unit_in_category, area):
    batch, units, h, w = maps.shape
    sw = col_low.shape[0]
    categories = unit_in_category.shape[1]
    flat = maps.reshape(-1)
    hot_cols = np.zeros((h, w), np.int64)       # per source row, its hot columns
    hot_count = np.zeros(h, np.int64)
    col_hit = np.zeros(w, np.uint8)
    seen = np.zeros(col_first.shape[0], np.int64)   # == the block row's number once a column segment is done
    gate = np.zeros(categories, np.bool_)
    block_row = 0
    for b in range(batch):
        vary = varying_count[b]
        for u in range(units):
            t = thr[u]
            floor, floor32 = floors[u], floor32s[u]        # no pixel exceeds t without a corner this high
            base = (b * units + u) * h * w
            for j in range(w):
                col_hit[j] = 0
            m = flat[base:base + h * w]
            for i in range(h):                              # which columns hold a hot cell (vectorizes)
                row = m[i * w:(i + 1) * w]
                for j in range(w):
                    col_hit[j] |= row[j] >= floor32
            for i in range(h):
                hot_count[i] = 0
            any_hot = False
            for j in range(w):                              # then the hot cells, column by column
                if col_hit[j]:
                    any_hot = True
                    for i in range(h):
                        if m[i * w + j] >= floor32:
                            hot_cols[i, hot_count[i]] = j
                            hot_count[i] += 1
            if not any_hot:
                continue
            for c in range(categories):
                gate[c] = False
            pixels = 0
            for r in range(row_first.shape[0]):
                i0, i1 = row_low[row_first[r]], row_high[row_first[r]]
                if hot_count[i0] == 0 and hot_count[i1] == 0:
                    continue
                block_row += 1
                for i in (i0, i1):
                    for q in range(hot_count[i]):
                        j = hot_cols[i, q]
                        for z in range(col_segment_start[j], col_segment_start[j + 1]):
                            s = col_segments[z]
                            if seen[s] == block_row:
                                continue
                            seen[s] = block_row
                            x0, x1 = col_first[s], col_end[s]
                            j0, j1 = col_low[x0], col_high[x0]
                            v00, v01 = np.float64(m[i0 * w + j0]), np.float64(m[i0 * w + j1])
                            v10, v11 = np.float64(m[i1 * w + j0]), np.float64(m[i1 * w + j1])
                            for y in range(row_first[r], row_end[r]):
                                ly = row_w[y]
                                left, right = (1 - ly) * v00 + ly * v10, (1 - ly) * v01 + ly * v11
                                if max(left, right) < floor:      # the row is affine in x between these
                                    continue
                                rising = right >= left
                                for step in range(x1 - x0):        # from the high end, until clearly below
                                    x = x1 - 1 - step if rising else x0 + step
                                    lx = col_w[x]
                                    v = (1 - ly) * ((1 - lx) * v00 + lx * v01) + ly * ((1 - lx) * v10 + lx * v11)
                                    if v > t:
                                        pixels += 1
                                        p = y * sw + x
                                        for kk in range(vary):
                                            label = planes[b, varying[b, kk], p]
                                            both[u, label] += 1
                                            if lite and category_of[label] >= 0:
                                                gate[category_of[label]] = True
                                    elif v < floor:
                                        break
            if pixels == 0:
                continue
            area[b, u] = pixels
            for k in range(uniform.shape[1]):
                label = uniform[b, k]
                if label > 0:
                    both[u, label] += pixels
                    if lite and category_of[label] >= 0:
                        gate[category_of[label]] = True
            for c in range(categories):
                if (gate[c] if lite else present[b, c]):
                    unit_in_category[u, c] += pixels


def _varying(varies: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the planes that vary over it (first `count` of each row) and their count."""
    varies = varies.numpy()
    order = np.argsort(~varies, axis=1, kind="stable").astype(np.int64)
    return order, varies.sum(1).astype(np.int64)


def _segments_of_source(axis, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per source position, the segments of `axis` that read it (CSR: segments, start per position)."""
    low, high = axis.seg_low.numpy(), axis.seg_high.numpy()
    segment = np.arange(len(low))
    position = np.concatenate([low, high[high != low]])
    segment = np.concatenate([segment, segment[high != low]])
    order = np.argsort(position, kind="stable")
    start = np.zeros(size + 1, np.int64)
    np.add.at(start, position + 1, 1)
    return segment[order].astype(np.int64), np.cumsum(start)


def tally(features: torch.Tensor, thresholds: torch.Tensor, floors: torch.Tensor, rows, cols, labels,
          lite: bool, both: torch.Tensor, unit_in_category: torch.Tensor) -> torch.Tensor:
    """Adds one batch into both (units, labels) and unit_in_category (units, categories), int64 CPU
    tensors, in place. floors: dissect.hot_floor(thresholds). rows, cols: dissect._Axis of the mask's height and width; labels: a
    dissect.BatchLabels. Returns each (image, unit) pair's activated area (B, units)."""
    if features.dtype not in (torch.float32, torch.float64):
        features = features.float()                                       # exact for half and bfloat16
    maps = features.detach().contiguous().numpy()
    area = np.zeros(maps.shape[:2], np.int64)
    thr, floor = thresholds.double().contiguous().numpy(), floors.double().contiguous().numpy()
    floor32 = np.nextafter(floor.astype(maps.dtype), -np.inf)               # in the maps' dtype, at or below floor
    _compiled(_tally)(maps, thr, floor, floor32,
                      *(t.numpy() for t in (rows.low, rows.high, rows.weight, rows.first, rows.end)),
                      *(t.numpy() for t in (cols.low, cols.high, cols.weight, cols.first, cols.end)),
                      *_segments_of_source(cols, maps.shape[3]),
                      labels.planes.numpy(), *_varying(labels.varies), labels.uniform.numpy(),
                      labels.category_of.numpy(), labels.category_present.numpy(), lite,
                      both.numpy(), unit_in_category.numpy(), area)
    return torch.from_numpy(area)
