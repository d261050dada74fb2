"""The tiny study on a real single-node SLURM cluster through `--profile slurm`: a training job
cancelled mid-run resumes from its checkpoint on retry; a cell's metrics equal a local run's; the cheap
rules never reach the queue; one deleted cell is rebuilt by its path; a failing cell is listed with its
log by `python -m reglens status`.

Runs only when asked (REGLENS_TEST_SLURM=1, as .ci/run sets it), as root, with Debian's slurm and
munge packages. The cluster is private to a temporary folder (tests/slurm/cluster.sh): its own
config, ports, munge key and socket, stopped by its PIDs afterwards; nothing under /etc is touched."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch
import yaml

from conftest import REPO
from reglens import config as reglens_config
from reglens import grid, regularizers
from reglens.cluster import requests as cluster_requests
from reglens.stages.common import load_dataset
from reglens.train import train

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = {
    "torch_threads": 2,
    "regularizers": {"none": [], "l2": [{"kind": "l2", "weight": 1e-3}]},
    "figures": {"svg": False},
    "robustness": {"n_images": 100, "fgsm_eps": [0.0, 0.1], "pgd_eps": [0.0, 0.1], "pgd_steps": [2],
                   "worst_case": {"linf_eps": [0.0, 0.1], "l2_eps": [0.5], "apgd_steps": 5, "targets": 2, "square_queries": 20},
                   "iterations": {"steps": [1, 3], "restarts": [1, 2], "restart_steps": 2},
                   "boundary": {"images": 1, "resolution": 5}, "pca_images": 20},
    "explain": {"methods": ["saliency", "random"], "figure_images": 2, "metric_images": 10,
                "mprt_methods": ["saliency"], "mprt_images": 4},
    "actmax": {"steps": 5, "units_per_layer": 1},
    "embedding": {"enabled": False}, "neurons": {"enabled": False},
    "dissect": {"broden": {"source": "synthetic", "synthetic": {"images": 30, "seg_size": 16, "scale": 2}},
                "input_size": 16, "workers": 0, "top_units": 1, "top_images": 2},
    "road": {"enabled": False}, "meta_consistency": {"enabled": False},
    "net2vec": {"images": 30, "min_pixels": 20, "max_concepts": 3, "epochs": 3},
    "lesion": {"ks": [1], "draws": 1, "train_images": 100},
    "studies": {"tiny": {"dataset": "digits", "archs": ["simplecnn"], "regularizers": ["none", "l2"],
                         "seeds": [0], "model": {"width": 0.5},
                         "train": {"epochs": 15, "lr": 0.05, "batch_size": 64}}},
}


CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


def private_cluster(folder, site: str = "gpu-shards", maxtime: str | None = None):
    """Start a private cluster of that site type in `folder` (tests/slurm/cluster.sh); yield the
    environment that reaches it (SLURM_CONF at a non-default path), then stop it."""
    if os.environ.get("REGLENS_TEST_SLURM") != "1":
        pytest.skip("runs only when asked: REGLENS_TEST_SLURM=1 (set by .ci/run)")
    if shutil.which("slurmctld") is None or shutil.which("munged") is None or os.geteuid() != 0:
        pytest.skip("needs root and Debian's slurmctld, slurmd, slurm-client and munge (see .ci/run)")
    settings = {"SITE": site, **({"MAXTIME": maxtime} if maxtime else {})}
    started = subprocess.run(["bash", str(CLUSTER), "start", str(folder)], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **settings})
    assert started.returncode == 0, started.stderr
    env = {**os.environ, **dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)}
    try:
        yield env
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(folder)], timeout=60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from private_cluster(tmp_path_factory.mktemp("slurm"))


def command(workdir, *targets, configfile="tiny.yaml"):
    # literally `--profile slurm` from the repository root; squeue for status (no accounting here)
    return [sys.executable, "-m", "snakemake", "--profile", "slurm", *targets,
            "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / configfile), "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2",
            "--latency-wait", "5",
            "--slurm-keep-successful-logs"]


def assert_trained_alone(metrics: dict, workdir, cfg: dict, study: str, arch: str, reg: str, seed: int) -> None:
    """A cell's metrics equal training it in this process with the config's thread count."""
    digits = load_dataset(workdir / "resources" / "data" / "digits.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg["torch_threads"])
    try:
        ref = train(digits, arch, regularizers.build(reg, cfg["regularizers"]), cfg["studies"][study]["train"],
                    cfg["studies"][study]["model"], seed=seed, device="cpu")
    finally:
        torch.set_num_threads(threads)
    for key in ("test_loss", "train_loss", "test_acc"):
        assert metrics[key] == pytest.approx(ref.metrics[key], rel=1e-6), key


def test_tiny_study_on_slurm_with_preemption_and_rebuild(cluster, tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cell = tmp_path / "results" / "tiny" / "simplecnn" / "none" / "seed0"
    proc = subprocess.Popen(command(tmp_path, "all"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=cluster)
    cancelled = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and cancelled is None:
        state = cell / "train_state.pt"
        if state.exists():
            try:
                epoch = torch.load(state, weights_only=True)["epoch"]
            except Exception:  # caught between write and rename: try again
                epoch = -1
            if epoch >= 2:
                queue = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True,
                                       env=cluster).stdout
                for line in queue.splitlines():
                    job_id, comment = line.split(maxsplit=1)
                    if "rule_train" in comment and "none" in comment:
                        subprocess.run(["scancel", job_id], check=True, env=cluster)
                        cancelled = job_id
        time.sleep(0.1)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-4000:]
    assert cancelled is not None, "the training job finished before it could be cancelled"

    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] >= 3  # the cancelled job was resubmitted and continued from the checkpoint
    # each job asked for what reglens.cluster.requests computes for it (no accounting: scontrol, not sacct)
    shown = subprocess.run(["scontrol", "show", "job", str(metrics["provenance"]["slurm_job_id"])],
                           capture_output=True, text=True, env=cluster).stdout
    cfg = reglens_config.validate(yaml.safe_load(yaml.safe_dump(TINY)))
    asked = cluster_requests(cfg, "train", grid.find_cell(cfg, "tiny", "simplecnn", "none", 0))
    assert re.search(rf"NumCPUs={asked['cpus_per_task']}\b", shown), shown
    assert re.search(rf"MinMemoryNode={asked['mem_mb']}M\b", shown), shown
    assert re.search(rf"TimeLimit={asked['runtime'] // 60:02d}:{asked['runtime'] % 60:02d}:00\b", shown), shown
    assert re.search(r"gres[:/]gpu[:=]1\b", shown), shown
    assert metrics["provenance"]["torch_threads"] == TINY["torch_threads"]  # from the config, not the node
    assert_trained_alone(metrics, tmp_path, TINY, "tiny", "simplecnn", "none", 0)
    assert (tmp_path / "results" / "report.html").exists()
    # the profile packs each cell's short GPU steps into one SLURM job
    # the plugin names a group's log folder group_<group>_<its rules>
    group_logs = {p.parent.name.split("_")[1]: p for p in (tmp_path / "logs" / "slurm").glob("group_*/*.log")}
    assert set(group_logs) == {"cell-tiny-simplecnn-none-0", "cell-tiny-simplecnn-l2-0"}
    for log in group_logs.values():
        ran = set(re.findall(r"^\s*(?:local)?rule (\w+):", log.read_text(), flags=re.M))
        assert ran == {"explain", "actmax", "attack", "diagnose", "dissect", "net2vec", "lesion"}, log.read_text()[-3000:]
    assert list((tmp_path / "logs" / "slurm").rglob("*.log"))  # SLURM logs are kept where documented
    submitted = {p.name.removeprefix("rule_") for p in (tmp_path / "logs" / "slurm").glob("rule_*")}
    assert "train" in submitted and not submitted & {"aggregate", "draw_figures", "report", "roar_score"}

    # the same cell run locally with another --cores gives identical metrics
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(tmp_path / "tiny.yaml", local / "tiny.yaml")
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "results/tiny/simplecnn/l2/seed0/metrics.json",
                          "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory", str(local),
                          "--configfile", str(local / "tiny.yaml")], cwd=REPO, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    on_slurm = json.loads((tmp_path / "results" / "tiny" / "simplecnn" / "l2" / "seed0" / "metrics.json").read_text())
    here = json.loads((local / "results" / "tiny" / "simplecnn" / "l2" / "seed0" / "metrics.json").read_text())
    for key in ("test_loss", "train_loss", "test_acc"):
        assert on_slurm[key] == here[key], key

    # rebuild one deleted cell by its path; the other cell stays untouched
    other = cell / "model.pt"
    before = other.stat().st_mtime_ns
    target = tmp_path / "results" / "tiny" / "simplecnn" / "l2" / "seed0"
    old = json.loads((target / "metrics.json").read_text())
    for name in ("model.pt", "metrics.json", "history.csv"):
        (target / name).unlink()
    run = subprocess.run(command(tmp_path, "results/tiny/simplecnn/l2/seed0/metrics.json"), cwd=REPO,
                         capture_output=True, text=True, timeout=900, env=cluster)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    new = json.loads((target / "metrics.json").read_text())
    assert new["test_loss"] == pytest.approx(old["test_loss"], rel=1e-6)
    assert other.stat().st_mtime_ns == before


def test_status_lists_a_failing_cell_and_its_log(cluster, tmp_path):
    broken = {**TINY, "retries": 1, "studies": {"broken": {**TINY["studies"]["tiny"], "regularizers": ["none"],
                                             "train": {"epochs": 3, "lr": 1e12, "batch_size": 64}}}}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    target = "results/broken/simplecnn/none/seed0/metrics.json"
    run = subprocess.run(command(tmp_path, target, configfile="broken.yaml"), cwd=REPO, capture_output=True,
                         text=True, timeout=900, env=cluster)
    assert run.returncode != 0
    status = subprocess.run([sys.executable, "-m", "reglens", "status", "--configfile", str(tmp_path / "broken.yaml"),
                             "--root", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert status.returncode == 1
    log = tmp_path / "logs" / "train" / "broken" / "simplecnn" / "none" / "seed0.log"
    assert f"FAILED broken/simplecnn/none/seed0 train: {log}" in status.stdout, status.stdout
    rerun = (f"cd {REPO} && {os.path.dirname(sys.executable)}/snakemake results/broken/simplecnn/none/seed0/done.json "
             f"--profile slurm --snakefile {REPO}/workflow/Snakefile --directory {tmp_path} --configfile {tmp_path}/broken.yaml")
    assert "NonFiniteLoss" in status.stdout and f"rerun: {rerun}\n" in status.stdout + "\n", status.stdout
    # `retries: 1`, but a NonFiniteLoss comes again on every attempt: one SLURM job, the rule run once in it
    attempts = sorted((tmp_path / "logs" / "slurm" / "rule_train").glob("broken_simplecnn_none_0/*.log"))
    assert len(attempts) == 1, attempts
    assert attempts[0].read_text().count("localrule train:") == 1, attempts[0].read_text()[-3000:]

