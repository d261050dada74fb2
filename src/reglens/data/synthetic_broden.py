"""A small dataset in exactly Broden's on-disk format, whose concepts are real visual properties
with known masks: colours (per pixel), shapes as objects, their rims as a part, three scenes
(image-level, each with its own background colour) and stripes/checkers in two neutral colours
(black, white, gray) as textures (image-level); red, green, blue and yellow appear only on shapes.

Everything is drawn at the segmentation resolution and enlarged `scale` times (nearest) for the
image, as in broden1_224 (224-pixel images, 112-pixel masks), so masks are exact at pixel level.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128), "red": (255, 0, 0),
          "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
SHAPE_COLORS = ("red", "green", "blue", "yellow")
SCENES = {"night": "black", "snow": "white", "fog": "gray"}   # scene -> background colour
OBJECTS = ("disk", "square", "triangle")
PARTS = ("rim",)
TEXTURES = ("vertical stripes", "horizontal stripes", "checkers")
CATEGORIES = {"color": tuple(COLORS), "object": OBJECTS, "part": PARTS, "scene": tuple(SCENES),
              "texture": TEXTURES}
INDEX_COLUMNS = ["image", "split", "ih", "iw", "sh", "sw", "color", "object", "part", "material",
                 "scene", "texture"]


def label_numbers() -> dict[str, int]:
    """Global label numbers (0 is 'no label'), in category order."""
    names = [name for names in CATEGORIES.values() for name in names]
    return {name: i + 1 for i, name in enumerate(names)}


def _shape_mask(kind: str, size: int, top: int, left: int, s: int) -> np.ndarray:
    rows, cols = np.mgrid[0:s, 0:s]
    r, c = rows - top, cols - left
    inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
    if kind == "square":
        return inside
    if kind == "disk":
        half = (size - 1) / 2
        return inside & ((r - half) ** 2 + (c - half) ** 2 <= (size / 2) ** 2)
    # triangle pointing up: its width grows linearly from the apex row to the base row
    return inside & (np.abs(c - (size - 1) / 2) <= (r + 1) / 2)


def _rim(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def _texture(kind: str, s: int) -> np.ndarray:
    rows, cols = np.mgrid[0:s, 0:s]
    if kind == "vertical stripes":
        return (cols // 2) % 2 == 1
    if kind == "horizontal stripes":
        return (rows // 2) % 2 == 1
    return (rows // 2 + cols // 2) % 2 == 1


def _png(path: Path, labels: np.ndarray) -> None:
    rgb = np.zeros(labels.shape + (3,), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1] = labels % 256, labels // 256
    Image.fromarray(rgb).save(path)


def write_broden(root: str | Path, n_images: int = 200, seg_size: int = 32, scale: int = 2,
                 seed: int = 0, texture_images: dict[str, int] | None = None,
                 color_weights: dict[str, float] | None = None) -> dict:
    """Write the dataset into `root` (through a temporary folder, renamed at the end).

    texture_images: images per texture (default n_images // 15 each); the other images are scenes
    with one or two shapes. color_weights: relative frequency of each shape colour.
    Returns per-label pixel counts (label_pixels) and image counts (label_images) at mask resolution.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    numbers = label_numbers()
    textures = texture_images if texture_images is not None else {t: n_images // 15 for t in TEXTURES}
    unknown = sorted(set(textures) - set(TEXTURES))
    if unknown:
        raise ValueError(f"texture_images: unknown textures {unknown}; valid: {list(TEXTURES)}")
    kinds = [t for t, n in textures.items() for _ in range(n)]
    if len(kinds) > n_images:
        raise ValueError(f"texture_images asks for {len(kinds)} images, more than n_images={n_images}")
    kinds += ["shapes"] * (n_images - len(kinds))
    kinds = [kinds[i] for i in rng.permutation(n_images)]
    weights = np.array([(color_weights or {}).get(c, 1.0) for c in SHAPE_COLORS], dtype=float)
    weights /= weights.sum()

    tmp = root.with_name(root.name + ".writing")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images" / "synthetic").mkdir(parents=True)
    s, pixels = seg_size, np.zeros(len(numbers) + 1)
    images_with = np.zeros(len(numbers) + 1)
    rows = []
    for i, kind in enumerate(kinds):
        color = np.zeros((s, s), dtype=np.int64)
        obj = np.zeros((s, s), dtype=np.int64)
        part = np.zeros((s, s), dtype=np.int64)
        scene, texture = "", ""
        if kind == "shapes":
            scene_name = rng.choice(list(SCENES))
            scene = str(numbers[scene_name])
            color[:] = numbers[SCENES[scene_name]]
            for _ in range(rng.integers(1, 3)):
                size = 2 * rng.integers(s // 8, s // 4 + 1)
                top, left = 2 * rng.integers(0, (s - size) // 2 + 1, size=2)
                shape = OBJECTS[rng.integers(len(OBJECTS))]
                mask = _shape_mask(shape, size, top, left, s)
                color[mask] = numbers[SHAPE_COLORS[rng.choice(len(SHAPE_COLORS), p=weights)]]
                obj[mask] = numbers[shape]
                part[mask] = 0
                part[_rim(mask)] = numbers["rim"]
        else:
            texture = str(numbers[kind])
            first, second = rng.choice(list(SCENES.values()), size=2, replace=False)  # neutral colours
            color[:] = numbers[first]
            color[_texture(kind, s)] = numbers[second]
        palette = np.zeros((len(numbers) + 1, 3), dtype=np.uint8)
        for name, rgb in COLORS.items():
            palette[numbers[name]] = rgb
        image = np.repeat(np.repeat(palette[color], scale, axis=0), scale, axis=1)
        stem = f"synthetic/img_{i:05d}"
        Image.fromarray(image).save(tmp / "images" / f"{stem}.jpg", quality=100, subsampling=0)
        masks = {}
        for cat, array in (("color", color), ("object", obj), ("part", part)):
            if array.any():
                _png(tmp / "images" / f"{stem}_{cat}.png", array)
                masks[cat] = f"{stem}_{cat}.png"
        for array in (color, obj, part):
            counts = np.bincount(array.ravel(), minlength=len(pixels))
            pixels += counts
            images_with += counts > 0
        for label in filter(None, (scene, texture)):
            pixels[int(label)] += s * s
            images_with[int(label)] += 1
        rows.append({"image": f"{stem}.jpg", "split": "train", "ih": s * scale, "iw": s * scale,
                     "sh": s, "sw": s, "color": masks.get("color", ""), "object": masks.get("object", ""),
                     "part": masks.get("part", ""), "material": "", "scene": scene, "texture": texture})
    pixels[0] = images_with[0] = 0

    with open(tmp / "index.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    coverage = pixels / (s * s)  # in units of whole images, as Broden's files give it
    with open(tmp / "label.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        for cat, names in CATEGORIES.items():
            for name in names:
                n = numbers[name]
                writer.writerow([n, name, f"{cat}({int(images_with[n])})", int(images_with[n]),
                                 f"{coverage[n]:.6f}", ""])
    with open(tmp / "category.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "first", "last", "count", "frequency"])
        for cat, names in CATEGORIES.items():
            writer.writerow([cat, 1, len(names), len(names), sum(int(images_with[numbers[n]]) for n in names)])
    for cat, names in CATEGORIES.items():
        with open(tmp / f"c_{cat}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["code", "number", "name", "frequency", "coverage"])
            for code, name in enumerate(names, start=1):
                n = numbers[name]
                writer.writerow([code, n, name, int(images_with[n]), f"{coverage[n]:.6f}"])
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return {"label_pixels": pixels, "label_images": images_with, "kinds": kinds}
