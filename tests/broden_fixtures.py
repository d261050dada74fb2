"""Broden folders written in the real on-disk format for the dissection and reader tests."""
import csv

import numpy as np
from PIL import Image

from reglens.data import broden as broden_io


def stacked_planes(b: broden_io.Broden) -> np.ndarray:
    """(images, planes, sh, sw), padded with 0 as the DataLoader's collate pads a batch."""
    dataset = broden_io.BrodenImages(b, 8, 3)
    return dataset.collate([dataset[i] for i in range(len(b))])[2].numpy().astype(np.int64)


def write_tricky_broden(root, n_images=40, unlabelled=6, seed=0):
    """A Broden with what Lite and reglens count differently: images with no label at all, label 5 in
    both object and part planes at the same pixels (equal coverage in both categories), a label listed
    in no category, and a material category (Lite leaves it out)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    (root / "images").mkdir()
    categories = ["object", "part", "scene", "material", "color"]
    members = {"object": [1, 2, 3, 4, 5], "part": [5, 6, 7, 8], "scene": [9, 10], "material": [11, 12],
               "color": [13, 14, 15]}
    names = {k: f"label{k}" for k in range(1, 17)}          # 16 is listed but in no category
    sh = 8
    rows = []
    for i in range(n_images):
        image = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"im{i}.png")
        row = {"image": f"im{i}.png", "split": "train", "ih": 16, "iw": 16, "sh": sh, "sw": sh,
               **{c: "" for c in categories}}
        if i >= unlabelled:
            for cat in ("object", "part", "material", "color"):
                plane = rng.choice([0] + members[cat], size=(sh, sh)).astype(np.int32)
                if cat == "part":
                    plane[:3] = np.where(rng.random((3, sh)) < 0.5, 5, plane[:3])  # label 5 repeats object's
                if cat == "object":
                    plane[:3] = 5
                rgb = np.stack([plane % 256, plane // 256, np.zeros_like(plane)], -1).astype(np.uint8)
                Image.fromarray(rgb).save(root / "images" / f"im{i}_{cat}.png")
                row[cat] = f"im{i}_{cat}.png"
            if i % 3 == 0:
                row["scene"] = str(rng.choice(members["scene"]))
        rows.append(row)
    with open(root / "index.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["image", "split", "ih", "iw", "sh", "sw"] + categories)
        writer.writeheader()
        writer.writerows(rows)
    with open(root / "category.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["name", "first", "last", "count", "frequency"]] +
                                     [[c, 1, 1, len(members[c]), 1] for c in categories])
    with open(root / "label.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["number", "name", "category", "frequency", "coverage", "syns"]] +
                                     [[k, v, "", 1, 1, ""] for k, v in names.items()])
    for cat in categories:
        with open(root / f"c_{cat}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([["code", "number", "name", "frequency", "coverage"]] +
                                         [[j + 1, k, names[k], 1, 0.5 if k == 5 else 0.1 + 0.01 * k]
                                          for j, k in enumerate(members[cat])])
    return root
