"""Where a Snakemake run's time went, from its log (.snakemake/log/*.snakemake.log): per rule, the jobs,
their summed and mean wall seconds (start to finish, 1-s resolution, so parallel jobs overlap), and
the run's own wall time.

    python benchmarks/rule_times.py .snakemake/log/<run>.snakemake.log
"""
from __future__ import annotations

import argparse
import re
from collections import defaultdict
from datetime import datetime

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def job_times(lines: list[str]) -> list[tuple[str, float]]:
    """(rule, seconds) of every finished job."""
    started, done, stamp, rule = {}, [], None, None
    for line in lines:
        line = line.rstrip("\n")
        if m := STAMP.match(line):
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif (m := re.match(r"^\s+jobid: (\d+)$", line)) and rule:
            started[m.group(1)] = (rule, stamp)
            rule = None
        elif m := re.match(r"^Finished jobid: (\d+)", line):
            name, begin = started.pop(m.group(1), (None, None))
            if name:
                done.append((name, (stamp - begin).total_seconds()))
    return done


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    lines = open(args.log).readlines()
    per = defaultdict(list)
    for rule, seconds in job_times(lines):
        per[rule].append(seconds)
    stamps = [datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
              for m in map(STAMP.match, (l.rstrip("\n") for l in lines)) if m]
    total = sum(sum(v) for v in per.values())
    rows = [(rule, len(v), sum(v), sum(v) / total, sum(v) / len(v), max(v))
            for rule, v in sorted(per.items(), key=lambda kv: -sum(kv[1]))]
    if args.markdown:
        print("| rule | jobs | job-seconds | share | mean s | max s |\n|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.1%} | {r[4]:.1f} | {r[5]:.0f} |")
        print(f"| all jobs | {sum(r[1] for r in rows)} | {total:.0f} | | | |")
    else:
        print(f"{'rule':16s} {'jobs':>5s} {'job-s':>8s} {'share':>6s} {'mean s':>7s} {'max s':>6s}")
        for r in rows:
            print(f"{r[0]:16s} {r[1]:5d} {r[2]:8.0f} {r[3]:6.1%} {r[4]:7.1f} {r[5]:6.0f}")
        print(f"{'all jobs':16s} {sum(r[1] for r in rows):5d} {total:8.0f}")
    if stamps:
        print(f"wall time of the run: {(stamps[-1] - stamps[0]).total_seconds():.0f} s")


if __name__ == "__main__":
    main()
