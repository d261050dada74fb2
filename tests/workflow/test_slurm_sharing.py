"""Small cells sharing one GPU on the real single-node test SLURM cluster (its stand-in GPU cut into 8
shards): rule train_shared's cells run as concurrent jobs, each asking for a shard; each cell's numbers
are those of training it alone; one is rebuilt alone. A file of its own, so that pytest-xdist runs it
beside tests/workflow/test_slurm.py (each file starts its own private cluster)."""
import json
import re
import subprocess

import pytest
import yaml

from conftest import REPO
from test_slurm import TINY, assert_trained_alone, cluster, command  # noqa: F401  (cluster: this module's own)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_small_cells_share_the_gpu_concurrently_and_rebuild_alone(cluster, tmp_path):
    shared = {**TINY, "gpu_sharing": {"archs": ["lenet"]}, "cluster": {"shards": True},
              "studies": {"shared": {**TINY["studies"]["tiny"], "archs": ["lenet"], "seeds": [0, 1],
                                     "train": {"epochs": 6, "lr": 0.05, "batch_size": 64}}}}
    (tmp_path / "shared.yaml").write_text(yaml.safe_dump(shared))
    cells = [f"results/shared/lenet/{reg}/seed{seed}" for reg in ("none", "l2") for seed in (0, 1)]
    run = subprocess.run(command(tmp_path, *(f"{c}/metrics.json" for c in cells), configfile="shared.yaml"),
                         cwd=REPO, capture_output=True, text=True, timeout=900, env=cluster)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    metrics = [json.loads((tmp_path / c / "metrics.json").read_text()) for c in cells]
    jobs = [m["provenance"]["slurm_job_id"] for m in metrics]
    assert None not in jobs and len(set(jobs)) == 4  # a SLURM job per cell
    for job_id in jobs:  # each asked for a shard of the node's one GPU, none for a whole GPU
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=cluster).stdout
        assert re.search(r"TresPerNode=gres:shard:1\b", shown) and not re.search(r"gres[:/]gpu", shown), shown
    assert max(m["started_at"] for m in metrics) < min(m["finished_at"] for m in metrics)  # all at once
    # each cell's numbers are those of training it alone
    assert_trained_alone(metrics[3], tmp_path, shared, "shared", "lenet", "l2", 1)
    # one shared cell rebuilt by its path: alone, in a job of its own; the others untouched
    before = {c: (tmp_path / c / "model.pt").stat().st_mtime_ns for c in cells[:3]}
    for name in ("model.pt", "metrics.json", "history.csv"):
        (tmp_path / cells[3] / name).unlink()
    run = subprocess.run(command(tmp_path, f"{cells[3]}/metrics.json", configfile="shared.yaml"), cwd=REPO,
                         capture_output=True, text=True, timeout=900, env=cluster)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    again = json.loads((tmp_path / cells[3] / "metrics.json").read_text())
    assert again["test_loss"] == pytest.approx(metrics[3]["test_loss"], rel=1e-6)
    assert again["provenance"]["slurm_job_id"] not in jobs
    assert {c: (tmp_path / c / "model.pt").stat().st_mtime_ns for c in cells[:3]} == before
