"""Broden's on-disk format: the reader against the pixels written, mask PNGs, categories, checksummed
staging, named errors for bad files, and the decoded copy serving the same data."""
import csv
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from broden_fixtures import stacked_planes, write_tricky_broden
from reglens import config, dissect, models
from reglens.data import broden as broden_io
from reglens.data.download import ChecksumError, md5sum
from reglens.data.synthetic_broden import CATEGORIES, label_numbers
from reglens.stages.data import fetch_broden


def test_reader_recovers_every_labelled_pixel(small):
    root, info = small
    b = broden_io.Broden(root)
    assert b.categories == ["color", "object", "part", "scene", "texture"]
    assert len(b) == 48 and b.seg_shape == (16, 16)
    planes = stacked_planes(b)
    counts = np.zeros(b.num_labels)
    for image in planes:
        for label in np.unique(image[image > 0]):
            counts[label] += (image == label).any(0).sum()
    np.testing.assert_array_equal(counts, info["label_pixels"])
    numbers = label_numbers()
    # every pixel has exactly one colour label; every image has one scene or one texture, whole-image
    colours = [numbers[c] for c in CATEGORIES["color"]]
    assert (np.isin(planes, colours).sum(1) == 1).all()
    image_level = [numbers[n] for n in CATEGORIES["scene"] + CATEGORIES["texture"]]
    whole = np.isin(planes, image_level).all(axis=(2, 3))
    assert (whole.sum(1) == 1).all()
    assert b.primary[numbers["red"]] == 0 and b.primary[numbers["night"]] == 3 and b.primary[numbers["checkers"]] == 4
    image = b.load_image(0, 32)
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert b.load_image(0, 32, channels=1).shape == (1, 32, 32)


def test_mask_png_decodes_red_plus_256_green(tmp_path):
    labels = np.array([[0, 1, 255], [256, 300, 1198]])
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = labels % 256, labels // 256, 77  # blue is ignored
    Image.fromarray(rgb).save(tmp_path / "m.png")
    np.testing.assert_array_equal(broden_io.decode_mask(np.asarray(Image.open(tmp_path / "m.png"))), labels)


def test_primary_category_is_the_highest_coverage_one(small, tmp_path):
    root, _ = small
    copy = tmp_path / "b"
    shutil.copytree(root, copy)
    red = label_numbers()["red"]
    with open(copy / "c_object.csv", "a", newline="") as handle:   # red also an object, covering more
        csv.writer(handle).writerow([99, red, "red", 1, 1e6])
    assert broden_io.Broden(copy).primary[red] == 1
    with open(copy / "c_texture.csv", "a", newline="") as handle:   # and a texture covering less
        csv.writer(handle).writerow([99, red, "red", 1, 1e-6])
    assert broden_io.Broden(copy).primary[red] == 1


def test_bad_broden_folders_fail_naming_the_file_and_key(small, tmp_path):
    root, _ = small
    with pytest.raises(broden_io.BrodenFormatError, match="dissect.categories.*valid"):
        broden_io.Broden(root, ["color", "smell"])
    copy = tmp_path / "b"
    shutil.copytree(root, copy)
    (copy / "label.csv").unlink()
    with pytest.raises(broden_io.BrodenFormatError, match="label.csv is missing"):
        broden_io.Broden(copy)


def test_fetch_unpacks_a_checksummed_zip_from_the_offline_folder(small, tmp_path):
    root, _ = small
    offline = tmp_path / "offline"
    offline.mkdir()
    with zipfile.ZipFile(offline / "broden1_227.zip", "w") as z:
        for path in sorted(root.rglob("*")):
            z.write(path, "broden1_227/" + str(path.relative_to(root)))
    md5 = md5sum(offline / "broden1_227.zip")
    with pytest.raises(broden_io.BrodenFormatError, match="dissect.broden.md5"):
        broden_io.remote("broden1_227")
    wrong = "0" * 32
    with pytest.raises(ChecksumError):
        fetch_broden("broden1_227", tmp_path / "dl", tmp_path / "b227", offline, md5=wrong)
    assert not (tmp_path / "b227").exists()
    out = fetch_broden("broden1_227", tmp_path / "dl", tmp_path / "b227", offline, md5=md5)
    assert len(broden_io.Broden(out)) == 48
    assert not list(tmp_path.glob("*.unpacking"))
    # the official archive's checksum is built in: a staged file that differs is refused
    shutil.copy(offline / "broden1_227.zip", offline / "broden1_224.zip")
    with pytest.raises(ChecksumError, match=broden_io.KNOWN_MD5["broden1_224"]):
        fetch_broden("broden1_224", tmp_path / "dl2", tmp_path / "b224", offline)


def test_config_checks_the_broden_source():
    base = config.load_yaml(config.SCHEMA_PATH.parents[2] / "config" / "demo.yaml")
    bad = {**base, "dissect": {"broden": {"source": "folder"}}}
    with pytest.raises(config.ConfigError, match="dissect.broden.folder"):
        config.validate(bad)
    bad = {**base, "dissect": {"broden": {"source": "download", "version": "broden1_384"}}}
    with pytest.raises(config.ConfigError, match="dissect.broden.md5"):
        config.validate(bad)
    bad = {**base, "dissect": {"union": "both"}}
    with pytest.raises(config.ConfigError, match=r"dissect.union.*\['lite', 'original'\]"):
        config.validate(bad)


