"""Where a unit's map is activated at the mask's resolution: resizing a larger map as PIL does, the
bilinear upsampling the tally reads, and the runs of activated pixels along mask rows, found exactly
from where the bilinear map crosses the threshold."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def _expand(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For items with counts[i] members each: every member's item and its place within the item."""
    item = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    return item, torch.arange(len(item), device=counts.device) - first.index_select(0, item)


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
