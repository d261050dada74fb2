"""Broden (Bau et al., CVPR 2017) in its released on-disk format, read for Network Dissection.

A Broden folder holds `index.csv` (one row per image: `image,split,ih,iw,sh,sw`, then one column per
category with `;`-separated PNG mask files, or image-level label numbers), `category.csv`,
`label.csv`, `c_<category>.csv` and the files under `images/`. A mask PNG encodes the global label
number of each pixel as red + 256 * green.
"""
from __future__ import annotations

import contextlib
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reglens.data.download import RemoteFile
from reglens.io import atomic_path, write_json

URL = "http://netdissect.csail.mit.edu/data/{version}.zip"
# md5 of the official archives we could confirm; other versions need `dissect.broden.md5`
KNOWN_MD5 = {"broden1_224": "be13c292eaef3300da03f8d0e48eab1c"}
META_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")


class BrodenFormatError(ValueError):
    pass


def remote(version: str, md5: str | None = None) -> RemoteFile:
    md5 = md5 or KNOWN_MD5.get(version)
    if md5 is None:
        raise BrodenFormatError(f"dissect.broden.md5: no known checksum for {version!r} (known: "
                                f"{sorted(KNOWN_MD5)}); set the archive's md5 in the config")
    return RemoteFile(f"{version}.zip", (URL.format(version=version),), md5)


def decode_mask(rgb: np.ndarray) -> np.ndarray:
    """Global label numbers of a Broden mask PNG: red + 256 * green."""
    return rgb[..., 0].astype(np.int32) + 256 * rgb[..., 1].astype(np.int32)


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        raise BrodenFormatError(f"{path} is missing; a Broden folder has index.csv, category.csv, "
                                "label.csv and c_<category>.csv")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _need(row: dict, keys, path: Path) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise BrodenFormatError(f"{path}: columns {missing} missing; found {sorted(row)}")


MAX_LABEL = 65535       # a mask pixel's label is red + 256 * green: at most 65,535 (Broden 1: 1,197)
MAX_SIDE = 8192         # image and segmentation sides in index.csv (Broden: 224 and 112)


def _integer(row: dict, key: str, path: Path, line: int, low: int | None = None, high: int | None = None) -> int:
    value = row.get(key)
    if value is None or not re.fullmatch(r"\s*-?\d+\s*", value):
        raise BrodenFormatError(f"{path} row {line}: {key}={value!r} is not an integer")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise BrodenFormatError(f"{path} row {line}: {key}={number} is outside [{low}, {high}]")
    return number


def _number(row: dict, key: str, path: Path, line: int) -> float:
    try:
        value = float(row[key])
    except (TypeError, ValueError):
        raise BrodenFormatError(f"{path} row {line}: {key}={row.get(key)!r} is not a number") from None
    if not np.isfinite(value):
        raise BrodenFormatError(f"{path} row {line}: {key}={value} is not a finite number")
    return value


@dataclass
class ImageEntry:
    image: str
    split: str
    ih: int
    iw: int
    sh: int
    sw: int
    masks: list[str]            # pixel-level mask PNGs (any category)
    image_labels: list[int]     # image-level labels (scene, texture): they cover the whole image
    row: int = 0                # line in index.csv (for error messages)


