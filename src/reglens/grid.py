"""The grid of a validated config: its cells (study x arch x regularizer x seed) and the ROAR base
cells, and the error every config check raises."""
from __future__ import annotations

from reglens import data, regularizers
from reglens.layout import Cell, cell_path, parse_cell_path


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and what is valid."""


GRID_KEYS = {"studies": None, "archs": "archs", "regularizers": "regularizers", "seeds": "seeds"}


def expand_roar_cells(cfg: dict) -> list[str]:
    """roar.cells as cell paths: each entry is a path (study/arch/reg/seed<k>) or a grid
    {studies, archs, regularizers, seeds}, each a list or 'all' (every value the study has; for
    studies, every study of images: ROAR ranks pixels, which 2-D points do not have)."""
    configured = {cell.path for cell in cells(cfg) if data.spec(cell.dataset).inputs == "images"}
    points = {name for name, s in cfg["studies"].items() if data.spec(s["dataset"]).inputs != "images"}
    out = []
    for i, entry in enumerate(cfg["roar"]["cells"]):
        if isinstance(entry, str):
            if entry.split("/")[0] in points:
                raise ConfigError(f"roar.cells[{i}]: {entry!r} is a cell of 2-D points; ROAR needs images")
            if entry not in configured:
                raise ConfigError(f"roar.cells[{i}]: {entry!r} is not a configured cell (study/arch/reg/seed<k>)")
            paths = [entry]
        else:
            studies = [s for s in cfg["studies"] if s not in points] if entry.get("studies", "all") == "all" \
                else entry["studies"]
            paths = []
            for study in studies:
                if study not in cfg["studies"]:
                    raise ConfigError(f"roar.cells[{i}].studies: {study!r} is not a study; studies: {sorted(cfg['studies'])}")
                if study in points:
                    raise ConfigError(f"roar.cells[{i}].studies: {study!r} holds 2-D points; ROAR needs images")
                s = cfg["studies"][study]
                axes = {}
                for key in ("archs", "regularizers", "seeds"):
                    chosen = entry.get(key, "all")
                    chosen = s[key] if chosen == "all" else chosen
                    missing = [v for v in chosen if v not in s[key]]
                    if missing:
                        raise ConfigError(f"roar.cells[{i}].{key}: {missing} not in studies.{study}.{key} {s[key]}")
                    axes[key] = chosen
                paths += [cell_path({"study": study, "arch": a, "reg": r, "seed": k}) for a in axes["archs"]
                          for r in axes["regularizers"] for k in axes["seeds"]]
        out += [p for p in paths if p not in out]
    return out


GROUP_KINDS = ("group_norm", "group_activation")


def study_groups(cfg: dict, study: str) -> int | None:
    """The filter groups of a study's group regularizers (the largest, if they differ); None without any."""
    found = [regularizers.build_member(spec).groups for reg in cfg["studies"][study]["regularizers"]
             for spec in regularizers.resolve(reg, cfg["regularizers"]) if spec["kind"] in GROUP_KINDS]
    return max(found) if found else None


def cells(cfg: dict) -> list[Cell]:
    groups = {sname: study_groups(cfg, sname) for sname in cfg["studies"]}
    return [Cell(sname, study["dataset"], arch, reg, seed, "shortcut" in study, groups[sname],
                 data.spec(study["dataset"]).inputs)
            for sname, study in cfg["studies"].items()
            for arch in study["archs"] for reg in study["regularizers"] for seed in study["seeds"]]


def cell_at(cfg: dict, path: str) -> Cell:
    """The configured cell of a path study/arch/reg/seed<k>."""
    return find_cell(cfg, *parse_cell_path(path))


def find_cell(cfg: dict, study: str, arch: str, reg: str, seed: int) -> Cell:
    """The configured cell a target path names, or a ConfigError saying what is configured."""
    if study not in cfg["studies"]:
        raise ConfigError(f"study {study!r} is not in the config; configured: {sorted(cfg['studies'])}")
    s = cfg["studies"][study]
    for key, value, options in (("archs", arch, s["archs"]), ("regularizers", reg, s["regularizers"]),
                                ("seeds", int(seed), s["seeds"])):
        if value not in options:
            raise ConfigError(f"studies.{study}.{key}: {value!r} is not configured; configured: {options}")
    return Cell(study, s["dataset"], arch, reg, int(seed), "shortcut" in s, study_groups(cfg, study),
                data.spec(s["dataset"]).inputs)
