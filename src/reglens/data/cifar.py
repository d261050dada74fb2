"""CIFAR-10/100 from the official python-pickle tarballs, read without extracting to disk."""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from reglens.data.download import RemoteFile

CIFAR10 = RemoteFile("cifar-10-python.tar.gz",
                     ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                     "c58f30108f718f92721af3b95e74349a")
CIFAR100 = RemoteFile("cifar-100-python.tar.gz",
                      ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                      "eb9058c3a382ffc7106e4002c42a8d85")

_LAYOUT = {
    10: dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)],
             test=["test_batch"], meta="batches.meta", labels=b"labels", names=b"label_names"),
    100: dict(folder="cifar-100-python", train=["train"], test=["test"], meta="meta",
              labels=b"fine_labels", names=b"fine_label_names"),
}


def _unpickle(archive: tarfile.TarFile, member: str) -> dict:
    handle = archive.extractfile(member)
    if handle is None:
        raise ValueError(f"{archive.name}: {member} is not a regular file")
    return pickle.load(handle, encoding="bytes")


def read_archive(path: str | Path, num_classes: int) -> dict:
    layout = _LAYOUT[num_classes]
    with tarfile.open(path, "r:gz") as archive:
        names = set(archive.getnames())
        for member in layout["train"] + layout["test"] + [layout["meta"]]:
            if f"{layout['folder']}/{member}" not in names:
                raise ValueError(f"{path}: missing {layout['folder']}/{member}; not a CIFAR-{num_classes} archive")

        def split(members):
            xs, ys = [], []
            for member in members:
                batch = _unpickle(archive, f"{layout['folder']}/{member}")
                xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(batch[layout["labels"]], dtype=np.int64))
            return np.concatenate(xs), np.concatenate(ys)

        x_train, y_train = split(layout["train"])
        x_test, y_test = split(layout["test"])
        meta = _unpickle(archive, f"{layout['folder']}/{layout['meta']}")
    classes = [n.decode() for n in meta[layout["names"]]]
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=classes)
