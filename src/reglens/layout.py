"""The study's shape in one place: where a cell's files live, and what a per-cell analysis is.

A cell is one study x architecture x regularizer x seed; everything it produces lives under
`results/{study}/{arch}/{reg}/seed{seed}/`. A per-cell analysis is one `Analysis` record (the
records are in reglens.analyses): its name (the rule's, the stage module's, the tidy table's
`stage`), its outputs relative to the cell folder, the cells it applies to, how its outputs become
tidy rows, its scorecard measures, its figures and its cost. The workflow's targets and rule
outputs, the tidy table, `reglens status` and `reglens plan` read the records; nothing else spells
a cell path or a per-cell file name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RESULTS = "results"
CELL_PATH = "{study}/{arch}/{reg}/seed{seed}"            # a cell's path, as wildcards
CELL_DIR = RESULTS + "/" + CELL_PATH                     # the wildcard pattern of a cell folder
KEYS = ["study", "dataset", "arch", "reg", "seed"]      # a cell's columns in every table


@dataclass(frozen=True)
class Cell:
    study: str
    dataset: str
    arch: str
    reg: str
    seed: int
    shortcut: bool = False     # the study plants a shortcut (reglens.shortcut)
    groups: int | None = None  # filter groups of the study's group regularizers (for the group analysis)
    inputs: str = "images"     # what the dataset holds: 'images', or 'points' (the 2-D toy study)

    @property
    def path(self) -> str:
        return cell_path(self.as_dict())

    def as_dict(self) -> dict:
        return {"study": self.study, "dataset": self.dataset, "arch": self.arch, "reg": self.reg,
                "seed": self.seed}

    def record(self) -> dict:
        """as_dict() plus what decides the cell's analyses (aggregate and figures read it)."""
        return {**self.as_dict(), "shortcut": self.shortcut, "groups": self.groups, "inputs": self.inputs}


def cell_path(cell: dict) -> str:
    """study/arch/reg/seed<k>: a cell's folder under results/, and how the config names a cell."""
    return CELL_PATH.format(**{key: cell[key] for key in ("study", "arch", "reg", "seed")})


def cell_target() -> str:
    """The wildcard pattern of the file that stands for every step of one cell (the `cell` rule)."""
    return f"{CELL_DIR}/done.json"


def seed_folder(seed: int) -> str:
    """The last part of a cell's path."""
    return CELL_PATH.rsplit("/", 1)[1].format(seed=seed)


def cell_log(rule: str, wildcard: str | None = None) -> str:
    """The wildcard pattern of a per-cell job's log; with `wildcard` (e.g. method), one log per value."""
    return f"logs/{rule}/{CELL_PATH}" + (f"/{{{wildcard}}}" if wildcard else "") + ".log"


def parse_cell_path(path: str) -> tuple[str, str, str, int]:
    """(study, arch, reg, seed) of a cell path; ValueError when it is not one."""
    parts = path.split("/")
    if len(parts) != 4 or not parts[3].startswith("seed") or not parts[3][4:].isdigit():
        raise ValueError(f"{path!r} is not a cell path (study/arch/reg/seed<k>)")
    return parts[0], parts[1], parts[2], int(parts[3][4:])


def cell_folder(cell: dict, root: str | Path = ".") -> Path:
    """A cell's folder under `root` (the folder holding results/)."""
    return Path(root) / RESULTS / cell_path(cell)


@dataclass(frozen=True)
class CellFigure:
    """A per-cell figure: its file name, the outputs (keys) it is drawn from, and its drawer
    draw(files: {key: Path}, out_path, title)."""
    name: str
    sources: tuple[str, ...]
    draw: Callable


