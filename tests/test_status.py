"""`python -m reglens status`: done / missing / failed per cell and stage, from files and logs only."""
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from reglens import config, grid, status


def test_status_tells_done_missing_and_failed_with_the_log(tmp_path):
    cfg = config.validate(config.load_yaml(REPO / "config" / "showcase.yaml"))
    cell = "digits/simplecnn/l2/seed1"
    (tmp_path / "results" / cell).mkdir(parents=True)
    (tmp_path / "results" / cell / "metrics.json").write_text("{}")
    failing = tmp_path / "logs" / "attack" / f"{cell}.log"
    failing.parent.mkdir(parents=True)
    failing.write_text("start\nTraceback (most recent call last):\n  File \"x\", line 1\nRuntimeError: CUDA out of memory\n")
    running = tmp_path / "logs" / "explain" / f"{cell}.log"
    running.parent.mkdir(parents=True)
    running.write_text("epoch 1\n")
    rows = {(r["cell"], r["stage"]): r for r in status.cell_status(cfg, tmp_path)}
    assert len({c for c, _ in rows}) == len(grid.cells(cfg))
    assert rows[(cell, "train")]["state"] == "done"
    assert rows[(cell, "attack")]["state"] == "failed" and rows[(cell, "attack")]["log"] == str(failing)
    assert rows[(cell, "attack")]["tail"][-1] == "RuntimeError: CUDA out of memory"
    assert rows[(cell, "explain")]["state"] == "missing"
    assert sum(r["state"] == "failed" for r in rows.values()) == 1
    roar_cells = {c for c, s in rows if s == "roar"}
    assert roar_cells == set(cfg["roar"]["cells"])
    out = subprocess.run([sys.executable, "-m", "reglens", "status", "--root", str(tmp_path), "--configfile",
                          str(REPO / "config" / "showcase.yaml")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 1
    assert f"FAILED {cell} attack: {failing}" in out.stdout
    # no Snakemake log there: the rerun names the Snakefile, the folder and the config files given
    snakemake = Path(sys.executable).parent / "snakemake"
    assert (f"rerun: {snakemake} results/{cell}/done.json --snakefile {REPO}/workflow/Snakefile --directory {tmp_path} "
            f"--configfile {REPO}/config/showcase.yaml") in out.stdout, out.stdout


# the parts of a Snakemake 9 log that status reads, as the SLURM executor plugin 2.8 writes them
REFUSED_LOG = """
SNAKEMAKE
=========
  Date: 2026-12-06 03:39:51
  Command: /opt/venv/lib/python3.11/site-packages/snakemake/__main__.py --profile slurm results/a/lenet/none/seed0/metrics.json --snakefile /src/workflow/Snakefile --directory /runs/w --configfile /runs/w/a.yaml /runs/w/b.yaml --latency-wait 5 -j 4
  Snakefile: /src/workflow/Snakefile
  Run directory: /src
  Working directory: /runs/w

Building DAG of jobs...
[Sun Dec  6 03:40:31 2026]
rule train_shared:
    input: resources/data/digits.pt
    output: results/a/lenet/none/seed0/model.pt, results/a/lenet/none/seed0/history.csv, results/a/lenet/none/seed0/metrics.json
    log: logs/train/a/lenet/none/seed0.log
    resources: tmpdir=<TBD>, mem_mb=2250, cpus_per_task=2, runtime=8, gres=shard:1
[Sun Dec  6 03:40:31 2026]
Error in rule train_shared:
    message: SLURM sbatch failed. The error message was 'sbatch: error: Invalid generic resource (gres) specification'.
    sbatch call:
        sbatch --parsable --job-name 357c --gres=shard:1 --wrap="python -m snakemake"
For further error details see the cluster/cloud log and the log files of the involved rule(s).
    jobid: 0
    input: resources/data/digits.pt
    output: results/a/lenet/none/seed0/model.pt, results/a/lenet/none/seed0/history.csv, results/a/lenet/none/seed0/metrics.json
    log: logs/train/a/lenet/none/seed0.log (check log file(s) for error details)
Logfile logs/train/a/lenet/none/seed0.log not found.
[Sun Dec  6 03:40:32 2026]
rule train:
    output: results/a/lenet/l2/seed0/metrics.json
Exiting because a job execution failed. Look above for error messages
"""


def test_a_refused_submission_is_failed_with_the_schedulers_message(tmp_path):
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-12-05T010000.000000.snakemake.log").write_text("Command: x --profile old all\n")
    (logs / "2026-12-06T033951.659732.snakemake.log").write_text(REFUSED_LOG)
    run = status.last_run(tmp_path)  # the newest log
    assert run["refused"] == {f"results/a/lenet/none/seed0/{name}": ("train_shared", "sbatch: error: Invalid generic "
                              "resource (gres) specification") for name in ("model.pt", "history.csv", "metrics.json")}
    # the run's profile, Snakefile, folder and both config files; not its targets or tuning
    assert run["options"] == ["--profile", "slurm", "--snakefile", "/src/workflow/Snakefile", "--directory", "/runs/w",
                              "--configfile", "/runs/w/a.yaml", "/runs/w/b.yaml"]
    assert status.rerun_command(run, tmp_path, [], "results/a/lenet/none/seed0/done.json").endswith(
        "snakemake results/a/lenet/none/seed0/done.json --profile slurm --snakefile /src/workflow/Snakefile "
        "--directory /runs/w --configfile /runs/w/a.yaml /runs/w/b.yaml")
    assert status.rerun_command(run, tmp_path, [], "t").startswith("cd /src && ")
    cfg = config.validate({"gpu_sharing": {"archs": ["lenet"]}, "regularizers": {"none": [], "l2": [{"kind": "l2"}]},
                           "studies": {"a": {"dataset": "digits", "archs": ["lenet"], "regularizers": ["none", "l2"],
                                             "seeds": [0]}}})
    rows = {(r["cell"], r["stage"]): r for r in status.cell_status(cfg, tmp_path)}
    refused = rows[("a/lenet/none/seed0", "train")]
    assert refused["state"] == "failed" and refused["log"].endswith("2026-12-06T033951.659732.snakemake.log")
    assert refused["tail"] == ["SLURM refused the train_shared job: sbatch: error: Invalid generic resource (gres) "
                               "specification"]
    assert rows[("a/lenet/l2/seed0", "train")]["state"] == "missing"  # submitted, not refused
