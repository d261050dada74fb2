"""`python -m reglens status`: done / missing / failed per cell and stage, from files and logs only."""
import subprocess
import sys

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
    assert f"rerun: snakemake results/{cell}/robustness/masking.csv" in out.stdout
