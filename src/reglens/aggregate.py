"""Gather per-cell outputs into tidy long tables: one row per cell x analysis x metric."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from reglens import analyses
from reglens.dissect.groups import group_agreement
from reglens.io import read_csv
from reglens.layout import KEYS, REGISTRY


def _group_metrics(table: pd.DataFrame) -> dict:
    """One cell's concept agreement within its filter groups (rows of dissect.groups.group_agreement): means over
    groups, per layer and in all, against the chance agreement of random groups."""
    out = {"dissect_group_agreement": table.agreement.mean(), "dissect_group_agreement_chance": table.chance.mean(),
           "dissect_group_detecting": table.detecting.mean()}
    for layer, frame in table.groupby("layer", sort=False):
        out[f"dissect_group_agreement@{layer.removeprefix('body.')}"] = frame.agreement.mean()
    return out


def group_tables(results_root, cells: list[dict]) -> pd.DataFrame:
    """Per cell with filter groups, layer and group: the group's concept and agreement (tables/dissect_groups.csv)."""
    frames = []
    for cell in cells:
        units = REGISTRY["dissect"].paths(cell, results_root)["units"]
        if cell.get("groups") and units.exists():
            frame = group_agreement(read_csv(units), cell["groups"])
            for i, key in enumerate(KEYS):
                frame.insert(i, key, cell[key])
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=KEYS + ["layer", "group"])


def concat_cell_tables(results_root, cfg: dict, cells: list[dict], table: str) -> pd.DataFrame:
    """One stacked table (analyses.stacked_tables): the per-cell CSVs of the cells its analysis runs on,
    with the cell's keys as leading columns (absent files skipped)."""
    name, key = analyses.stacked_tables()[table]
    frames = []
    for cell in cells:
        if not REGISTRY[name].applies(cfg, cell):
            continue
        path = REGISTRY[name].paths(cell, results_root)[key]
        if path.exists():
            frame = read_csv(path)
            for i, k in enumerate(KEYS):
                frame.insert(i, k, cell[k])
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=KEYS)


def collect(results_root: str | Path, cfg: dict, cells: list[dict],
            groups: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (tidy table, missing table) over the cells' analyses (those `cfg` runs on each cell, in
    registry order). An analysis whose result file is absent is listed as missing. `results_root`
    holds results/; `groups` is group_tables' output (computed here when not given)."""
    if groups is None:
        groups = group_tables(results_root, cells)
    by_cell = {key: frame for key, frame in groups.groupby(KEYS)} if len(groups) else {}
    rows, missing = [], []
    for cell in cells:
        key = tuple(cell[k] for k in KEYS)
        for analysis in REGISTRY.values():
            if not analysis.applies(cfg, cell) or analysis.read is None:
                continue
            files = analysis.paths(cell, results_root)
            if not files[analysis.result].exists():
                missing.append({**{k: cell[k] for k in KEYS}, "stage": analysis.name, "file": str(files[analysis.result])})
                continue
            values = analysis.read(files)
            if analysis.name == "dissect" and key in by_cell:
                values.update(_group_metrics(by_cell[key]))
            for metric, value in values.items():
                rows.append({**{k: cell[k] for k in KEYS}, "stage": analysis.name, "metric": metric,
                             "value": float(value)})
    tidy = pd.DataFrame(rows, columns=KEYS + ["stage", "metric", "value"])
    return tidy, pd.DataFrame(missing, columns=KEYS + ["stage", "file"])
