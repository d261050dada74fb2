"""Writers of the real on-disk formats, for offline tests and demos."""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from reglens.data.mnist import FILES as MNIST_FILES


def _add_bytes(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def write_cifar_archive(path: str | Path, num_classes: int = 10, per_batch: int = 20,
                        n_test: int = 20, seed: int = 0) -> dict:
    """Write a small tar.gz laid out exactly as the official CIFAR python release.

    Returns the arrays written, for comparison with what the loader reads back.
    """
    rng = np.random.default_rng(seed)
    if num_classes == 10:
        folder, train_names, test_name, meta_name = (
            "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta")
        label_key, meta = b"labels", {b"label_names": [f"class{i}".encode() for i in range(10)],
                                      b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    else:
        folder, train_names, test_name, meta_name = ("cifar-100-python", ["train"], "test", "meta")
        label_key, meta = b"fine_labels", {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
        per_batch *= 5
    written = {"train_x": [], "train_y": []}
    with tarfile.open(path, "w:gz") as archive:
        for i, member in enumerate(train_names + [test_name]):
            n = n_test if member == test_name else per_batch
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            labels = rng.integers(0, num_classes, size=n).tolist()
            batch = {b"batch_label": f"batch {i}".encode(), b"data": data, label_key: labels,
                     b"filenames": [f"img{j}.png".encode() for j in range(n)]}
            if num_classes == 100:
                batch[b"coarse_labels"] = [y // 5 for y in labels]
            _add_bytes(archive, f"{folder}/{member}", pickle.dumps(batch, protocol=2))
            if member == test_name:
                written["test_x"], written["test_y"] = data.reshape(-1, 3, 32, 32), np.array(labels)
            else:
                written["train_x"].append(data.reshape(-1, 3, 32, 32))
                written["train_y"].append(np.array(labels))
        _add_bytes(archive, f"{folder}/{meta_name}", pickle.dumps(meta, protocol=2))
    written["train_x"] = np.concatenate(written["train_x"])
    written["train_y"] = np.concatenate(written["train_y"])
    return written


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a gzipped IDX file (the MNIST format): magic, big-endian dims, raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def write_mnist_files(folder: str | Path, n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test).astype(np.uint8),
    }
    for key, array in arrays.items():
        write_idx(folder / MNIST_FILES[key][0], array)
    return arrays