class Broden:
    """The metadata of a Broden folder: categories, labels with their primary category, images.

    `ties`: which category a label belongs to when two cover it equally ("first" listed, or "last" as
    NetDissect-Lite's max((coverage, index)) does; Lite also puts labels listed in no category into the
    last one). `drop_unlabelled`: leave out images with no label in the chosen categories (Lite)."""

    def __init__(self, root: str | Path, categories: list[str] | None = None, ties: str = "first",
                 drop_unlabelled: bool = False):
        self.root = Path(root)
        cat_rows = _read_csv(self.root / "category.csv")
        if not cat_rows:
            raise BrodenFormatError(f"{self.root / 'category.csv'} lists no categories")
        _need(cat_rows[0], ["name"], self.root / "category.csv")
        available = [r["name"] for r in cat_rows]
        if categories is None:
            categories = available
        unknown = sorted(set(categories) - set(available))
        if unknown:
            raise BrodenFormatError(f"dissect.categories: {unknown} not in {self.root / 'category.csv'}; "
                                    f"valid: {available}")
        if ties not in ("first", "last"):
            raise ValueError(f"ties: {ties!r}; valid: ['first', 'last']")
        self.categories = list(categories)
        self.ties, self.drop_unlabelled = ties, drop_unlabelled
        self.decoded: Path | None = None
        self._maps: dict = {}

        label_path = self.root / "label.csv"
        label_rows = _read_csv(label_path)
        if not label_rows:
            raise BrodenFormatError(f"{label_path} lists no labels (a header and no rows)")
        _need(label_rows[0], ["number", "name"], label_path)
        numbers = [_integer(r, "number", label_path, row, 0, MAX_LABEL) for row, r in enumerate(label_rows, start=2)]
        size = max(numbers) + 1
        self.names = ["-"] * size
        for number, r in zip(numbers, label_rows):
            self.names[number] = r["name"]
        self.listed = np.zeros(size, dtype=bool)
        self.listed[numbers] = True
        self.listed[0] = False

        # primary category of a label: the category where its coverage is highest (c_<cat>.csv)
        coverage = np.zeros((size, len(self.categories)))
        self.in_category = np.zeros((size, len(self.categories)), dtype=bool)
        for c, cat in enumerate(self.categories):
            path = self.root / f"c_{cat}.csv"
            for row, r in enumerate(_read_csv(path), start=2):
                _need(r, ["number", "coverage"], path)
                number = _integer(r, "number", path, row)
                if 0 < number < size:
                    coverage[number, c] = _number(r, "coverage", path, row)
                    self.in_category[number, c] = True
        if ties == "first":
            self.primary = np.where(self.in_category.any(1), coverage.argmax(1), -1)  # -1: unused label
        else:
            self.primary = len(self.categories) - 1 - coverage[:, ::-1].argmax(1)
            self.primary[0] = -1

        index_path = self.root / "index.csv"
        rows = _read_csv(index_path)
        if not rows:
            raise BrodenFormatError(f"{index_path} lists no images")
        _need(rows[0], list(META_COLUMNS) + self.categories, index_path)
        self.images = []
        for row, r in enumerate(rows, start=2):
            if None in r or None in r.values():
                fields = len(r) - list(r.values()).count(None) + len(r.get(None, [])) - (None in r)
                raise BrodenFormatError(f"{index_path} row {row}: {fields} fields where the header has "
                                        f"{len(r) - (None in r)}")
            masks, image_labels = [], []
            for cat in self.categories:
                for item in filter(None, (r[cat] or "").split(";")):
                    if re.fullmatch(r"\d+", item):
                        if not (int(item) < size and self.listed[int(item)]):
                            raise BrodenFormatError(f"{index_path} row {row}, column {cat}: label {item} is not "
                                                    f"listed in {label_path}")
                        image_labels.append(int(item))
                    else:
                        masks.append(item)
            if drop_unlabelled and not masks and not image_labels:
                continue
            self.images.append(ImageEntry(r["image"], r["split"], *(_integer(r, k, index_path, row, 1, MAX_SIDE) for k in
                                                                     ("ih", "iw", "sh", "sw")), masks, image_labels, row))
        if not self.images:
            raise BrodenFormatError(f"{index_path}: no image has a label in the categories {self.categories}")
        shapes = {(e.sh, e.sw) for e in self.images}
        if len(shapes) != 1:
            raise BrodenFormatError(f"{index_path}: segmentation sizes differ {sorted(shapes)[:4]}; "
                                    "reglens dissects one resolution at a time")
        self.seg_shape = shapes.pop()

    @property
    def num_labels(self) -> int:
        return len(self.names)

    def label_category_matrix(self) -> np.ndarray:
        """(labels, categories) one-hot of each label's primary category (all zero for unused)."""
        onehot = np.zeros((self.num_labels, len(self.categories)), dtype=np.float32)
        used = self.primary >= 0
        onehot[np.flatnonzero(used), self.primary[used]] = 1
        onehot[0] = 0
        return onehot

    def __len__(self) -> int:
        return len(self.images)

    def view(self) -> dict:
        """What decides the images and planes this object serves (a decoded copy must match it)."""
        return {"categories": self.categories, "ties": self.ties,
                "drop_unlabelled": self.drop_unlabelled, "images": len(self.images),
                "seg_shape": list(self.seg_shape)}

    def use_decoded(self, folder: str | Path) -> None:
        """Serve images and planes from a copy written by `decode` instead of the JPEGs and PNGs."""
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.exists():
            raise BrodenFormatError(f"{meta_path} is missing: {folder} is not a complete decoded Broden "
                                    "(reglens.data.broden.decode writes meta.json last)")
        meta = json.loads(meta_path.read_text())
        if meta.get("view") != self.view():
            raise BrodenFormatError(f"{folder} was decoded for {meta.get('view')}, not for {self.view()}; "
                                    "decode it again for these settings")
        self.decoded, self._meta, self._maps = folder, meta, {}

    def __getstate__(self):  # DataLoader workers open the memory maps themselves
        return {**self.__dict__, "_maps": {}}

    def _map(self, name: str) -> np.ndarray:
        if name not in self._maps:
            self._maps[name] = np.load(self.decoded / f"{name}.npy", mmap_mode="r")
        return self._maps[name]

    def load_image(self, i: int, size: int, channels: int = 3) -> torch.Tensor:
        """uint8 (channels, size, size): the image resized bilinearly; grayscale as ITU-R 601 luma."""
        if self.decoded is not None and f"images_{size}_c{channels}" in self._meta["arrays"]:
            return torch.from_numpy(np.array(self._map(f"images_{size}_c{channels}")[i]))
        with Image.open(self.root / "images" / self.images[i].image) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(array.reshape(size, size, channels).copy()).permute(2, 0, 1)

    def load_planes(self, i: int) -> torch.Tensor:
        """int32 (planes, sh, sw) of global label numbers; an image-level label is a constant plane."""
        entry = self.images[i]
        if self.decoded is not None:
            start, stop = self._map("mask_offsets")[i:i + 2]
            masks = self._map("masks")[start:stop].astype(np.int32)
            constant = [np.full((entry.sh, entry.sw), label, dtype=np.int32) for label in entry.image_labels]
            return torch.from_numpy(np.concatenate([masks, *(c[None] for c in constant)]) if constant else masks)
        planes = []
        for name in entry.masks:
            with Image.open(self.root / "images" / name) as png:
                rgb = np.asarray(png.convert("RGB"))
            if rgb.shape[:2] != (entry.sh, entry.sw):
                raise BrodenFormatError(f"{name}: mask is {rgb.shape[:2]}, index.csv says "
                                        f"{(entry.sh, entry.sw)}")
            decoded = decode_mask(rgb)
            found = np.unique(decoded)
            bad = found[(found >= len(self.listed)) | ~self.listed[np.minimum(found, len(self.listed) - 1)]]
            bad = bad[bad > 0]
            if len(bad):
                raise BrodenFormatError(f"{self.root / 'images' / name} (index.csv row {entry.row}): label "
                                        f"number(s) {bad[:5].tolist()} are not listed in label.csv")
            planes.append(decoded)
        planes += [np.full((entry.sh, entry.sw), label, dtype=np.int32) for label in entry.image_labels]
        if not planes:
            return torch.zeros((0, entry.sh, entry.sw), dtype=torch.int32)
        return torch.from_numpy(np.stack(planes).astype(np.int32))


