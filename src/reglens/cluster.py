"""What each SLURM job asks for, and when a failed job is worth resubmitting.

Requests come from the config's `cluster` section (CPU-only or GPU site, shards or whole GPUs, the
partition's time limit) and from the plan's FLOPs of each job: runtime is the FLOPs at an assumed
rate, times a margin, never below a floor nor above the partition's limit, and doubled for each
time this job was killed by its time limit before; memory is a floor plus the dataset's tensors.
A failure is resubmitted only when it was not the job's own doing: killed by SLURM (time limit,
cancel, preemption, node failure) or, in a local run, anything but a deterministic error."""
from __future__ import annotations

import functools
import math
import re
import subprocess
from pathlib import Path

from reglens import data, grid, layout, plan

CLUSTER_DEFAULTS = {
    "gpus": True,            # false: a CPU-only cluster; no job asks for a GPU
    "shards": False,         # true: cells of gpu_sharing.archs ask for gres shard:1 instead of a GPU
    "gpu_model": None,       # a GPU type the site requires (the plugin's gpu_model)
    "max_runtime": None,     # minutes; null: the partition's MaxTime (scontrol), on SLURM
    "runtime_floor": 10,     # minutes
    "runtime_margin": 3.0,   # times the estimate
    "mem_floor_mb": 2000,
    "gpu_flops": 2.0e13,     # FLOP/s a GPU job is assumed to sustain
    "cpu_flops": 5.0e9,      # FLOP/s per CPU thread
}
# rules that run a network over images: a GPU on a GPU site (cells of 2-D points stay on CPUs)
GPU_RULES = {"train", "train_shared", "roar_rank", "roar_retrain", "roar_baseline", "explain", "actmax", "attack",
             "diagnose", "embedding", "neurons", "dissect", "net2vec", "lesion", "shortcut", "road", "meta_consistency"}
WORKER_RULES = {"dissect", "net2vec", "decode_broden"}  # read Broden with dissect.workers loader processes
MEM_EXTRA_MB = {"dissect": 2000, "net2vec": 2000, "decode_broden": 2000, "lesion": 1000}
CELL_WILDCARDS = ("study", "arch", "reg", "seed")
SAME_JOB_AS = {"train_shared": "train", "train_toy": "train"}  # rules that run another rule's job for other cells
# what slurmstepd writes into a job's output when SLURM ends it
TIME_LIMIT = "DUE TO TIME LIMIT"
KILLED = ("CANCELLED AT", TIME_LIMIT, "DUE TO PREEMPTION", "DUE TO NODE FAIL")
# errors that come again on every attempt: the job's own, from its inputs and settings
DETERMINISTIC = ("NonFiniteLoss", "ConfigError", "DamagedFile", "KeyError", "ValueError", "TypeError",
                 "FileNotFoundError", "ModuleNotFoundError", "ImportError", "AssertionError")


def settings(cfg: dict) -> dict:
    return {**CLUSTER_DEFAULTS, **cfg.get("cluster", {})}


def cell_of(cfg: dict, wildcards: dict):
    """The cell a job's wildcards name, or None for a job of no cell (data, Broden, ROAR baseline)."""
    if not all(key in wildcards for key in CELL_WILDCARDS):
        return None
    return grid.find_cell(cfg, wildcards["study"], wildcards["arch"], wildcards["reg"], int(wildcards["seed"]))


def _analysis_of(rule: str):
    rule = SAME_JOB_AS.get(rule, rule)
    return next((a for a in layout.REGISTRY.values() if rule in a.log_rules), None)


def job_flops(cfg: dict, rule: str, cell=None) -> float:
    """The plan's FLOPs of one job of `rule`: of this cell's job, or the rule's largest job."""
    if cell is None:
        return max((job.flops for job in _all_jobs(cfg) if SAME_JOB_AS.get(job.rule, job.rule) == SAME_JOB_AS.get(rule, rule)),
                   default=0.0)
    analysis = _analysis_of(rule)
    if analysis is None or analysis.cost is None:
        return 0.0
    cost = analysis.cost(plan.CellCost(cfg, cell))
    if not isinstance(cost, list):
        return float(cost)
    return max((float(flops) for name, flops, *_ in cost if name == SAME_JOB_AS.get(rule, rule)), default=0.0)


