"""scikit-learn's 8x8 handwritten digits: real data that ships with scikit-learn."""
from __future__ import annotations

import numpy as np


def load(test_fraction: float = 0.2, split_seed: int = 0) -> dict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=split_seed, stratify=labels)
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                classes=[str(i) for i in range(10)])
