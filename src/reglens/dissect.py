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
labels; two engines give identical counts: on the CPU a compiled loop (reglens.dissect_cpu) that
evaluates only the pixels near each map's hot cells, elsewhere batched torch ops on runs, each unit's
activated stretches of mask rows (found from where the bilinear map crosses the threshold,
activated_runs) intersected with the runs of each label plane.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from reglens import dissect_cpu
from reglens.data.broden import Broden, BrodenImages

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
TALLY_ENGINES = ("numba", "torch")   # the compiled CPU loop (reglens.dissect_cpu) or the run-based torch tally
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
        self.pending, self.pending_width = [], 0

    def update(self, values: torch.Tensor) -> None:
        """values: (units, m). Batches are gathered and cut back to the top `keep` only when they
        hold twice that, so the selection costs O(1) per value."""
        self.seen += values.shape[1]
        self.pending.append(values.float())
        self.pending_width += values.shape[1]
        if self.pending_width >= max(self.keep, 4096):
            self._compact()

    def _compact(self) -> None:
        merged = torch.cat([self.top, *self.pending], dim=1)
        self.pending, self.pending_width = [], 0
        self.top = merged.topk(min(self.keep, merged.shape[1]), dim=1, sorted=True).values

    def thresholds(self) -> torch.Tensor:
        if self.seen != self.total:
            raise RuntimeError(f"saw {self.seen} values per unit, expected {self.total}")
        self._compact()
        low = self.top[:, self.keep - 1]                       # ascending position `low`
        high = self.top[:, self.keep - 2] if self.keep >= 2 else low
        return low + self.frac * (high - low)


def _engine(engine: str, device: torch.device) -> str:
    """The tally engine for `engine` (auto | numba | torch) on `device`: auto takes numba on the CPU."""
    if engine == "auto":
        return "numba" if device.type == "cpu" and dissect_cpu.available() else "torch"
    if engine not in TALLY_ENGINES or (engine == "numba" and (device.type != "cpu" or not dissect_cpu.available())):
        raise ValueError(f"tally engine {engine!r} on {device}: valid are 'auto', 'torch' and, on the CPU "
                         f"with numba installed, 'numba'")
    return engine


class BatchLabels:
    """A batch's label planes, prepared once and shared by every layer's tally: (B, planes, P) label
    numbers (0 = none), a repeated label at a pixel cleared unless counted per plane, the label areas,
    which categories each image holds, each plane's single label on images where it holds one
    (`uniform`, 0 elsewhere; `varies` where not), and, for the torch tally, each plane as runs:
    maximal stretches of consecutive pixels of an image (in flat pixel order) with one label."""

    def __init__(self, planes: torch.Tensor, label_category: torch.Tensor, per_plane: bool, engine: str = "auto"):
        labels, categories = label_category.shape
        self.category_of = torch.where(label_category.sum(1) > 0, label_category.argmax(1), -1)
        batch, count, self.pixels = planes.shape
        self.images = batch
        if _engine(engine, planes.device) == "numba":
            self.planes, self.area, self.category_present, self.varies, self.uniform = dissect_cpu.label_stats(
                planes, self.category_of, categories, per_plane)
            return
        planes = planes.long()
        if not per_plane:  # a pixel counts once per label, however many planes carry it
            planes = planes.clone()  # cleared in place below; never the caller's tensor
            for k in range(1, count):
                repeated = planes[:, 0] == planes[:, k]
                for j in range(1, k):
                    repeated |= planes[:, j] == planes[:, k]
                planes[:, k].masked_fill_(repeated, 0)
        self.planes = planes
        per_image = torch.bincount((torch.arange(batch, device=planes.device).view(-1, 1, 1) * labels
                                    + planes).view(-1), minlength=batch * labels).view(batch, labels)
        per_image[:, 0] = 0
        self.area = per_image.sum(0)
        present = torch.zeros((batch, categories + 1), device=planes.device)
        present.index_add_(1, self.category_of + 1, (per_image > 0).float())
        self.category_present = present[:, 1:] > 0

    @functools.cached_property
    def varies(self) -> torch.Tensor:
        """(B, planes): whether the plane holds more than one label over the image."""
        return (self.planes != self.planes[:, :, :1]).any(2)

    @functools.cached_property
    def uniform(self) -> torch.Tensor:
        """(B, planes): the plane's one label over the image, 0 where it varies."""
        return torch.where(self.varies, 0, self.planes[:, :, 0].long())

    @functools.cached_property
    def runs(self) -> list[tuple[torch.Tensor, ...]]:
        """Per plane: start, end and label of each run, and the run of each pixel."""
        batch, count, pixels = self.planes.shape
        runs = []
        for k in range(count):
            plane = self.planes[:, k].long()
            change = torch.ones((batch, pixels), dtype=torch.bool, device=plane.device)   # a run starts each image
            change[:, 1:] = plane[:, 1:] != plane[:, :-1]
            change = change.flatten()
            start = change.nonzero().squeeze(1)
            end = torch.cat([start[1:], start.new_tensor([len(change)])])
            runs.append((start, end, plane.reshape(-1).index_select(0, start), torch.cumsum(change, 0) - 1))
        return runs


