"""`python -m reglens <command>`: tools around the workflow that need no Snakemake run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from reglens import config, configdoc, grid, metaeval, plan, readme, status


def _merge(base: dict, over: dict) -> dict:
    """Snakemake's merge of several config files: nested mappings merge, other values are replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def check_config(paths: list[str]) -> int:
    """Validate config files as the workflow will (later files override earlier ones)."""
    merged: dict = {}
    try:
        for path in paths:
            merged = _merge(merged, config.load_yaml(path))
        cfg = config.validate(merged)
    except config.ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{', '.join(paths)}: valid; {len(grid.cells(cfg))} cells in {len(cfg['studies'])} studies")
    return 0


def _load(paths: list[str]) -> dict:
    merged: dict = {}
    for path in paths:
        merged = _merge(merged, config.load_yaml(path))
    return config.validate(merged)


def print_status(paths: list[str], root: Path) -> int:
    if not ((root / "results").is_dir() or (root / "logs").is_dir()):
        raise config.ConfigError(f"--root {root}: neither results/ nor logs/ there; give the folder a run was started "
                                 "in (the one holding results/ and logs/)")
    rows = status.cell_status(_load(paths), root, paths)
    print(status.render(rows))
    return 1 if any(r["state"] == "failed" for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reglens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("config-doc", help="print config/README.md (every config key, from the schema)")
    check = commands.add_parser("check-config", help="validate config files, naming the line of any YAML error")
    check.add_argument("paths", nargs="+")
    bill = commands.add_parser("plan", help="jobs, FLOPs and GPU-hours per rule, before a run")
    bill.add_argument("--configfile", nargs="+", default=[str(config.SCHEMA_PATH.parents[2] / "config" / "demo.yaml")])
    bill.add_argument("--device", default="h200", choices=sorted(plan.DEVICES))
    bill.add_argument("--utilization", type=float, default=0.3, help="fraction of the device's peak reached")
    bill.add_argument("--measured", default="results/bench/train_throughput.json",
                      help="`make bench`'s utilization per precision, used where it was measured on --device")
    bill.add_argument("--pilot", help="a finished pilot run's tables folder (e.g. results/tables): print the "
                                      "seeds each measure needs, from its metaeval.csv")
    regen = commands.add_parser("readme", help="rewrite the generated result blocks of README.md and docs/*.md "
                                               "from results/tables")
    regen.add_argument("pages", nargs="*", help="default: README.md and docs/*.md")
    regen.add_argument("--tables", default="results/tables")
    view = commands.add_parser("status", help="per cell and stage: done, missing or failed (with its log), "
                                              "from the files and logs alone")
    view.add_argument("--configfile", nargs="+", default=[str(config.SCHEMA_PATH.parents[2] / "config" / "demo.yaml")])
    view.add_argument("--root", default=".", help="the run's folder (holding results/ and logs/)")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except config.ConfigError as error:       # one line naming the key or file, no traceback
        print(error, file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "status":
        return print_status(args.configfile, Path(args.root))
    if args.command == "readme":
        for page in args.pages or ["README.md", *sorted(str(p) for p in Path("docs").glob("*.md"))]:
            done = readme.regenerate(page, args.tables)
            if done:
                print(f"{page}: regenerated {', '.join(done)}")
        return 0
    if args.command == "config-doc":
        sys.stdout.write(configdoc.config_doc())
        return 0
    if args.command == "plan":
        code = print_plan(args.configfile, args.device, args.utilization, args.measured)
        return print_pilot(Path(args.pilot)) if args.pilot else code
    return check_config(args.paths)


def print_plan(paths: list[str], device: str, utilization: float, measured_path: str | None = None) -> int:
    if not 0 < utilization <= 1:
        raise config.ConfigError(f"--utilization {utilization}: a fraction of the device's peak, in (0, 1]")
    cfg = _load(paths)
    measured = {}
    if measured_path and Path(measured_path).exists():
        try:
            bench = json.loads(Path(measured_path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise config.ConfigError(f"--measured {measured_path}: not the JSON that `make bench` writes ({exc}); "
                                     "rerun the benchmark or pass another file") from None
        measured = plan.measured_utilization(bench, device)
        print(f"{measured_path}: measured on {bench.get('device')} on {bench.get('date')}: "
              + (", ".join(f"{p} at {u:.1%} of peak" for p, u in measured.items()) if measured
                 else f"not a {device}, so not used"))
    table = plan.bill(cfg, device, utilization, measured=measured)
    peak = plan.DEVICES[device]
    print(f"{', '.join(paths)}: {len(grid.cells(cfg))} cells; {peak['name']} at {utilization:.0%} of its dense peak "
          f"where not measured (fp32 jobs at TF32 {peak['tf32'] / 1e12:.0f} TFLOP/s, bf16 {peak['bf16'] / 1e12:.0f} TFLOP/s)")
    print(table.to_string(index=False, formatters={"pflop": "{:,.1f}".format, "gpu_hours": "{:,.2f}".format}))
    return 0


def print_pilot(tables: Path) -> int:
    path = tables / "metaeval.csv"
    if not path.exists():
        raise config.ConfigError(f"--pilot {tables}: no metaeval.csv there; finish a run's `aggregate` rule "
                                 "first (`snakemake aggregate`) or pass its results/tables folder")
    table = metaeval.pilot_seeds(pd.read_csv(path))
    print(f"\n{path}: paired seeds per regularizer each measure needs to show its largest observed "
          "difference from the baseline at 80% power (two-sided 0.05)")
    print(table.to_string(index=False, formatters={"icc": "{:.2f}".format, "seeds_needed": "{:.0f}".format}))
    return 0
