"""The dissection's streaming pieces: the exact per-unit quantile, a batch's label statistics, and the
concept tally (its two engines: the compiled CPU loop of reglens.dissect.cpu, and run-based torch ops
on reglens.dissect.geometry's activated runs)."""
from __future__ import annotations

import functools
import math

import torch

import reglens.dissect.cpu as cpu
from reglens.dissect.geometry import _axis, _expand, activated_runs, hot_floor

TALLY_ENGINES = ("numba", "torch")   # the compiled CPU loop (reglens.dissect.cpu) or the run-based torch tally


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


def engine_of(engine: str, device: torch.device) -> str:
    """The tally engine for `engine` (auto | numba | torch) on `device`: auto takes numba on the CPU."""
    if engine == "auto":
        return "numba" if device.type == "cpu" and cpu.available() else "torch"
    if engine not in TALLY_ENGINES or (engine == "numba" and (device.type != "cpu" or not cpu.available())):
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
        if engine_of(engine, planes.device) == "numba":
            self.planes, self.area, self.category_present, self.varies, self.uniform = cpu.label_stats(
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


class ConceptTally:
    """Sums over images of unit-label intersections, unit areas per category, and label areas, as
    integer counts. engine numba (CPU): reglens.dissect.cpu's loop; torch: each run (a unit's
    activated stretch of a mask row, from activated_runs) is intersected with the label runs it
    overlaps, and the overlaps are added at their unit x label index. Counts at label 0 (no label),
    in both[:, 0], differ between engines; iou ignores them."""

    def __init__(self, units: int, label_category: torch.Tensor, union: str, seg_shape, device,
                 chunk_bytes: int = 64 << 20, engine: str = "auto"):
        self.engine = engine_of(engine, torch.device(device))
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
            cpu.tally(features, thresholds, hot_floor(thresholds), rows, cols, labels, self.union == "lite",
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