@dataclass(frozen=True)
class Analysis:
    name: str                               # the rule, the stage module, the tidy table's `stage`
    outputs: dict[str, str]                 # output key -> file under the cell folder
    result: str                             # the output that is its target, written last
    read: Callable[[dict], dict] | None = None   # {key: Path} of its outputs -> {metric: value}
    rules: tuple[str, ...] = ()             # the rules whose logs belong to it (default: its name)
    inputs: str = "any"                     # the cells it runs on: 'any', 'images' or 'points'
    shortcut_only: bool = False             # only in a study that plants a shortcut
    switch: str | None = None               # the config section whose `enabled` turns it on
    base_cells_only: bool = False           # only on the config's roar.cells (ROAR's retrains)
    needs: tuple[str, ...] = ()             # analyses whose outputs it reads (it runs where they do)
    point_outputs: dict[str, str] = field(default_factory=dict)  # extra outputs of cells of 2-D points
    intermediate: dict[str, str] = field(default_factory=dict)   # files of its inner jobs (more wildcards)
    stacked: dict[str, str] = field(default_factory=dict)        # tables/<name>.csv <- this output, stacked
    figures: tuple[CellFigure, ...] = ()
    measures: tuple = ()                    # reglens.measures.Measure entries of the scorecard
    cost: Callable | None = None            # plan: FLOPs of one job, from reglens.plan.CellCost

    @property
    def log_rules(self) -> tuple[str, ...]:
        return self.rules or (self.name,)

    def applies(self, cfg: dict, cell) -> bool:
        """Whether this analysis runs on `cell` (a Cell or its record) under the validated `cfg`."""
        record = cell.record() if isinstance(cell, Cell) else cell
        if self.switch and not cfg[self.switch]["enabled"]:
            return False
        if self.inputs != "any" and record.get("inputs", "images") != self.inputs:
            return False
        if self.shortcut_only and not record.get("shortcut"):
            return False
        chosen = cfg.get("studies", {}).get(record["study"], {}).get("analyses")
        if chosen is not None and self.name not in chosen and self.name != "train":
            return False
        if not all(REGISTRY[name].applies(cfg, record) for name in self.needs):
            return False
        return not self.base_cells_only or cell_path(record) in set(cfg["roar"]["cells"])

    def under(self, folder: str | Path, points: bool = False) -> dict[str, Path]:
        """Its outputs in a cell folder (with the extra outputs of 2-D points when `points`): the
        `out` mapping its stage takes."""
        names = {**self.outputs, **(self.point_outputs if points else {})}
        return {key: Path(folder) / name for key, name in names.items()}

    def paths(self, cell: dict, root: str | Path = ".") -> dict[str, Path]:
        """Its outputs for one cell (a record), under `root` (the folder holding results/)."""
        return self.under(cell_folder(cell, root), cell.get("inputs") == "points")

    def files(self, cell: dict | None = None, root: str | Path = ".") -> dict[str, str]:
        """Its outputs as path strings: a cell's, or the wildcard patterns (for a rule)."""
        if cell is None:
            return {key: f"{CELL_DIR}/{name}" for key, name in self.outputs.items()}
        return {key: str(path) for key, path in self.paths(cell, root).items()}

    def target(self, cell: dict | None = None, root: str | Path = ".") -> str:
        return self.files(cell, root)[self.result]

    def pattern(self, key: str) -> str:
        """One output or intermediate file as a wildcard pattern under CELL_DIR (for a rule)."""
        names = {**self.outputs, **self.point_outputs, **self.intermediate}
        return f"{CELL_DIR}/{names[key]}"


REGISTRY: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    """Add a per-cell analysis (its name must be new); returns it."""
    if analysis.name in REGISTRY:
        raise ValueError(f"analysis {analysis.name!r} is registered twice")
    if analysis.result not in analysis.outputs:
        raise ValueError(f"analysis {analysis.name!r}: result {analysis.result!r} is not one of its outputs")
    REGISTRY[analysis.name] = analysis
    return analysis


def analyses_of(cfg: dict, cell) -> list[Analysis]:
    """The analyses a cell runs, in registry order."""
    return [a for a in REGISTRY.values() if a.applies(cfg, cell)]


def optional() -> list[str]:
    """Config sections that switch a per-cell analysis on or off."""
    return list(dict.fromkeys(a.switch for a in REGISTRY.values() if a.switch))


def shape(cfg: dict) -> dict:
    """The part of a validated config that decides which analyses run on which cells (what
    aggregation and figures need to be told)."""
    return {**{section: {"enabled": bool(cfg[section]["enabled"])} for section in optional()},
            "roar": {"cells": list(cfg["roar"]["cells"])},
            "studies": {name: {"analyses": study.get("analyses")} for name, study in cfg["studies"].items()}}