def _expand(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For items with counts[i] members each: every member's item and its place within the item."""
    item = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    return item, torch.arange(len(item), device=counts.device) - first.index_select(0, item)


class ConceptTally:
    """Sums over images of unit-label intersections, unit areas per category, and label areas, as
    integer counts. engine numba (CPU): reglens.dissect_cpu's loop; torch: each run (a unit's
    activated stretch of a mask row, from activated_runs) is intersected with the label runs it
    overlaps, and the overlaps are added at their unit x label index. Counts at label 0 (no label),
    in both[:, 0], differ between engines; iou ignores them."""

    def __init__(self, units: int, label_category: torch.Tensor, union: str, seg_shape, device,
                 chunk_bytes: int = 64 << 20, engine: str = "auto"):
        self.engine = _engine(engine, torch.device(device))
        self.label_category = label_category.to(device)       # (labels, categories) one-hot
        labels, categories = label_category.shape
        self.units, self.labels, self.categories = units, labels, categories
        self.union, self.seg_shape, self.chunk_bytes = union, tuple(seg_shape), chunk_bytes
        self.both = torch.zeros(units * labels, dtype=torch.long, device=device)
        self.unit_in_category = torch.zeros((units, categories), dtype=torch.long, device=device)
        self.label_area = torch.zeros(labels, dtype=torch.long, device=device)

    def update(self, features: torch.Tensor, thresholds: torch.Tensor, labels: BatchLabels) -> None:
        """features: (B, units, h, w) activations; thresholds: (units,)."""
        self.label_area += labels.area
        if self.engine == "numba":
            h, w = features.shape[2:]
            rows = _axis(self.seg_shape[0], h, features.device, w)
            cols = _axis(self.seg_shape[1], w, features.device, 1)
            dissect_cpu.tally(features, thresholds, hot_floor(thresholds), rows, cols, labels, self.union == "lite",
                              self.both.view(self.units, self.labels), self.unit_in_category)
            return
        for pair_image, pair_unit, (owner, start, length), area in activated_runs(
                features, thresholds, self.seg_shape, self.chunk_bytes):
            begin = pair_image.index_select(0, owner) * labels.pixels + start              # batch flat pixel
            end = begin + length
            pairs = len(pair_image)
            gate = torch.zeros(pairs * (self.categories + 1), dtype=torch.bool, device=begin.device)
            for run_start, run_end, run_label, run_of in labels.runs:          # label 0 is counted, then dropped
                if len(run_start) == labels.images:                             # one label per image (scene, texture)
                    hit, pair, overlap = run_label.index_select(0, pair_image.index_select(0, owner)), owner, length
                else:
                    first = run_of.index_select(0, begin)
                    run, offset = _expand(run_of.index_select(0, end - 1) - first + 1)
                    label_run = first.index_select(0, run) + offset
                    overlap = (torch.minimum(end.index_select(0, run), run_end.index_select(0, label_run))
                               - torch.maximum(begin.index_select(0, run), run_start.index_select(0, label_run)))
                    hit, pair = run_label.index_select(0, label_run), owner.index_select(0, run)
                self.both.index_add_(0, pair_unit.index_select(0, pair) * self.labels + hit, overlap)
                if self.union == "lite":                                        # area overlaps a label of the category
                    gate[pair * (self.categories + 1) + labels.category_of.index_select(0, hit) + 1] = True
            if self.union == "lite":
                gate = gate.view(pairs, self.categories + 1)[:, 1:]
            else:                                                               # the category is in the image
                gate = labels.category_present[pair_image]
            self.unit_in_category.index_add_(0, pair_unit, area.unsqueeze(1) * gate)

    def iou(self, lite: bool = False) -> torch.Tensor:
        """(units, labels) float64. Default: labels outside the chosen categories get 0 and an empty
        union gives 0; lite: NetDissect-Lite's both / (units_cat + labels - both + 1e-10) for every label."""
        both = self.both.view(self.units, self.labels).double()
        both[:, 0] = 0                                                          # no label
        used = self.label_category.sum(1) > 0
        primary = self.label_category.argmax(1)
        union = self.unit_in_category.double()[:, primary] + self.label_area.double().unsqueeze(0) - both
        if lite:
            return both / (union + 1e-10)
        iou = torch.where(union > 0, both / union.clamp_min(1e-12), torch.zeros_like(union))
        return iou * used.unsqueeze(0)


def shrinks(map_shape, shape) -> bool:
    """Whether a map of map_shape is larger than the mask along either axis."""
    return any(m > s for m, s in zip(tuple(map_shape)[-2:], tuple(shape)))


def resize_maps(features: torch.Tensor, shape, downsample: str = "antialias") -> torch.Tensor:
    """(B, units, h, w) -> the maps at the mask size as the tally reads them, float64. A map no larger
    than its mask is returned as it is: the tally upsamples it bilinearly itself (align_corners=False,
    as F.interpolate and PIL alike). A larger one, with `antialias`, is resized as PIL's bilinear
    resize does (NetDissect-Lite's imresize): each mask pixel a triangle-filtered mean of the map
    cells it covers (F.interpolate with antialias=True, equal to PIL to float32 rounding); with
    `sample`, bilinear point sampling (the tally's own upsampling rule, which reads 2 cells per axis
    per mask pixel, however many it covers)."""
    if downsample == "antialias" and shrinks(features.shape, shape):
        return F.interpolate(features.double(), size=tuple(shape), mode="bilinear", align_corners=False,
                             antialias=True)
    return features


def unit_masks(features: torch.Tensor, thresholds: torch.Tensor, shape, downsample: str = "antialias") -> torch.Tensor:
    """(B, units, h, w) activations -> (B, units, sh*sw) bool masks at the segmentation size
    (resize_maps, then bilinear, align_corners=False, in float64 as the tally computes them)."""
    up = F.interpolate(resize_maps(features, shape, downsample).double(), size=tuple(shape), mode="bilinear",
                       align_corners=False)
    return (up > thresholds.double().view(1, -1, 1, 1)).flatten(2)


class _Axis:
    """PyTorch's bilinear sampling along one axis (align_corners=False): per output position its lower
    and upper source positions and the upper one's weight, and its segment: the consecutive outputs
    sharing a lower source position (along which a sampled value is monotone). `key` (segment * 4 +
    weight, non-decreasing) finds by `searchsorted` where a segment's weight crosses a value.
    `size_after`: the row stride of the source maps (their width)."""

    def __init__(self, out: int, size: int, device, size_after: int = 1):
        src = ((torch.arange(out, device=device, dtype=torch.float64) + 0.5) * (size / out) - 0.5).clamp_min(0)
        self.low = src.floor().long().clamp_max(size - 1)
        self.high = (self.low + 1).clamp_max(size - 1)
        self.weight = (src - self.low).clamp(0, 1)
        self.low_w, self.high_w = self.low * size_after, self.high * size_after
        new = torch.ones(out, dtype=torch.bool, device=device)
        new[1:] = self.low[1:] != self.low[:-1]
        self.first = new.nonzero().squeeze(1)                               # each segment's first output
        self.end = torch.cat([self.first[1:], self.first.new_tensor([out])])
        self.seg_low, self.seg_high = self.low[self.first], self.high[self.first]
        self.every_source = len(self.first) == size and bool((self.seg_low == torch.arange(size, device=device)).all())
        self.key = (torch.cumsum(new, 0) - 1).double() * 4 + self.weight


@functools.lru_cache(maxsize=64)
def _axis(out: int, size: int, device: torch.device, size_after: int) -> _Axis:
    """Built once per layer shape, not per batch (on a GPU each build would wait for the device)."""
    return _Axis(out, size, device, size_after)


FLAT = 1e-7      # a row segment whose two ends differ by less than this (relative) is decided as a whole
BAND = 1e-6      # pixels whose weight is this close to the crossing are evaluated one by one
TIE = 1e-12      # a flat segment this close (relative) to the threshold is evaluated pixel by pixel


def hot_floor(thresholds: torch.Tensor) -> torch.Tensor:
    """Per unit, in float64, a value below which no source cell can lift a bilinear pixel above the
    threshold, rounding included: the cells at or above it are the hot cells both engines start from."""
    thr = thresholds.double()
    return thr - thr.abs() * 1e-9 - 1e-300


def _bilinear(maps, pair, y, x, rows: _Axis, cols: _Axis):
    """Upsampled values at output pixels (y, x) of maps[pair] (pairs, h, w), in float64 (along x, then
    y). Gathers here are index_select on flat tensors: on the CPU several times faster than `take` or
    multi-tensor indexing."""
    flat = maps.reshape(-1)
    base = pair * (maps.shape[1] * maps.shape[2])
    a, a1, ly = (v.index_select(0, y) for v in (rows.low_w, rows.high_w, rows.weight))
    a, a1 = a + base, a1 + base
    c, c1, lx = cols.low.index_select(0, x), cols.high.index_select(0, x), cols.weight.index_select(0, x)
    top = (1 - lx) * flat.index_select(0, a + c) + lx * flat.index_select(0, a + c1)
    bottom = (1 - lx) * flat.index_select(0, a1 + c) + lx * flat.index_select(0, a1 + c1)
    return (1 - ly) * top + ly * bottom


def _reach(near: torch.Tensor, far: torch.Tensor, floor: torch.Tensor):
    """The weights w in [0, 1] (widened by BAND) where (1 - w) * near + w * far >= floor, as [low, high];
    empty when low > high."""
    both, neither = (near >= floor) & (far >= floor), (near < floor) & (far < floor)
    cross = (floor - near) / torch.where(far == near, torch.ones_like(far), far - near)
    low = torch.where(near >= floor, torch.zeros_like(cross), cross - BAND)
    high = torch.where(far >= floor, torch.ones_like(cross), cross + BAND)
    return (torch.where(neither, 2.0, torch.where(both, 0.0, low)),
            torch.where(neither, -1.0, torch.where(both, 1.0, high)))


def _either(x: torch.Tensor, dim: int, axis: _Axis) -> torch.Tensor:
    """Along `dim` (source positions), per segment of `axis`: x at its lower or upper source position."""
    size = x.shape[dim]
    if axis.every_source:
        out = x.clone()                                                      # upsampling: position k or k + 1
        out.narrow(dim, 0, size - 1).logical_or_(x.narrow(dim, 1, size - 1))
        return out
    return x.index_select(dim, axis.seg_low) | x.index_select(dim, axis.seg_high)


def _hot_blocks(hot: torch.Tensor, rows: _Axis, cols: _Axis):
    """(pair, row segment, col segment) of the blocks with a hot source cell; hot: (pairs, h, w)."""
    near = _either(_either(hot, 1, rows), 2, cols)
    index = near.view(-1).nonzero().squeeze(1)                               # 1-D: faster than 3-D nonzero
    segments = near.shape[2]
    return index // (near.shape[1] * segments), index // segments % near.shape[1], index % segments


def _block_runs(maps, tp, pair, r, c, rows: _Axis, cols: _Axis, sw: int):
    """activated_runs for blocks (pair, row segment, col segment) of maps (pairs, h, w), each pair's
    threshold tp (float64): (pair, first flat pixel, length) of the runs."""
    h, w = maps.shape[1:]
    flat = maps.reshape(-1)
    base = pair * (h * w)
    top, bottom = base + rows.seg_low.index_select(0, r) * w, base + rows.seg_high.index_select(0, r) * w
    x0, x1 = cols.seg_low.index_select(0, c), cols.seg_high.index_select(0, c)
    a, b_, c_, d = (flat.index_select(0, i).double() for i in (top + x0, top + x1, bottom + x0, bottom + x1))
    scale = torch.stack([a.abs(), b_.abs(), c_.abs(), d.abs(), tp.abs()]).amax(0)
    reach = tp - TIE * scale - 1e-300                                    # the rows that can reach the threshold:
    low_a, high_a = _reach(a, c_, reach)                                  # where column 0 reaches
    low_b, high_b = _reach(b_, d, reach)                                  # ... or column 1 does
    key = r.double() * 4
    row_from = torch.searchsorted(rows.key, key + torch.minimum(low_a, low_b).clamp(-1, 2))
    row_to = torch.searchsorted(rows.key, key + torch.maximum(high_a, high_b).clamp(-1, 2), right=True)
    block, offset = _expand((row_to - row_from).clamp_min(0))          # one item per output row x col segment
    y = row_from.index_select(0, block) + offset
    pair, c, tp, scale = (v.index_select(0, block) for v in (pair, c, tp, scale))
    ly = rows.weight.index_select(0, y)
    a, b_, c_, d = (v.index_select(0, block) for v in (a, b_, c_, d))
    p = (1 - ly) * a + ly * c_                                           # the row's values at column weight 0
    q = (1 - ly) * b_ + ly * d                                           # ... and 1
    first, end = cols.first.index_select(0, c), cols.end.index_select(0, c)
    # an affine segment: sure pixels beyond BAND of the crossing, the rest evaluated one by one
    cross = ((tp - p) / torch.where(q == p, torch.ones_like(p), q - p)).clamp(-1, 2)
    key = c.double() * 4
    low = torch.searchsorted(cols.key, key + (cross - BAND).clamp_min(-1))
    high = torch.searchsorted(cols.key, key + (cross + BAND).clamp_max(2), right=True)
    rising = q > p
    sure_from, sure_to = torch.where(rising, high, first), torch.where(rising, end, low)
    unsure_from, unsure_to = low, high
    # a flat segment: wholly on, wholly off (all four cells 0 and a threshold of 0 is exactly off), or evaluated
    flat_seg = (q - p).abs() <= FLAT * scale
    on = flat_seg & (torch.minimum(p, q) - tp > TIE * scale)
    off = flat_seg & ((torch.maximum(p, q) - tp < -TIE * scale) | (scale == 0))
    sure_from, unsure_from = torch.where(flat_seg, first, sure_from), torch.where(flat_seg, first, unsure_from)
    sure_to = torch.where(on, end, torch.where(flat_seg, first, sure_to))
    unsure_to = torch.where(flat_seg & ~on & ~off, end, torch.where(flat_seg, first, unsure_to))
    length = sure_to - sure_from
    run = (length > 0).nonzero().squeeze(1)
    owner, y_run, from_run, length = (v.index_select(0, run) for v in (pair, y, sure_from, length))
    start = y_run * sw + from_run
    item, offset = _expand((unsure_to - unsure_from).clamp_min(0))
    if len(item):
        ey, ex, epair = y.index_select(0, item), unsure_from.index_select(0, item) + offset, pair.index_select(0, item)
        lit = (_bilinear(maps, epair, ey, ex, rows, cols) > tp.index_select(0, item)).nonzero().squeeze(1)
        owner = torch.cat([owner, epair.index_select(0, lit)])
        start = torch.cat([start, ey.index_select(0, lit) * sw + ex.index_select(0, lit)])
        length = torch.cat([length, torch.ones_like(lit)])
    return owner, start, length


def activated_runs(features: torch.Tensor, thresholds: torch.Tensor, shape, chunk_bytes: int = 64 << 20):
    """The pixels where each unit's bilinearly upsampled map (as F.interpolate, align_corners=False,
    float64) exceeds its threshold, as runs along mask rows, found without evaluating most of them.
    Between two source rows and two source columns the upsampled value is affine along each output
    row, so the activated pixels of a row segment form one interval, whose ends follow from where that
    line crosses the threshold; the rows that can reach it follow likewise from the source cells.
    Pixels within BAND of a crossing, and flat stretches within TIE of the threshold, are evaluated one
    by one in float64; every other pixel is farther from the threshold than any rounding reaches.
    Pixels whose value equals the threshold to rounding (1e-12 relative) are ties that F.interpolate
    itself decides differently by tensor shape; reglens decides them by its own float64 evaluation,
    the same for any batch. Yields, per chunk of images: the image and unit of each of its (image,
    unit) pairs, (pair, first flat pixel, length) of the runs, and each pair's activated area."""
    sh, sw = shape
    batch, units, h, w = features.shape
    device = features.device
    rows, cols = _axis(sh, h, device, w), _axis(sw, w, device, 1)
    thr = thresholds.double()
    floor = hot_floor(thr)
    floor32 = torch.nextafter(floor.float(), torch.tensor(-math.inf, device=device))
    step = max(1, chunk_bytes // (units * (3 * h * w + 3 * len(rows.first) * len(cols.first)) + 1))
    block_step = max(1, chunk_bytes // (256 * int((rows.end - rows.first).max())))   # ~256 bytes per row item
    for s in range(0, batch, step):
        chunk = features[s:s + step]
        n = chunk.shape[0]
        b = torch.arange(s, s + n, device=device).repeat_interleave(units)
        u = torch.arange(units, device=device).repeat(n)
        maps = chunk.flatten(0, 1).contiguous()                              # (pairs, h, w)
        if (h, w) == (sh, sw):                                               # no resize: the map itself
            owner, start = (maps.flatten(1) > thr.repeat(n).view(-1, 1)).nonzero(as_tuple=True)   # compared in float64
            length = torch.ones_like(start)
        else:
            pair, r, c = _hot_blocks(maps >= floor32.repeat(n).view(-1, 1, 1), rows, cols)
            parts = [_block_runs(maps, thr.index_select(0, pair[k:k + block_step] % units), pair[k:k + block_step],
                                 r[k:k + block_step], c[k:k + block_step], rows, cols, sw)
                     for k in range(0, len(pair), block_step)] or [(pair, pair, pair)]
            owner, start, length = (torch.cat(part) for part in zip(*parts))
        area = torch.zeros(n * units, dtype=torch.long, device=device).index_add_(0, owner, length)
        yield b, u, (owner, start, length), area


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
    return {"settings": cfg, "layers": layers, "engine": _engine("auto", device),
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

    return {"counting": COUNTING, "settings": cfg, "total": counts(units),
            "layers": {layer: counts(frame) for layer, frame in units.groupby("layer", sort=False)}}


def group_agreement(units: pd.DataFrame, groups: int, permutations: int = 200, seed: int = 0) -> pd.DataFrame:
    """Do the filters of a group learn one concept? Per layer and group (the layer's units split into
    `groups` contiguous groups, as the group regularizers split filters): the most common best concept
    among the group's units (units that overlap nothing, '-', have none), the share of the group's units
    whose best concept it is (`agreement`), the share that detect it (`detecting`), and `chance`: the
    mean agreement of groups of the same sizes drawn from the layer's units at random (seeded)."""
    gen = np.random.default_rng(seed)
    rows = []

    def modal(concepts: np.ndarray) -> tuple[str, int]:
        named = concepts[concepts != "-"]
        if not len(named):
            return "-", 0
        values, counts = np.unique(named, return_counts=True)
        return str(values[counts.argmax()]), int(counts.max())

    for layer, frame in units.groupby("layer", sort=False):
        frame = frame.sort_values("unit")
        concepts = frame.concept.to_numpy().astype(str)
        detector = frame.detector.to_numpy().astype(bool)
        blocks = np.array_split(np.arange(len(frame)), min(groups, len(frame)))
        shuffled = [gen.permutation(len(frame)) for _ in range(permutations)]
        for g, block in enumerate(blocks):
            concept, count = modal(concepts[block])
            start, stop = block[0], block[-1] + 1
            chance = np.mean([modal(concepts[p[start:stop]])[1] / len(block) for p in shuffled])
            rows.append({"layer": layer, "group": g, "units": len(block), "concept": concept,
                         "agreement": count / len(block),
                         "detecting": float(((concepts[block] == concept) & detector[block]).mean()) if count else 0.0,
                         "chance": float(chance)})
    return pd.DataFrame(rows, columns=["layer", "group", "units", "concept", "agreement", "detecting", "chance"])


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
