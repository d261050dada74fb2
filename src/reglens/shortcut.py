"""Planted shortcuts: a known spurious mark, and what it tells about models and explanations.

A shortcut dataset is a base dataset whose training images carry, with probability `rate`, a small
class-specific mark: a size x size patch of a pattern of black and white pixels that is the class's
own (distinct across classes), at a class-specific slot ('class'), the bottom-right corner ('fixed')
or a random position ('random'). The test split is kept clean and is written twice more: every image
with its own class's mark ('marked') and with the mark of a wrong class drawn at random ('flipped').
Every marked image keeps its mark's pixel mask (the training masks are the annotation that the
'rrr' regularizer's penalty reads).

Measures: how much a model relies on the mark (clean minus flipped accuracy; how often a flipped
prediction follows the mark), and, per attribution method on the marked images, the share of
attribution mass inside the mark and the pointing game (is the map's maximum inside the mark?).
"""
from __future__ import annotations

import itertools

import torch

PLACEMENTS = ("class", "fixed", "random")
SHORTCUT_DEFAULTS = {"kind": "patch", "size": 2, "rate": 1.0, "placement": "class", "seed": 0}
MEASURE_DEFAULTS = {"methods": ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad",
                                "guided_backprop", "gradcam", "occlusion", "extremal_perturbation",
                                "meaningful_perturbation", "random"],
                    "images": 100, "batch_size": 100}


def settings(given: dict) -> dict:
    return {**SHORTCUT_DEFAULTS, **given}


