import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_file(tmp_path_factory):
    from reglens import data

    path = tmp_path_factory.mktemp("data") / "digits.pt"
    torch.save(data.convert("digits", {}), path)
    return path


@pytest.fixture(scope="session")
def digits(digits_file):
    from reglens.stages.common import load_dataset

    return load_dataset(digits_file)
