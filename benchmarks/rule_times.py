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
    args = parser.parse_args(argv)
    lines = open(args.log).readlines()
    per = defaultdict(list)
    for rule, seconds in job_times(lines):
        per[rule].append(seconds)
    stamps = [datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
              for m in map(STAMP.match, (l.rstrip("\n") for l in lines)) if m]
    total = sum(sum(v) for v in per.values())
    print(f"{'rule':16s} {'jobs':>5s} {'job-s':>8s} {'share':>6s} {'mean s':>7s} {'max s':>6s}")
    for rule, v in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        print(f"{rule:16s} {len(v):5d} {sum(v):8.0f} {sum(v) / total:6.1%} {sum(v) / len(v):7.1f} {max(v):6.0f}")
    print(f"{'all jobs':16s} {sum(map(len, per.values())):5d} {total:8.0f}")
    if stamps:
        print(f"wall time of the run: {(stamps[-1] - stamps[0]).total_seconds():.0f} s")


if __name__ == "__main__":
    main()
