"""`python -m reglens <command>`: tools around the workflow that need no Snakemake run."""
from __future__ import annotations

import argparse
import sys

from reglens import config


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
    print(f"{', '.join(paths)}: valid; {len(config.cells(cfg))} cells in {len(cfg['studies'])} studies")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reglens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("config-doc", help="print config/README.md (every config key, from the schema)")
    check = commands.add_parser("check-config", help="validate config files, naming the line of any YAML error")
    check.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "config-doc":
        sys.stdout.write(config.config_doc())
        return 0
    return check_config(args.paths)