def test_broden_errors_name_the_file_row_and_problem(tmp_path):
    root = write_tricky_broden(tmp_path / "bad", n_images=8, unlabelled=1)
    index = (root / "index.csv").read_text().splitlines()
    (root / "index.csv").write_text("\n".join(index[:3] + [index[3].replace(",8,8,", ",eight,8,")] + index[4:]))
    with pytest.raises(broden_io.BrodenFormatError, match=r"index.csv row 4: sh='eight' is not an integer"):
        broden_io.Broden(root)
    (root / "index.csv").write_text("\n".join(index[:3] + [index[3].replace(",8,8,", ",-8,8,")] + index[4:]))
    with pytest.raises(broden_io.BrodenFormatError, match=r"index.csv row 4: sh=-8 is outside \[1, 8192\]"):
        broden_io.Broden(root)
    (root / "index.csv").write_text("\n".join(index[:3] + [index[3].split(",", 3)[0]] + index[4:]))
    with pytest.raises(broden_io.BrodenFormatError, match=r"index.csv row 4: 1 fields where the header has 11"):
        broden_io.Broden(root)
    scene = index[4].split(",")
    scene[8] = "1992"
    (root / "index.csv").write_text("\n".join(index[:4] + [",".join(scene)] + index[5:]))
    with pytest.raises(broden_io.BrodenFormatError, match=r"row 5, column scene: label 1992 is not listed"):
        broden_io.Broden(root)
    (root / "index.csv").write_text("\n".join(index))
    labels = (root / "label.csv").read_text()
    (root / "label.csv").write_text(labels + "9999999999,huge,x,1,1\n")
    with pytest.raises(broden_io.BrodenFormatError, match=r"label.csv row \d+: number=9999999999 is outside \[0, 65535\]"):
        broden_io.Broden(root)                                   # refused before an array of that size is made
    (root / "label.csv").write_text(labels.splitlines()[0] + "\n")
    with pytest.raises(broden_io.BrodenFormatError, match=r"label.csv lists no labels"):
        broden_io.Broden(root)
    (root / "label.csv").write_text(labels)
    coverage = (root / "c_object.csv").read_text().splitlines()
    header = coverage[0].split(",")
    row = coverage[1].split(",")
    row[header.index("coverage")] = "lots"
    (root / "c_object.csv").write_text("\n".join([coverage[0], ",".join(row)] + coverage[2:]) + "\n")
    with pytest.raises(broden_io.BrodenFormatError, match=r"c_object.csv row 2: coverage='lots' is not a number"):
        broden_io.Broden(root)
    (root / "c_object.csv").write_text("\n".join(coverage) + "\n")
    plane = np.full((8, 8), 1992, dtype=np.int32)
    Image.fromarray(np.stack([plane % 256, plane // 256, 0 * plane], -1).astype(np.uint8)).save(
        root / "images" / "im2_color.png")
    b = broden_io.Broden(root)
    with pytest.raises(broden_io.BrodenFormatError, match=r"im2_color.png \(index.csv row 4\): label number\(s\) "
                                                           r"\[1992\] are not listed"):
        b.load_planes(2)


def test_decoded_broden_serves_the_same_images_planes_and_dissection(tmp_path):
    root = write_tricky_broden(tmp_path / "tricky", n_images=24, unlabelled=4)
    cfg = dissect.settings({"conventions": "lite", "input_size": 16, "workers": 0, "batch_size": 5,
                            "top_units": 2, "top_images": 2})
    plain = dissect.open_broden(root, cfg)
    folder = broden_io.decode(plain, tmp_path / "decoded", [(16, 3), (12, 1)], workers=2)
    fast = dissect.open_broden(root, cfg, folder)
    assert len(fast) == len(plain) == 20  # Lite drops the 4 unlabelled images: the view is decoded as read
    for i in range(len(plain)):
        for size, channels in ((16, 3), (12, 1)):
            assert torch.equal(fast.load_image(i, size, channels), plain.load_image(i, size, channels))
        assert torch.equal(fast.load_planes(i), plain.load_planes(i))
    masks = np.load(folder / "masks.npy", mmap_mode="r")
    assert isinstance(masks, np.memmap) and masks.dtype == np.uint16
    assert len(masks) == sum(len(e.masks) for e in plain.images)
    torch.manual_seed(0)
    model = models.build("simplecnn", 3, 16, 10, width=0.25).eval()
    a, b = dissect.dissect(model, plain, cfg), dissect.dissect(model, fast, cfg)
    for layer in a["iou"]:
        assert torch.equal(torch.as_tensor(a["iou"][layer]), torch.as_tensor(b["iou"][layer]))
    # another view, or a folder without its meta.json, is refused by name
    with pytest.raises(broden_io.BrodenFormatError, match=r"decoded for .*decode it again"):
        dissect.open_broden(root, dissect.settings({"conventions": "reglens"}), folder)
    (folder / "meta.json").unlink()
    with pytest.raises(broden_io.BrodenFormatError, match=r"meta.json is missing"):
        dissect.open_broden(root, cfg, folder)


def test_decoding_checks_every_mask_before_any_dissection(tmp_path):
    root = write_tricky_broden(tmp_path / "bad", n_images=8, unlabelled=1)
    plane = np.full((8, 8), 1992, dtype=np.int32)
    Image.fromarray(np.stack([plane % 256, plane // 256, 0 * plane], -1).astype(np.uint8)).save(
        root / "images" / "im5_color.png")
    with pytest.raises(broden_io.BrodenFormatError, match=r"im5_color.png \(index.csv row 7\): label number"):
        broden_io.decode(broden_io.Broden(root), tmp_path / "decoded", [(16, 3)])
    assert list((tmp_path / "decoded").iterdir()) == []  # nothing half-written is left