def _all_jobs(cfg: dict) -> list:
    key = id(cfg)
    if key not in _JOBS:
        _JOBS[key] = plan.jobs(cfg)
    return _JOBS[key]


_JOBS: dict[int, list] = {}


def dataset_mb(cfg: dict, rule: str, cell) -> float:
    """Float32 tensors of the dataset the job loads (the largest configured one for a job of no cell)."""
    names = [cell.dataset] if cell is not None else sorted({s["dataset"] for s in cfg["studies"].values()})
    sizes = []
    for name in names:
        spec = data.spec(name)
        sizes.append((spec.train_size + spec.test_size) * spec.channels * spec.size ** 2 * 4 / 2 ** 20)
    return max(sizes, default=0.0)


def requests(cfg: dict, rule: str, cell=None, timeouts: int = 0, max_runtime: int | None = None,
             steps: int = 1) -> dict:
    """SLURM requests of one job: cpus_per_task, mem_mb, runtime (minutes) and the GPU ask (gpu,
    gpu_model or gres), with `timeouts` earlier kills by its time limit. A step of a packed job of
    `steps` steps (whose runtimes Snakemake adds up) gets that share of the floor and of the cap, so
    that the packed job asks at least the floor and never more than the partition allows."""
    c = settings(cfg)
    images = cell is None or cell.inputs == "images"
    gpu = bool(c["gpus"]) and rule in GPU_RULES and images
    threads = cfg["torch_threads"]
    if rule in WORKER_RULES:
        threads += cfg["dissect"]["workers"]
    rate = c["gpu_flops"] if gpu else c["cpu_flops"] * cfg["torch_threads"]
    minutes = math.ceil(c["runtime_margin"] * job_flops(cfg, rule, cell) / rate / 60)
    minutes = max(math.ceil(int(c["runtime_floor"]) / steps), minutes) * 2 ** timeouts
    cap = c["max_runtime"] if c["max_runtime"] is not None else max_runtime
    if cap is not None:
        minutes = min(minutes, max(1, int(cap) // steps))
    mem = c["mem_floor_mb"] + MEM_EXTRA_MB.get(rule, 0) + 3 * dataset_mb(cfg, rule, cell)
    out = {"cpus_per_task": int(threads), "mem_mb": int(math.ceil(mem / 250) * 250), "runtime": int(minutes)}
    if gpu and rule == "train_shared" and c["shards"]:
        out["gres"] = "shard:1"
    elif gpu:
        out["gpu"] = 1
        if c["gpu_model"]:
            out["gpu_model"] = c["gpu_model"]
    return out


def request_table(cfg: dict, rules: list[str]) -> list[dict]:
    """Per rule, the smallest and largest request over its jobs in this config (docs/cluster.md)."""
    rows = []
    for rule in rules:
        analysis = _analysis_of(rule)
        if analysis is None:
            found = [requests(cfg, rule)]
        else:
            found = [requests(cfg, rule, cell) for cell in grid.cells(cfg) if analysis.applies(cfg, cell)
                     and _rule_serves(cfg, rule, cell)]
        if not found:
            continue
        span = lambda key: (f"{min(r[key] for r in found)}" if min(r[key] for r in found) == max(r[key] for r in found)
                            else f"{min(r[key] for r in found)}–{max(r[key] for r in found)}")
        gpu = sorted({r.get("gres") or ("gpu:1" if r.get("gpu") else "—") for r in found})
        rows.append({"rule": rule, "jobs": len(found), "gpu": ", ".join(gpu), "cpus": span("cpus_per_task"),
                     "mem_mb": span("mem_mb"), "runtime_min": span("runtime")})
    return rows


def _rule_serves(cfg: dict, rule: str, cell) -> bool:
    """Which of train's three rules trains a cell."""
    shared = cell.arch in cfg["gpu_sharing"]["archs"]
    if rule == "train_toy":
        return cell.inputs == "points"
    if rule in ("train", "train_shared"):
        return cell.inputs == "images" and shared == (rule == "train_shared")
    return True


def slurm_logs(folder: str | Path, since: float = 0.0) -> list[Path]:
    """A job's SLURM logs (the plugin's logs/slurm/rule_<rule>/<wildcards>/<jobid>.log) newer than `since`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.log") if p.stat().st_mtime >= since), key=lambda p: p.stat().st_mtime)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def timeouts(folder: str | Path) -> int:
    """How many of a job's SLURM logs end in a kill by its time limit."""
    return sum(TIME_LIMIT in _read(log) for log in slurm_logs(folder))


def deterministic_error(log: str | Path) -> str | None:
    """The error a job's own log ends in, when it is one that would come again (else None)."""
    lines = [line.strip() for line in _read(Path(log)).splitlines() if line.strip()]
    if not any(line.startswith("Traceback (most recent call last)") for line in lines):
        return None
    for line in reversed(lines):
        match = re.match(r"^(?:[\w.]+\.)?(\w+)(?::|$)", line)
        if match and match.group(1) in DETERMINISTIC:
            return line
        if match and match.group(1).endswith(("Error", "Exception", "Loss")):
            return None
    return None


def worth_retrying(job_logs: list[str | Path], slurm_folder: str | Path | None, attempt: int,
                   since: float = 0.0) -> bool:
    """Whether a failed attempt (1-based) is resubmitted: never for a deterministic error in the job's
    own log (written since `since`, the run's start); on SLURM (`slurm_folder`) only when SLURM killed each attempt so far (a refused
    submission, an out-of-memory kill or a crash leaves no such mark)."""
    fresh = [Path(log) for log in job_logs if Path(log).is_file() and Path(log).stat().st_mtime >= since]
    if any(deterministic_error(log) for log in fresh):
        return False
    if slurm_folder is None:
        return True
    killed = sum(any(marker in _read(log) for marker in KILLED) for log in slurm_logs(slurm_folder, since))
    return killed >= attempt


def parse_minutes(value: str) -> int | None:
    """A SLURM time (MaxTime=UNLIMITED, 60, 6:00:00, 1-00:00:00, 2-12) in minutes; None: unlimited."""
    value = value.strip()
    if value.upper() in ("UNLIMITED", "INFINITE", "NONE", ""):
        return None
    days = 0
    if "-" in value:
        day, value = value.split("-", 1)
        days = int(day)
        parts = [int(p) for p in value.split(":")] + [0, 0]
        hours, minutes, seconds = parts[:3]
    else:
        parts = [int(p) for p in value.split(":")]
        hours, minutes, seconds = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def partition_limit(shown: str, partition: str | None) -> int | None:
    """A partition's MaxTime in minutes from `scontrol show partition -o` (the default partition when
    `partition` is None); None when unlimited or not found."""
    for line in shown.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if (partition is None and fields.get("Default") == "YES") or fields.get("PartitionName") == partition:
            return parse_minutes(fields.get("MaxTime", "UNLIMITED"))
    return None


@functools.lru_cache(maxsize=None)
def scontrol_limit(partition: str | None) -> int | None:
    try:
        shown = subprocess.run(["scontrol", "show", "partition", "-o"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return partition_limit(shown.stdout, partition) if shown.returncode == 0 else None


def scheduler_problem(status_command: str | None) -> str | None:
    """Why jobs could not be tracked, or None: the status command the plugin will run fails, or it
    is sacct on a cluster without job accounting."""
    try:
        queue = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T", "--name", "reglens-check"],
                               capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return "squeue was not found: run from a node with SLURM's client commands on PATH"
    except subprocess.TimeoutExpired:
        return "squeue did not answer in 60 s: is slurmctld reachable from this node?"
    if queue.returncode != 0:
        return (f"squeue failed: {queue.stderr.strip()}. Check that slurmctld is reachable and that SLURM_CONF "
                f"names this cluster's slurm.conf")
    if (status_command or "sacct") == "sacct":
        shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60).stdout
        if re.search(r"AccountingStorageType\s*=\s*accounting_storage/none", shown):
            return ("this cluster keeps no job accounting (AccountingStorageType=accounting_storage/none), so sacct "
                    "cannot report job states: set `slurm-status-command: squeue` in the profile "
                    "(profiles/slurm/config.yaml) or pass --slurm-status-command squeue")
    return None
