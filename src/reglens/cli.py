"""`python -m reglens <command>`: tools around the workflow that need no Snakemake run."""
from __future__ import annotations

import argparse
import sys

from reglens import config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reglens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("config-doc", help="print config/README.md (every config key, from the schema)")
    args = parser.parse_args(argv)
    if args.command == "config-doc":
        sys.stdout.write(config.config_doc())
    return 0
