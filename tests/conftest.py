import hashlib
import os
import re
import subprocess
import sys
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


def run_snakemake(workdir, *args, configfile="tiny.yaml", env=None, check=True, timeout=900):
    """Snakemake on the repository's workflow in `workdir` (2 cores); returns the completed process."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(workdir), "--cores", "2", *args]
    if configfile:
        command += ["--configfile", str(Path(workdir) / configfile)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    if check:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def planned_jobs(output: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a Snakemake run or dry run lists."""
    jobs = []
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:[ \t]+.*\n?)*)", output, re.M):
        found = re.search(r"wildcards: (.*)", body)
        wildcards = dict(item.split("=", 1) for item in found.group(1).split(", ")) if found else {}
        jobs.append((rule, wildcards))
    return jobs


def jobs_of(run) -> list[tuple[str, dict]]:
    """The jobs a finished Snakemake process listed (a run logs them to stderr, a dry run to stdout)."""
    return planned_jobs(run.stdout + run.stderr)


def file_hashes(*roots) -> dict[str, str]:
    """sha256 of every file under the given folders, by path."""
    out = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="session")
def digits_model(digits):
    """A SimpleCNN trained on digits (8 epochs, seed 0), in eval mode."""
    from reglens import regularizers
    from reglens.train import train

    none = regularizers.build("none", {"none": []})
    return train(digits, "simplecnn", none, {"epochs": 8, "lr": 0.05, "batch_size": 64}, {"width": 0.5},
                 seed=0, device="cpu").model.eval()


@pytest.fixture(scope="session")
def small(tmp_path_factory):
    """A 48-image synthetic Broden (16-pixel masks) and what was written into it."""
    from reglens.data.synthetic_broden import write_broden

    root = tmp_path_factory.mktemp("broden") / "small"
    info = write_broden(root, n_images=48, seg_size=16, scale=2, seed=3)
    return root, info
