"""Study configuration: schema validation (enums from the registries), named-variant checks, the grid."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from reglens import actmax, attribution, data, dissect, models, regularizers, roar

from reglens.data import broden as broden_io

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def load_yaml(path: str | Path) -> dict:
    try:
        with open(path) as handle:
            loaded = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return loaded


def schema(path: str | Path = SCHEMA_PATH) -> dict:
    """The config schema with its registry enums filled in."""
    out = load_yaml(path)
    study = out["properties"]["studies"]["additionalProperties"]["properties"]
    study["dataset"]["enum"] = sorted(data.DATASETS)
    study["archs"]["items"]["enum"] = sorted(models.MODELS)
    reg_item = out["properties"]["regularizers"]["additionalProperties"]["items"]
    reg_item["properties"]["kind"]["enum"] = sorted(regularizers.KINDS)
    props = out["properties"]
    for section, key in (("explain", "methods"), ("explain", "mprt_methods"), ("roar", "methods")):
        props[section]["properties"][key]["items"]["enum"] = sorted(attribution.METHODS)
    return out


def _where(error: jsonschema.ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else ("." if parts else "") + str(part))
    return "".join(parts) or "<top level>"


def _message(error: jsonschema.ValidationError) -> str:
    where = _where(error)
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not valid; valid: {error.validator_value}"
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {extra}; valid: {allowed}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def validate(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate a config dict and return a copy with defaults filled in. Raises ConfigError naming
    the offending key and the valid choices."""
    cfg = copy.deepcopy(config)
    validator = jsonschema.Draft202012Validator(schema(schema_path))
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), _where(e)))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_message(e) for e in errors[:10]))
    cfg.setdefault("device", "auto")
    cfg.setdefault("partial", False)
    cfg.setdefault("data", {})
    cfg["data"].setdefault("root", "resources")
    cfg["data"].setdefault("offline_dir", None)
    cfg.setdefault("robustness", {})
    cfg["explain"] = {**attribution.EXPLAIN_DEFAULTS, **cfg.get("explain", {})}
    cfg["actmax"] = {**actmax.ACTMAX_DEFAULTS, **cfg.get("actmax", {})}
    cfg["roar"] = {**roar.ROAR_DEFAULTS, **cfg.get("roar", {})}
    cfg["roar"]["learner"] = {**roar.ROAR_DEFAULTS["learner"], **cfg["roar"]["learner"]}
    _dissect_settings(cfg)
    variants = cfg["regularizers"]
    for name in variants:
        _check_variant(name, variants, f"regularizers.{name}")
    for sname, study in cfg["studies"].items():
        study.setdefault("model", {})
        study.setdefault("train", {})
        ds = data.DATASETS[study["dataset"]]
        for i, reg in enumerate(study["regularizers"]):
            where = f"studies.{sname}.regularizers[{i}]"
            _check_variant(reg, variants, where)
            try:
                regularizers.build(reg, variants).check_task(ds.channels * ds.size ** 2, ds.num_classes)
            except ValueError as exc:
                raise ConfigError(f"{where} ({reg!r} on {ds.name}): {exc.args[0]}") from None
    _check_roar(cfg)
    return cfg


def _dissect_settings(cfg: dict) -> None:
    given = cfg.get("dissect", {})
    broden = {**dissect.BRODEN_DEFAULTS, **given.get("broden", {})}
    broden["synthetic"] = {**dissect.BRODEN_DEFAULTS["synthetic"], **broden["synthetic"]}
    cfg["dissect"] = {"enabled": True, **dissect.DISSECT_DEFAULTS, **given, "broden": broden}
    if broden["source"] == "folder" and not broden["folder"]:
        raise ConfigError("dissect.broden.folder: source 'folder' needs the path of an unpacked Broden "
                          "(the folder holding index.csv)")
    if broden["source"] == "download":
        try:
            broden_io.remote(broden["version"], broden["md5"])
        except broden_io.BrodenFormatError as exc:
            raise ConfigError(str(exc)) from None


def _check_roar(cfg: dict) -> None:
    r = cfg["roar"]
    if "random" not in r["methods"]:
        raise ConfigError(f"roar.methods: {r['methods']} lacks 'random', the baseline every score is measured against")
    configured = {cell.path for cell in cells(cfg)}
    for i, path in enumerate(r["cells"]):
        if path not in configured:
            raise ConfigError(f"roar.cells[{i}]: {path!r} is not a configured cell (study/arch/reg/seed<k>)")
    if r["learner"]["arch"] is not None and r["learner"]["arch"] not in models.MODELS:
        raise ConfigError(f"roar.learner.arch: {r['learner']['arch']!r} is not valid; valid: {sorted(models.MODELS)}")
    _check_variant(r["learner"]["reg"], cfg["regularizers"], "roar.learner.reg")
    from reglens.train import TRAIN_DEFAULTS

    unknown = set(r["train"]) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ConfigError(f"roar.train: unknown key(s) {sorted(unknown)}; valid: {sorted(TRAIN_DEFAULTS)}")


def _check_variant(name: str, variants: dict, where: str) -> None:
    try:
        regularizers.build(name, variants)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc.args[0]}") from None


@dataclass(frozen=True)
class Cell:
    study: str
    dataset: str
    arch: str
    reg: str
    seed: int

    @property
    def path(self) -> str:
        return f"{self.study}/{self.arch}/{self.reg}/seed{self.seed}"

    def as_dict(self) -> dict:
        return {"study": self.study, "dataset": self.dataset, "arch": self.arch, "reg": self.reg,
                "seed": self.seed}


def cells(cfg: dict) -> list[Cell]:
    return [Cell(sname, study["dataset"], arch, reg, seed)
            for sname, study in cfg["studies"].items()
            for arch in study["archs"] for reg in study["regularizers"] for seed in study["seeds"]]


def find_cell(cfg: dict, study: str, arch: str, reg: str, seed: int) -> Cell:
    """The configured cell a target path names, or a ConfigError saying what is configured."""
    if study not in cfg["studies"]:
        raise ConfigError(f"study {study!r} is not in the config; configured: {sorted(cfg['studies'])}")
    s = cfg["studies"][study]
    for key, value, options in (("archs", arch, s["archs"]), ("regularizers", reg, s["regularizers"]),
                                ("seeds", int(seed), s["seeds"])):
        if value not in options:
            raise ConfigError(f"studies.{study}.{key}: {value!r} is not configured; configured: {options}")
    return Cell(study, s["dataset"], arch, reg, int(seed))
