"""The profile unedited on the site types of docs/cluster.md, each a private single-node cluster
(tests/slurm/cluster.sh) reached through SLURM_CONF at a non-default path: a CPU-only site with
`cluster.gpus: false`, and its missing job accounting refused before anything is submitted; a GPU site
without shards, where a shard request is refused, shown failed by `status` (exit 1), and the printed
rerun command, run as printed once the config is fixed, builds every step of the cell within the
partition's MaxTime. (The GPU site with shards: tests/workflow/test_slurm_sharing.py.)"""
import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from test_slurm import TINY, command, private_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ONE_CELL = {**TINY, "studies": {"site": {**TINY["studies"]["tiny"], "regularizers": ["none"], "analyses": ["explain"],
                                         "train": {"epochs": 2, "lr": 0.05, "batch_size": 64}}}}


def shown_job(job_id, env) -> str:
    return subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, env=env).stdout


@pytest.fixture(scope="module")
def cpu_site(tmp_path_factory):
    yield from private_cluster(tmp_path_factory.mktemp("cpu-site"), site="cpu")


@pytest.fixture(scope="module")
def gpu_site(tmp_path_factory):
    yield from private_cluster(tmp_path_factory.mktemp("gpu-site"), site="gpu", maxtime="30")


def test_cpu_only_site_trains_without_a_gpu_and_needs_no_accounting(cpu_site, tmp_path):
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump({**ONE_CELL, "cluster": {"gpus": False}}))
    target = "results/site/simplecnn/none/seed0/metrics.json"
    # sacct on a cluster without accounting: refused before any job is submitted, naming the setting
    run = subprocess.run([*command(tmp_path, target, configfile="cpu.yaml"), "--slurm-status-command", "sacct"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env=cpu_site)
    assert run.returncode != 0 and "slurm-status-command: squeue" in run.stdout + run.stderr, run.stderr[-3000:]
    assert not (tmp_path / "logs" / "slurm").exists()
    # the profile as it is (squeue): the cell trains in a job that asks for no GPU
    run = subprocess.run(command(tmp_path, target, configfile="cpu.yaml"), cwd=REPO, capture_output=True, text=True,
                         timeout=600, env=cpu_site)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    metrics = json.loads((tmp_path / target).read_text())
    shown = shown_job(metrics["provenance"]["slurm_job_id"], cpu_site)
    assert "JobState=COMPLETED" in shown and not re.search(r"gres|gpu", shown, flags=re.I), shown


def test_gpu_site_without_shards_refused_then_rerun_as_printed(gpu_site, tmp_path):
    # shards asked where the site has none: refused; a runtime floor above the partition's MaxTime
    site = {**ONE_CELL, "gpu_sharing": {"archs": ["simplecnn"]}, "cluster": {"shards": True, "runtime_floor": 40}}
    configfile = tmp_path / "gpu.yaml"
    configfile.write_text(yaml.safe_dump(site))
    run = subprocess.run(command(tmp_path, "results/site/simplecnn/none/seed0/done.json", configfile="gpu.yaml"),
                         cwd=REPO, capture_output=True, text=True, timeout=600, env=gpu_site)
    assert run.returncode != 0
    status = subprocess.run([sys.executable, "-m", "reglens", "status", "--configfile", str(configfile),
                             "--root", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert status.returncode == 1, status.stdout
    assert "FAILED site/simplecnn/none/seed0 train" in status.stdout, status.stdout
    assert "SLURM refused the train_shared job: sbatch: error: Invalid generic resource" in status.stdout, status.stdout
    rerun = re.search(r"^\s*rerun: (.*)$", status.stdout, flags=re.M).group(1)

    # the site's fix (whole GPUs), then the printed command exactly as printed
    configfile.write_text(yaml.safe_dump({**site, "cluster": {"shards": False, "runtime_floor": 40}}))
    run = subprocess.run(["bash", "-c", rerun], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env=gpu_site)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    cell = tmp_path / "results" / "site" / "simplecnn" / "none" / "seed0"
    assert json.loads((cell / "done.json").read_text())["outputs"]  # every step of the cell
    assert (cell / "explain" / "metrics.csv").exists()
    # the training job: a whole GPU, its 40-minute floor capped at the partition's 30
    metrics = json.loads((cell / "metrics.json").read_text())
    shown = shown_job(metrics["provenance"]["slurm_job_id"], gpu_site)
    assert re.search(r"gres[:/]gpu[:=]1\b", shown) and "TimeLimit=00:30:00" in shown, shown
    # every job, the packed one of the cell's other steps included, within the cap (the successful
    # jobs' logs are not kept: the jobs as SLURM still lists them)
    jobs = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i|%l|%k"], capture_output=True, text=True,
                          env=gpu_site).stdout.split()
    limits = {comment: limit for _, limit, comment in (job.split("|") for job in jobs)}
    assert any("explain" in comment for comment in limits), limits
    assert all(int(limit.split(":")[0]) <= 30 and limit.count(":") == 1 for limit in limits.values()), limits