def check(settings_: dict, channels: int, side: int, num_classes: int) -> None:
    """Raise ValueError naming the key when a mark cannot be planted on this dataset."""
    s = settings(settings_)
    if s["kind"] != "patch":
        raise ValueError(f"kind: {s['kind']!r} is not valid; valid: ['patch']")
    if s["placement"] not in PLACEMENTS:
        raise ValueError(f"placement: {s['placement']!r} is not valid; valid: {list(PLACEMENTS)}")
    if not 1 <= s["size"] < side:
        raise ValueError(f"size: {s['size']} must be at least 1 and below the image side ({side})")
    patterns = 2 ** (channels * s["size"] ** 2) - 2
    if patterns < num_classes:
        raise ValueError(f"size: a {s['size']}x{s['size']} mark on {channels} channel(s) has {patterns} distinct "
                         f"two-tone patterns, fewer than the {num_classes} classes; use a larger size")
    slots = (side // s["size"]) ** 2
    if s["placement"] == "class" and slots < num_classes:
        raise ValueError(f"size: {slots} slots of {s['size']} pixels fit in a {side}-pixel image, fewer than "
                         f"the {num_classes} classes placement 'class' needs")


def mark_patterns(num_classes: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """(K, C, s, s) uint8: per class a distinct pattern of 0 and 255 holding both values."""
    gen = torch.Generator().manual_seed(seed)
    bits = channels * size * size
    out, seen = [], set()
    while len(out) < num_classes:
        code = int(torch.randint(1, 2 ** bits - 1, (1,), generator=gen)) if bits < 62 else None
        pattern = (torch.tensor([(code >> i) & 1 for i in range(bits)]) if code is not None
                   else torch.randint(0, 2, (bits,), generator=gen))
        key = tuple(pattern.tolist())
        if key in seen or len(set(key)) < 2:
            continue
        seen.add(key)
        out.append(pattern.view(channels, size, size) * 255)
    return torch.stack(out).to(torch.uint8)


def class_slots(num_classes: int, side: int, size: int, seed: int) -> torch.Tensor:
    """(K, 2) distinct top-left corners, one per class, on the grid of non-overlapping slots."""
    gen = torch.Generator().manual_seed(seed + 1)
    grid = list(itertools.product(range(0, side - size + 1, size), repeat=2))
    pick = torch.randperm(len(grid), generator=gen)[:num_classes]
    return torch.tensor([grid[i] for i in pick.tolist()], dtype=torch.long)


def positions(mark_class: torch.Tensor, placement: str, slots: torch.Tensor, side: int, size: int,
              gen: torch.Generator) -> torch.Tensor:
    """(N, 2) top-left corners of the marks of classes `mark_class`."""
    if placement == "class":
        return slots[mark_class]
    if placement == "fixed":
        return torch.full((len(mark_class), 2), side - size, dtype=torch.long)
    return torch.randint(0, side - size + 1, (len(mark_class), 2), generator=gen)


def stamp(x: torch.Tensor, marks: torch.Tensor, corners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of uint8 images x (N, C, H, W) with marks (N, C, s, s) at corners (N, 2), and the marks'
    pixel masks (N, H, W) bool."""
    n, _, h, w = x.shape
    s = marks.shape[-1]
    out = x.clone()
    rows = (corners[:, 0:1] + torch.arange(s)).view(n, s, 1)
    cols = (corners[:, 1:2] + torch.arange(s)).view(n, 1, s)
    index = torch.arange(n).view(n, 1, 1)
    channels_last = out.permute(0, 2, 3, 1)  # a view: writing it writes out
    channels_last[index, rows, cols] = marks.permute(0, 2, 3, 1)
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    mask[index, rows, cols] = True
    return out, mask


def plant(blob: dict, given: dict) -> dict:
    """The shortcut dataset of a base dataset's tensor dictionary (as reglens.data.convert makes it)."""
    s = settings(given)
    x_train, y_train, x_test, y_test = blob["x_train"], blob["y_train"], blob["x_test"], blob["y_test"]
    k, c, side = len(blob["classes"]), x_train.shape[1], x_train.shape[-1]
    check(s, c, side, k)
    size = s["size"]
    patterns = mark_patterns(k, c, size, s["seed"])
    slots = class_slots(k, side, size, s["seed"])
    gen = torch.Generator().manual_seed(s["seed"] + 2)
    marked = torch.rand(len(y_train), generator=gen) < s["rate"]
    corners = positions(y_train[marked], s["placement"], slots, side, size, gen)
    stamped, masks_train = stamp(x_train[marked], patterns[y_train[marked]], corners)
    x_train = x_train.clone()
    x_train[marked] = stamped
    mask_train = torch.zeros(len(y_train), side, side, dtype=torch.bool)
    mask_train[marked] = masks_train
    x_marked, mask_marked = stamp(x_test, patterns[y_test], positions(y_test, s["placement"], slots, side, size, gen))
    wrong = (y_test + torch.randint(1, k, (len(y_test),), generator=gen)) % k
    x_flipped, mask_flipped = stamp(x_test, patterns[wrong], positions(wrong, s["placement"], slots, side, size, gen))
    return {**blob, "x_train": x_train, "marked_train": marked, "mask_train": mask_train,
            "x_test_marked": x_marked, "mask_test_marked": mask_marked,
            "x_test_flipped": x_flipped, "mask_test_flipped": mask_flipped, "mark_test_flipped": wrong,
            "shortcut": {**s, "patterns": patterns, "slots": slots}}


def reliance(pred_clean: torch.Tensor, pred_flipped: torch.Tensor, labels: torch.Tensor,
             mark_class: torch.Tensor) -> dict:
    """Clean and flipped accuracy, their difference (the reliance), and the share of flipped images
    predicted as their mark's class."""
    clean = float((pred_clean == labels).double().mean())
    flipped = float((pred_flipped == labels).double().mean())
    return {"acc_clean": clean, "acc_flipped": flipped, "reliance": clean - flipped,
            "follow": float((pred_flipped == mark_class).double().mean())}


def mass_inside(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image, the share of a non-negative map's total inside the mask (maps, mask: (N, P));
    NaN where the map is zero everywhere."""
    maps = maps.double()
    total = maps.sum(1)
    inside = (maps * mask).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan")))


def pointing(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image, the pointing game: 1 when the map's maximum lies inside the mask; ties share the hit
    (the share of maximal pixels inside), as a random tie-break would on average. NaN for a constant map."""
    maps = maps.double()
    top = maps == maps.max(1, keepdim=True).values
    hit = (top & mask).sum(1).double() / top.sum(1).double()
    constant = maps.max(1).values == maps.min(1).values
    return torch.where(constant, torch.full_like(hit, float("nan")), hit)
