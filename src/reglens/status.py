"""`python -m reglens status`: per cell and stage, done / missing / failed, from the files and job logs
alone (no Snakemake run, nothing rerun). A stage failed when its output is absent and one of its
jobs' logs ends in an error; the log's path and last lines are printed."""
from __future__ import annotations

from pathlib import Path

from reglens import analyses  # noqa: F401  (registers the analyses)
from reglens import grid
from reglens.layout import analyses_of

ERROR_MARKERS = ("Traceback (most recent call last)", "Error:", "CANCELLED", "DUE TO TIME LIMIT")


def _failure(log: Path) -> list[str] | None:
    """The last lines of a log that ends in an error, else None."""
    lines = [line.rstrip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if any(marker in line for line in lines for marker in ERROR_MARKERS):
        return lines[-3:]
    return None


def cell_status(cfg: dict, root: Path = Path(".")) -> list[dict]:
    """One row per cell and analysis it runs: state (done, missing, failed), the output, and for a
    failure its log and last lines."""
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
            lines.append(f"    rerun: snakemake {r['output']}")
    return "\n".join(lines)
