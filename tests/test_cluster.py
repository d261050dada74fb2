"""SLURM requests and the retry policy (reglens.cluster) against hand-computed values and hand-made logs."""
import copy
import math
import os

import pytest

from conftest import REPO
from reglens import cluster, grid
from reglens import config as reglens_config


@pytest.fixture(scope="module")
def demo():
    return reglens_config.validate(reglens_config.load_yaml(REPO / "config" / "demo.yaml"))


def with_cluster(cfg, **settings):
    out = copy.deepcopy(cfg)
    out["cluster"] = {**out["cluster"], **settings}
    return out


@pytest.mark.parametrize("text, minutes", [("UNLIMITED", None), ("INFINITE", None), ("60", 60), ("45:00", 45),
                                           ("6:00:00", 360), ("1-00:00:00", 1440), ("2-12", 2 * 1440 + 12 * 60),
                                           ("0:10:30", 11)])
def test_slurm_times_in_minutes(text, minutes):
    assert cluster.parse_minutes(text) == minutes


def test_partition_limit_from_scontrol():
    shown = ("PartitionName=cpu AllowGroups=ALL Default=YES MaxTime=1-00:00:00 State=UP\n"
             "PartitionName=gpu AllowGroups=ALL Default=NO MaxTime=04:00:00 State=UP\n"
             "PartitionName=long Default=NO MaxTime=UNLIMITED State=UP\n")
    assert cluster.partition_limit(shown, "gpu") == 240
    assert cluster.partition_limit(shown, None) == 1440  # the default partition
    assert cluster.partition_limit(shown, "long") is None
    assert cluster.partition_limit(shown, "missing") is None


def test_runtime_is_flops_at_the_rate_with_floor_doubling_and_cap(demo):
    cell = next(c for c in grid.cells(demo) if c.inputs == "images")
    flops = cluster.job_flops(demo, "train", cell)
    assert flops > 0
    rate = 1e6  # slow enough that the estimate, not the floor, decides
    cfg = with_cluster(demo, gpu_flops=rate, runtime_margin=2.0, runtime_floor=1)
    expected = math.ceil(2.0 * flops / rate / 60)
    assert expected > 1
    assert cluster.requests(cfg, "train", cell)["runtime"] == expected
    assert cluster.requests(cfg, "train", cell, timeouts=2)["runtime"] == 4 * expected
    assert cluster.requests(cfg, "train", cell, timeouts=2, max_runtime=expected + 1)["runtime"] == expected + 1
    assert cluster.requests(with_cluster(cfg, max_runtime=3), "train", cell, max_runtime=999)["runtime"] == 3
    fast = with_cluster(demo, gpu_flops=1e30, runtime_floor=17)
    assert cluster.requests(fast, "train", cell)["runtime"] == 17
    asked = cluster.requests(demo, "train", cell)
    assert asked["cpus_per_task"] == demo["torch_threads"] and asked["gpu"] == 1
    tensors = cluster.dataset_mb(demo, "train", cell)
    assert asked["mem_mb"] == math.ceil((demo["cluster"]["mem_floor_mb"] + 3 * tensors) / 250) * 250


def test_steps_of_a_packed_job_share_its_floor_and_cap(demo):
    # Snakemake adds up the runtimes of a packed job's serial steps: 7 steps of a 40-minute floor
    # under a 30-minute partition ask ceil(40/7)=6 capped at 30//7=4 each, 28 in all
    cell = next(c for c in grid.cells(demo) if c.inputs == "images")
    fast = with_cluster(demo, gpu_flops=1e30, runtime_floor=40)
    assert cluster.requests(fast, "explain", cell, steps=7)["runtime"] == 6
    assert cluster.requests(fast, "explain", cell, max_runtime=30, steps=7)["runtime"] == 4
    assert cluster.requests(fast, "explain", cell, max_runtime=30)["runtime"] == 30
    assert cluster.requests(fast, "explain", cell, max_runtime=5, steps=7)["runtime"] == 1  # never 0


def test_gpu_asks_per_site_type(demo):
    image = next(c for c in grid.cells(demo) if c.inputs == "images")
    points = next(c for c in grid.cells(demo) if c.inputs == "points")
    assert cluster.requests(demo, "attack", image)["gpu"] == 1
    assert "gpu" not in cluster.requests(demo, "train_toy", points)  # 2-D points stay on CPUs
    assert "gpu" not in cluster.requests(demo, "prepare_data")
    cpu_only = with_cluster(demo, gpus=False)
    for rule in cluster.GPU_RULES:
        asked = cluster.requests(cpu_only, rule, image)
        assert "gpu" not in asked and "gres" not in asked, rule
    shards = with_cluster(demo, shards=True)
    asked = cluster.requests(shards, "train_shared", image)
    assert asked.get("gres") == "shard:1" and "gpu" not in asked
    assert cluster.requests(shards, "train", image)["gpu"] == 1  # whole GPUs for the other cells
    model = cluster.requests(with_cluster(demo, gpu_model="a100"), "explain", image)
    assert model["gpu"] == 1 and model["gpu_model"] == "a100"


def write(path, text, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


TRACE = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"


def test_deterministic_errors_are_told_from_others(tmp_path):
    own = write(tmp_path / "a.log", TRACE + "reglens.train.NonFiniteLoss: loss is nan at epoch 2\n")
    assert cluster.deterministic_error(own).startswith("reglens.train.NonFiniteLoss")
    assert cluster.deterministic_error(write(tmp_path / "b.log", TRACE + "RuntimeError: CUDA error: ECC\n")) is None
    assert cluster.deterministic_error(write(tmp_path / "c.log", "ValueError: mentioned, no traceback\n")) is None
    assert cluster.deterministic_error(tmp_path / "missing.log") is None


def test_only_failures_slurm_caused_are_retried(tmp_path):
    job_log = write(tmp_path / "logs" / "train.log", "epoch 1\n")
    slurm = tmp_path / "slurm" / "rule_train" / "s_a_r_0"
    # locally: anything but a deterministic error
    assert cluster.worth_retrying([job_log], None, 1)
    bad = write(tmp_path / "logs" / "bad.log", TRACE + "NonFiniteLoss: loss is inf\n")
    assert not cluster.worth_retrying([bad], None, 1)
    assert cluster.worth_retrying([bad], None, 1, since=bad.stat().st_mtime + 10)  # an old log does not count
    # on SLURM: a crash or a refused submission leaves no kill mark: not retried
    write(slurm / "101.log", "Traceback...\nKilled\n", mtime=1000)
    assert not cluster.worth_retrying([job_log], slurm, 1)
    write(slurm / "102.log", "slurmstepd: error: *** JOB 102 ON n1 CANCELLED AT 2026-01-01T00:00:00 "
                             "DUE TO TIME LIMIT ***\n", mtime=2000)
    assert cluster.worth_retrying([job_log], slurm, 1)
    assert not cluster.worth_retrying([job_log], slurm, 2)  # the 2nd attempt's failure had no mark
    assert cluster.timeouts(slurm) == 1
    write(slurm / "103.log", "*** JOB 103 ON n1 CANCELLED AT 2026-01-01T01:00:00 DUE TO PREEMPTION ***\n", mtime=3000)
    assert cluster.worth_retrying([job_log], slurm, 2) and cluster.timeouts(slurm) == 1
    assert not cluster.worth_retrying([job_log], slurm, 1, since=3500)  # logs of earlier runs do not count
