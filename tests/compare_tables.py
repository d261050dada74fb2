"""Compare two results/tables folders: the same tables with the same rows (in any order) and values,
leaving out wall-clock timings (seconds, images_per_s, train_seconds). The tidy `stage` names
calibration, boundary and weights became diagnose (one name per analysis)."""
import sys
from pathlib import Path
import pandas as pd
RENAMED = {"calibration": "diagnose", "boundary": "diagnose", "weights": "diagnose"}
TIMING_COLUMNS = {"seconds", "images_per_s"}
TIMING_METRICS = {"train_seconds", "images_per_s"}
a, b = Path(sys.argv[1]), Path(sys.argv[2])
names_a, names_b = {p.name for p in a.glob("*.csv")}, {p.name for p in b.glob("*.csv")}
print("only before:", sorted(names_a - names_b), "only after:", sorted(names_b - names_a))
bad = len(names_a ^ names_b)
def tidy(frame):
    if "stage" in frame.columns:
        frame["stage"] = frame["stage"].replace(RENAMED)
    frame = frame.drop(columns=[c for c in frame.columns if c in TIMING_COLUMNS])
    for col in ("metric", "measure", "metric_a", "metric_b", "measure_a", "measure_b"):
        if col in frame.columns:
            frame = frame[~frame[col].isin(TIMING_METRICS)]
    return frame
for name in sorted(names_a & names_b):
    x, y = tidy(pd.read_csv(a / name)), tidy(pd.read_csv(b / name))
    same = set(x.columns) == set(y.columns)
    if same:
        y = y[x.columns]
        order = list(x.columns)
        x = x.sort_values(order, key=lambda c: c.astype(str)).reset_index(drop=True)
        y = y.sort_values(order, key=lambda c: c.astype(str)).reset_index(drop=True)
        same = x.equals(y)
    print(f"{name:24s} rows {len(x):5d} / {len(y):5d}  {'identical' if same else 'DIFFERENT'}")
    bad += not same
sys.exit(1 if bad else 0)