class BrodenImages(torch.utils.data.Dataset):
    """(index, image uint8, label planes) for a DataLoader; `collate` pads the plane counts."""

    def __init__(self, broden: Broden, size: int, channels: int):
        self.broden, self.size, self.channels = broden, size, channels

    def __len__(self) -> int:
        return len(self.broden)

    def __getitem__(self, i: int):
        return i, self.broden.load_image(i, self.size, self.channels), self.broden.load_planes(i)

    @staticmethod
    def collate(batch):
        index = torch.tensor([b[0] for b in batch])
        images = torch.stack([b[1] for b in batch])
        depth = max(1, max(b[2].shape[0] for b in batch))
        sh, sw = batch[0][2].shape[1:]
        planes = torch.zeros((len(batch), depth, sh, sw), dtype=torch.int32)
        for k, b in enumerate(batch):
            planes[k, :b[2].shape[0]] = b[2]
        return index, images, planes


class _Decoding(torch.utils.data.Dataset):
    def __init__(self, broden: Broden, sizes):
        self.broden, self.sizes = broden, sizes

    def __len__(self):
        return len(self.broden)

    def __getitem__(self, i):
        images = [self.broden.load_image(i, size, channels).numpy() for size, channels in self.sizes]
        masks = self.broden.load_planes(i)[:len(self.broden.images[i].masks)].numpy()
        return i, images, masks


def decode(broden: Broden, out_dir: str | Path, sizes, workers: int = 0) -> Path:
    """Decode every image once at each (size, channels) of `sizes`, and every mask PNG, into
    memory-mappable .npy files: images_<size>_c<channels> (uint8, images x channels x size x size),
    masks (uint16 label numbers, one plane per mask PNG, all images' planes in a row) and
    mask_offsets (image i's planes are masks[offsets[i]:offsets[i+1]]); meta.json, written last,
    names the Broden view they serve. Mask labels are checked as they are decoded."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)
    if broden.num_labels > 2 ** 16:
        raise BrodenFormatError(f"{broden.root / 'label.csv'}: label numbers up to {broden.num_labels - 1} do not "
                                "fit the decoded masks' uint16")
    sizes = [(int(size), int(channels)) for size, channels in sizes]
    n, (sh, sw) = len(broden), broden.seg_shape
    offsets = np.concatenate([[0], np.cumsum([len(e.masks) for e in broden.images])]).astype(np.int64)
    shapes = {f"images_{size}_c{channels}": (np.uint8, (n, channels, size, size)) for size, channels in sizes}
    shapes["masks"] = (np.uint16, (int(offsets[-1]), sh, sw))
    loader = torch.utils.data.DataLoader(_Decoding(broden, sizes), batch_size=None, num_workers=workers)
    with contextlib.ExitStack() as stack:  # every array renamed into place only if all were written
        tmp = {name: stack.enter_context(atomic_path(out / f"{name}.npy", record=False)) for name in shapes}
        arrays = {name: np.lib.format.open_memmap(tmp[name], "w+", dtype, shape)
                  for name, (dtype, shape) in shapes.items()}
        for i, images, masks in loader:
            for name, image in zip(list(shapes)[:len(sizes)], images):  # the image arrays come first
                arrays[name][i] = image
            arrays["masks"][offsets[i]:offsets[i + 1]] = masks
        for array in arrays.values():
            array.flush()
        with atomic_path(out / "mask_offsets.npy", record=False) as path, open(path, "wb") as handle:
            np.save(handle, offsets)
    write_json(out / "meta.json", {"view": broden.view(), "arrays": [*shapes, "mask_offsets"]})
    return out
