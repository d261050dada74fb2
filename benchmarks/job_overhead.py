"""The fixed cost of one Snakemake job here: Snakemake's own work per job, the interpreter's start, and
the imports every reglens job script does. Each is the slope of a generated workflow's wall time
(`--cores 1`, sequential) between 1 and N+1 jobs of that kind: Snakemake's start and DAG are paid once
and cancel.

    python benchmarks/job_overhead.py --jobs 12
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = {
    "snakemake only (shell: touch)": 'shell:\n        "touch {output}"',
    "+ interpreter (shell: python -c pass)": f'shell:\n        "{sys.executable} -c pass && touch {{output}}"',
    "+ torch and a stage's imports (script:)": 'script:\n        "job.py"',
}
SCRIPT = """from pathlib import Path
from reglens.stages.common import job  # what every job script imports first
import reglens.stages.attack  # noqa: F401  a typical stage: torch, the models, the attacks
Path(snakemake.output[0]).touch()
"""


def measure(body: str, jobs: int, snakemake: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "job.py").write_text(SCRIPT)
        (folder / "Snakefile").write_text(
            "from pathlib import Path\n\n"
            f"rule all:\n    input: expand('out/{{k}}', k=range({jobs}))\n\n"
            f"rule one:\n    output: 'out/{{k}}'\n    {body}\n")
        subprocess.run([snakemake, "-n", "--cores", "1", "-q"], cwd=folder, check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run([snakemake, "--cores", "1", "-q"], cwd=folder, check=True, capture_output=True)
        return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--snakemake", default=str(Path(sys.executable).with_name("snakemake")))
    args = parser.parse_args(argv)
    previous = 0.0
    print(f"{'kind':45s} {'s/job':>7s} {'added':>7s}")
    for name, body in KINDS.items():
        per_job = (measure(body, args.jobs + 1, args.snakemake) - measure(body, 1, args.snakemake)) / args.jobs
        print(f"{name:45s} {per_job:7.2f} {per_job - previous:7.2f}")
        previous = per_job


if __name__ == "__main__":
    main()
