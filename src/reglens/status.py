"""`python -m reglens status`: per cell and stage, done / missing / failed, from the files and job logs
alone (no Snakemake run, nothing rerun). A stage failed when its output is absent and one of its
jobs' logs ends in an error, or when the newest Snakemake run's log says the scheduler refused its job;
the log's path and last lines are printed, and a command that reruns every step of the cell."""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from reglens import analyses  # noqa: F401  (registers the analyses)
from reglens import grid
from reglens.config import SCHEMA_PATH
from reglens.layout import analyses_of, cell_target

REPO = SCHEMA_PATH.parents[2]
# the options of the run's command line that a rerun keeps (the rest are its targets and tuning)
KEPT_OPTIONS = {"--profile", "--workflow-profile", "--snakefile", "-s", "--directory", "-d", "--configfile",
                "--configfiles", "--executor", "-e"}

ERROR_MARKERS = ("Traceback (most recent call last)", "Error:", "CANCELLED", "DUE TO TIME LIMIT")


def _failure(log: Path) -> list[str] | None:
    """The last lines of a log that ends in an error, else None."""
    lines = [line.rstrip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if any(marker in line for line in lines for marker in ERROR_MARKERS):
        return lines[-3:]
    return None


def last_run(root: Path) -> dict | None:
    """The newest Snakemake log under root/.snakemake/log: its path, command-line options kept for a
    rerun, run directory, and the jobs the scheduler refused ({output file: (rule, message)})."""
    logs = sorted((root / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    text = logs[-1].read_text(errors="replace")
    command = re.search(r"^\s*Command: (.*)$", text, flags=re.M)
    run_dir = re.search(r"^\s*Run directory: (.*)$", text, flags=re.M)
    options, words = [], shlex.split(command.group(1))[1:] if command else []
    while words:
        word = words.pop(0)
        name = word.split("=", 1)[0]
        if name not in KEPT_OPTIONS:
            continue
        if "=" in word:
            values = [word.split("=", 1)[1]]
        else:  # config files take several values, the others one
            count = len(words) if name.startswith("--config") else 1
            values = []
            while words and len(values) < count and not words[0].startswith("-"):
                values.append(words.pop(0))
        options += [name, *values]
    refused = {}
    for block in re.split(r"\n(?=\[\w{3} \w{3} )|\n(?=Error in )", text):
        rule = re.match(r"Error in (?:rule|group) ([\w-]+):", block)
        message = re.search(r"SLURM sbatch failed\. The error message was '(.*?)'\.?\s*$", block, flags=re.M)
        if rule and message:
            for line in re.findall(r"^\s+output: (.*)$", block, flags=re.M):
                refused.update({out.strip(): (rule.group(1), message.group(1)) for out in line.split(",")})
    return {"log": logs[-1], "options": options, "run_dir": run_dir.group(1).strip() if run_dir else None,
            "refused": refused}


def rerun_command(run: dict | None, root: Path, configfiles: list[str], target: str) -> str:
    """A shell command that rebuilds every step of one cell as the run was started (its profile,
    Snakefile, folder and config files), with this environment's snakemake; the target comes first
    because --configfile takes several values."""
    snakemake = Path(sys.executable).parent / "snakemake"
    program = [str(snakemake)] if snakemake.exists() else [sys.executable, "-m", "snakemake"]
    if run and run["options"]:
        where = run["run_dir"] or str(Path.cwd())
        return f"cd {shlex.quote(where)} && {shlex.join([*program, target, *run['options']])}"
    options = ["--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory", str(root.resolve()),
               "--configfile", *(str(Path(p).resolve()) for p in configfiles)]
    return shlex.join([*program, target, *options])


def cell_status(cfg: dict, root: Path = Path("."), configfiles: list[str] = ()) -> list[dict]:
    """One row per cell and analysis it runs: state (done, missing, failed), the output, and for a
    failure its log, last lines and a rerun command."""
    run = last_run(root)
    rows = []
    for cell in grid.cells(cfg):
        rel = cell.path
        for analysis in analyses_of(cfg, cell):
            output = Path(analysis.target(cell.record()))
            row = {"cell": rel, "stage": analysis.name, "state": "missing", "output": str(output), "log": "", "tail": []}
            if (root / output).exists():
                row["state"] = "done"
            else:
                logs = [log for rule in analysis.log_rules for log in [root / "logs" / rule / f"{rel}.log",
                                                                      *sorted((root / "logs" / rule / rel).glob("*.log"))]
                        if log.is_file()]
                for log in logs:
                    tail = _failure(log)
                    if tail is not None:
                        row.update(state="failed", log=str(log), tail=tail)
                        break
                if row["state"] == "missing" and run and str(output) in run["refused"]:
                    rule, message = run["refused"][str(output)]
                    row.update(state="failed", log=str(run["log"]), tail=[f"SLURM refused the {rule} job: {message}"])
            if row["state"] == "failed":
                row["rerun"] = rerun_command(run, root, list(configfiles), cell_target().format(**cell.record()))
            rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    """A cell x stage grid (✓ done, · missing, ✗ failed), then every failure with its log."""
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    mark = {"done": "✓", "missing": "·", "failed": "✗"}
    state = {(r["cell"], r["stage"]): r["state"] for r in rows}
    width = max(len(c) for c in cells) + 2
    lines = ["cell".ljust(width) + " ".join(s[:8].ljust(8) for s in stages)]
    for cell in cells:
        lines.append(cell.ljust(width) + " ".join(mark.get(state.get((cell, s), ""), " ").ljust(8) for s in stages))
    counts = {k: sum(r["state"] == k for r in rows) for k in mark}
    lines.append(f"\n{counts['done']} done, {counts['missing']} missing, {counts['failed']} failed "
                 f"(✓ done, · missing or running, ✗ failed)")
    for r in rows:
        if r["state"] == "failed":
            lines.append(f"\nFAILED {r['cell']} {r['stage']}: {r['log']}")
            lines += [f"    {line}" for line in r["tail"]]
            lines.append(f"    rerun: {r['rerun']}")
    return "\n".join(lines)
