"""The real loaders on files written in the real on-disk formats."""
import gzip
import shutil

import numpy as np
import pytest
import torch

from reglens import data
from reglens.data import cifar, download, mnist, synthetic
from reglens.stages import data as data_stage
from reglens.stages.common import load_dataset


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_archive_round_trip_through_download(tmp_path, num_classes, monkeypatch):
    archive = tmp_path / "src" / ("cifar-10-python.tar.gz" if num_classes == 10 else "cifar-100-python.tar.gz")
    archive.parent.mkdir()
    written = synthetic.write_cifar_archive(archive, num_classes=num_classes, per_batch=7, n_test=5)
    name = f"cifar{num_classes}"
    real = data.DATASETS[name].remote["archive"]
    fake = download.RemoteFile(real.filename, (archive.as_uri(),), download.md5sum(archive))
    monkeypatch.setitem(data.DATASETS[name].remote, "archive", fake)

    out = tmp_path / f"{name}.pt"
    data_stage.prepare(name, out, tmp_path / "downloads")
    loaded = load_dataset(out)
    n_train = 35
    assert loaded.x_train.shape == (n_train, 3, 32, 32) and loaded.x_test.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(loaded.x_train.numpy(), written["train_x"])
    np.testing.assert_array_equal(loaded.y_train.numpy(), written["train_y"])
    np.testing.assert_array_equal(loaded.x_test.numpy(), written["test_x"])
    assert len(loaded.classes) == num_classes
    ref = written["train_x"].astype(np.float64) / 255
    np.testing.assert_allclose(loaded.mean, ref.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(loaded.std, ref.std(axis=(0, 2, 3)), rtol=1e-9)


def test_corrupted_archive_is_rejected_by_checksum(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    synthetic.write_cifar_archive(archive)
    good = download.md5sum(archive)
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "served" / archive.name
    bad.parent.mkdir()
    bad.write_bytes(bytes(raw))
    remote = download.RemoteFile(archive.name, (bad.as_uri(),), good)
    with pytest.raises(download.ChecksumError, match="does not match"):
        download.fetch(remote, tmp_path / "downloads")
    assert not (tmp_path / "downloads" / archive.name).exists()  # nothing half-written left
    with pytest.raises(download.ChecksumError):
        download.fetch(remote, tmp_path / "staged", offline_dir=bad.parent)


def test_offline_staging_missing_file_says_where(tmp_path):
    with pytest.raises(download.MissingOfflineFile) as info:
        data_stage.fetch_raw("cifar10", tmp_path / "dl", offline_dir=tmp_path / "offline")
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "offline") in message
    assert "c58f30108f718f92721af3b95e74349a" in message


def test_mnist_idx_staged_offline(tmp_path):
    arrays = synthetic.write_mnist_files(tmp_path / "offline", n_train=13, n_test=4)
    real = {k: v for k, v in mnist.REMOTE.items()}
    try:
        for key, remote in real.items():
            mnist.REMOTE[key] = download.RemoteFile(
                remote.filename, remote.urls, download.md5sum(tmp_path / "offline" / remote.filename))
        out = data_stage.prepare("mnist", tmp_path / "mnist.pt", tmp_path / "dl", offline_dir=tmp_path / "offline")
    finally:
        mnist.REMOTE.update(real)
    loaded = load_dataset(out)
    np.testing.assert_array_equal(loaded.x_train[:, 0].numpy(), arrays["train_images"])
    np.testing.assert_array_equal(loaded.y_test.numpy(), arrays["test_labels"])
    assert loaded.x_train.dtype == torch.uint8 and loaded.y_train.dtype == torch.int64


def test_idx_header_is_checked(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 0x08, 3]) + (5).to_bytes(4, "big") + (2).to_bytes(4, "big")
                     + (2).to_bytes(4, "big") + bytes(19))
    with pytest.raises(ValueError, match="header says"):
        mnist.read_idx(path)
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x12\x34\x56\x78")
    with pytest.raises(ValueError, match="magic"):
        mnist.read_idx(path)


def test_official_checksums_match_the_releases():
    # the md5s published with the releases (also used by torchvision)
    assert cifar.CIFAR10.md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.CIFAR100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert mnist.REMOTE["train_images"].md5 == "f68b3c2dcbeaaa9fbdd348bbdeb94873"


def test_digits_is_sklearns_data(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    assert len(digits.y_train) + len(digits.y_test) == len(bunch.target) == 1797
    assert digits.x_train.shape[1:] == (1, 8, 8) and int(digits.x_train.max()) == 255
    # every test image is one of sklearn's images, rescaled 0..16 -> 0..255
    scaled = np.rint(bunch.images * 255 / 16).astype(np.uint8).reshape(len(bunch.images), -1)
    lookup = {row.tobytes(): label for row, label in zip(scaled, bunch.target)}
    for image, label in zip(digits.x_test.reshape(len(digits.y_test), -1).numpy(), digits.y_test.numpy()):
        assert lookup[image.tobytes()] == label
    counts = np.bincount(digits.y_test.numpy())
    assert counts.min() >= 35  # stratified split: about 36 per class
