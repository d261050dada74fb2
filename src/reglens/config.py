"""Study configuration: YAML loading and schema validation (enums from the registries), named-variant
checks (the grid of cells: reglens.grid; the generated config/README.md: reglens.configdoc)."""
from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path

import jsonschema
import torch
import yaml

from reglens import (actmax, attribution, cluster, concepts, data, dissect, embedding, layout, meta_consistency, models,
                     neurons, regularizers, replication, roar, robustness, shortcut)
from reglens.data import broden as broden_io
from reglens.data import clusters2d
from reglens.grid import ConfigError, cells, expand_roar_cells

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


# a name becomes one folder of a cell's path: no '.' or '..' component, nothing a file system refuses
NAME_LENGTH = 64
# study names that would be a results folder or target of the workflow itself (results/tables, …)
RESERVED_STUDIES = ("all", "bench", "figures", "report", "tables", "train_all")
_NUMBER_AS_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key defined twice in one mapping (YAML itself keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                raise ConfigError(f"{key_node.start_mark.name}: key {key!r} is defined twice in the same mapping "
                                  f"(lines {seen[key]} and {line}); YAML would silently keep the second. Keep one.")
            seen[key] = line
        return super().construct_mapping(node, deep)


MAX_CONFIG_BYTES = 1 << 20          # a config is text a person writes: 1 MiB is far beyond any
MAX_CONFIG_VALUES = 200_000         # values once YAML's aliases are expanded (config/config.yaml: 810)


def _expanded(node: yaml.Node, memo: dict) -> int:
    """How many values a YAML node stands for once its aliases are expanded (an alias is the node it
    names, so shared nodes are counted once per use, each computed once)."""
    if id(node) not in memo:
        if isinstance(node, yaml.MappingNode):
            memo[id(node)] = 1 + sum(_expanded(k, memo) + _expanded(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            memo[id(node)] = 1 + sum(_expanded(item, memo) for item in node.value)
        else:
            memo[id(node)] = 1
    return memo[id(node)]


def _check_size(root: yaml.Node, path) -> None:
    """Refuse a document that expands beyond MAX_CONFIG_VALUES (an 'alias bomb': a few lines whose
    aliases of aliases stand for billions of values), naming the key where it grows."""
    memo: dict = {}
    if _expanded(root, memo) <= MAX_CONFIG_VALUES:
        return
    where, node = [], root
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        children = ([(getattr(k, "value", "?"), v) for k, v in node.value] if isinstance(node, yaml.MappingNode)
                    else [(f"[{i}]", v) for i, v in enumerate(node.value)])
        name, child = max(children, key=lambda c: _expanded(c[1], memo))
        if _expanded(child, memo) <= MAX_CONFIG_VALUES // 10:
            break
        where.append(str(name))
        node = child
    key = ".".join(where[:2]).replace(".[", "[") or "<top level>"
    raise ConfigError(f"config file {path}: {_expanded(root, memo):,} values once its YAML aliases are expanded (at "
                      f"most {MAX_CONFIG_VALUES:,}), most of them under {key}; write the values out or use fewer aliases")


def load_yaml(path: str | Path) -> dict:
    """A YAML file as a dict; a syntax error names the file, line and column; a duplicate key both lines.
    Refused before anything is expanded: a file over 1 MiB, aliases that expand beyond
    MAX_CONFIG_VALUES values, and Snakemake's YTE template marker (its expressions are Python)."""
    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path}: {size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
        with open(path) as handle:
            text = handle.read()
        root = yaml.compose(text, Loader=_StrictLoader)
        if root is not None:
            _check_size(root, path)
        if root is not None and isinstance(root, yaml.MappingNode) and any(
                getattr(k, "value", None) == "__use_yte__" for k, _ in root.value):
            raise ConfigError(f"config file {path}: __use_yte__ turns on Snakemake's YTE templates, whose ? expressions "
                              "are Python that Snakemake runs while it reads the file; reglens configs are plain "
                              "YAML: remove the key and write the values out")
        loaded = yaml.load(text, Loader=_StrictLoader)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc)
        tabs = " (YAML indents with spaces; a tab cannot start a line)" if "\\t" in str(exc) or "tab" in what else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {what}{tabs}. Fix that line and rerun.") from None
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
    roar_train = props["roar"]["properties"]["train"]     # the same keys and rules as a study's
    props["roar"]["properties"]["train"] = {**copy.deepcopy(study["train"]), "description": roar_train["description"]}
    for section, key in (("explain", "methods"), ("explain", "mprt_methods"), ("roar", "methods"),
                         ("road", "methods"), ("shortcut", "methods"), ("meta_consistency", "methods")):
        props[section]["properties"][key]["items"]["enum"] = sorted(attribution.METHODS)
    _show_defaults(out, DEFAULTS)
    return out


def _show_defaults(node: dict, defaults: dict) -> None:
    """Write each default of the tree into the schema as its `default:` key (for readers and tools)."""
    for key, child in node.get("properties", {}).items():
        if key in defaults:
            child["default"] = copy.deepcopy(defaults[key])
            if isinstance(defaults[key], dict):
                _show_defaults(child, defaults[key])


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
    if error.validator == "type" and isinstance(error.instance, str) and _NUMBER_AS_TEXT.match(error.instance):
        mantissa, exponent = re.split("[eE]", error.instance)
        fixed = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{int(exponent):+d}"
        return (f"{where}: {error.instance!r} is text, not a number: YAML 1.1 reads an exponent number as a number "
                f"only with a dot and a signed exponent; write {fixed}")
    return f"{where}: {error.message}"


def _check_finite(value, where: str = "", seen: set | None = None) -> None:
    """Every number in the config finite (YAML's .nan and .inf, JSON's NaN and Infinity are refused);
    a mapping or list shared through a YAML alias is checked once."""
    seen = set() if seen is None else seen
    if isinstance(value, (dict, list)):
        if id(value) in seen:
            return
        seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}" if where else str(key), seen)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f"{where}[{i}]", seen)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number; give a finite value")


def _check_names(cfg: dict) -> None:
    """Study and regularizer names that make distinct, valid folders."""
    names = [(section, name) for section in ("studies", "regularizers") for name in cfg.get(section) or {}]
    for section, name in names:
        if not isinstance(name, str):
            continue                                        # the schema names a non-text key
        if len(name) > NAME_LENGTH:
            raise ConfigError(f"{section}: the name {name[:20]!r}… is {len(name)} characters; at most {NAME_LENGTH} "
                              "(it is a folder of every cell's path)")
        if any(not re.match(r"[a-z0-9_]", part) for part in name.split("+")):
            raise ConfigError(f"{section}: the name {name!r}: each part (joined by '+') starts with a letter, digit "
                              "or '_' (a name such as '..' or '.x' would be a parent or hidden folder in results/)")
    for name in cfg.get("studies") or {}:
        if name in RESERVED_STUDIES:
            raise ConfigError(f"studies.{name}: {name!r} is a results folder or target of the workflow itself; "
                              f"reserved: {list(RESERVED_STUDIES)}")


# Every setting's default, in one tree: each section's from the module that uses it (its functions
# fill the same dict when called directly), the workflow's own here. Validation fills a config from
# it; schema() shows it as the schema's `default:` keys, and config/README.md is generated from those.
DEFAULTS = {
    "device": "auto", "torch_threads": 1, "retries": 2, "partial": False, "headline": None, "replicate": {},
    "figures": {"svg": True}, "gpu_sharing": {"archs": []}, "cluster": cluster.CLUSTER_DEFAULTS,
    "data": {"root": "resources", "offline_dir": None, "clusters2d": clusters2d.CLUSTERS2D_DEFAULTS},
    "robustness": robustness.ROBUSTNESS_DEFAULTS, "explain": attribution.EXPLAIN_DEFAULTS,
    "actmax": actmax.ACTMAX_DEFAULTS, "roar": roar.ROAR_DEFAULTS, "road": roar.ROAD_DEFAULTS,
    "shortcut": shortcut.MEASURE_DEFAULTS,
    "dissect": {"enabled": True, **dissect.DISSECT_DEFAULTS, "broden": dissect.BRODEN_DEFAULTS},
    "net2vec": concepts.NET2VEC_DEFAULTS, "lesion": concepts.LESION_DEFAULTS,
    "meta_consistency": meta_consistency.META_CONSISTENCY_DEFAULTS, "embedding": embedding.EMBEDDING_DEFAULTS,
    "neurons": neurons.NEURONS_DEFAULTS,
}
STUDY_DEFAULTS = {"model": {}, "train": {}}  # a study's training settings: reglens.train.TRAIN_DEFAULTS, at use


def _check_headline(cfg: dict) -> None:
    """The declared headline names a study, one of its archs and a regularizer of it other than its
    baseline (the scorecard measure is checked where the scorecard is known: stages.report)."""
    head = cfg.get("headline")
    if not head:
        return
    study = cfg["studies"].get(head["study"])
    if study is None:
        raise ConfigError(f"headline.study: {head['study']!r} is not a study; valid: {sorted(cfg['studies'])}")
    for key, valid in (("arch", study["archs"]), ("reg", study["regularizers"])):
        if head[key] not in valid:
            raise ConfigError(f"headline.{key}: {head[key]!r} is not in studies.{head['study']}.{key}s; valid: {valid}")
    baseline = "none" if "none" in study["regularizers"] else study["regularizers"][0]
    if head["reg"] == baseline:
        raise ConfigError(f"headline.reg: {baseline!r} is the study's baseline; name a regularizer compared with it")


def _check_replicate(cfg: dict) -> None:
    """Each known result (reglens.replication.KNOWN) names a study that trains its regularizers, runs its
    analyses and lists its methods."""
    for name, sname in cfg["replicate"].items():
        where = f"replicate.{name}"
        if name not in replication.BY_NAME:
            raise ConfigError(f"{where}: {name!r} is not a known result; valid: {sorted(replication.BY_NAME)}")
        study = cfg["studies"].get(sname)
        if study is None:
            raise ConfigError(f"{where}: {sname!r} is not a study; valid: {sorted(cfg['studies'])}")
        need = replication.requirements(replication.BY_NAME[name])
        lacking = [r for r in need["regularizers"] if r not in study["regularizers"]]
        if lacking:
            raise ConfigError(f"{where}: studies.{sname}.regularizers lacks {lacking}, which the result compares")
        chosen = study.get("analyses")
        lacking = [a for a in need["analyses"] if chosen is not None and a not in chosen]
        if lacking:
            raise ConfigError(f"{where}: studies.{sname}.analyses lacks {lacking}, whose outputs the result reads")
        if need["methods_in"]:
            section, key = need["methods_in"].split(".")
            lacking = [m for m in need["methods"] if m not in cfg[section][key]]
            if lacking:
                raise ConfigError(f"{where}: {need['methods_in']} lacks {lacking}, which the result compares")


def _check_analyses(study: str, chosen: list | None) -> None:
    """A study's `analyses`: registered names, each with the analyses it reads."""
    if chosen is None:
        return
    known = layout.REGISTRY
    if not known:
        raise ConfigError(f"studies.{study}.analyses: no analysis is registered (import reglens.analyses first)")
    for j, name in enumerate(chosen):
        if name not in known:
            raise ConfigError(f"studies.{study}.analyses[{j}]: {name!r} is not an analysis; valid: {sorted(known)}")
        missing = [need for need in known[name].needs if need not in chosen]
        if missing:
            raise ConfigError(f"studies.{study}.analyses: {name!r} reads the outputs of {missing}; list them too")


def with_defaults(given: dict, defaults: dict) -> dict:
    """`given` with every key of `defaults` it lacks, mappings filled recursively (a copy)."""
    out = copy.deepcopy(given)
    for key, default in defaults.items():
        if key not in out:
            out[key] = copy.deepcopy(default)
        elif isinstance(default, dict) and isinstance(out[key], dict):
            out[key] = with_defaults(out[key], default)
    return out


def validate(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Validate a config dict and return a copy with defaults filled in. Raises ConfigError naming
    the offending key and the valid choices."""
    cfg = copy.deepcopy(config)
    _check_finite(cfg)
    _check_names(cfg)
    validator = jsonschema.Draft202012Validator(schema(schema_path))
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), _where(e)))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_message(e) for e in errors[:10]))
    cfg = with_defaults(cfg, DEFAULTS)
    for j, arch in enumerate(cfg["gpu_sharing"]["archs"]):
        if arch not in models.MODELS:
            raise ConfigError(f"gpu_sharing.archs[{j}]: unknown architecture {arch!r}; valid: {sorted(models.MODELS)}")
    _dissect_settings(cfg)
    for key in ("net2vec", "lesion"):
        cfg[key]["enabled"] = bool(cfg[key]["enabled"] and cfg["dissect"]["enabled"])  # on dissected cells only
    _check_headline(cfg)
    variants = cfg["regularizers"]
    for name in variants:
        _check_variant(name, variants, f"regularizers.{name}")
    for sname, study in cfg["studies"].items():
        cfg["studies"][sname] = study = with_defaults(study, STUDY_DEFAULTS)
        _check_analyses(sname, study.get("analyses"))
        ds = data.DATASETS[study["dataset"]]
        if "shortcut" in study:
            if ds.inputs != "images":
                raise ConfigError(f"studies.{sname}.shortcut: a mark is planted in images; {ds.name} holds {ds.inputs}")
            study["shortcut"] = shortcut.settings(study["shortcut"])
            try:
                shortcut.check(study["shortcut"], ds.channels, ds.size, ds.num_classes)
            except ValueError as exc:
                raise ConfigError(f"studies.{sname}.shortcut.{exc.args[0]}") from None
        for j, arch in enumerate(study["archs"]):
            if models.MODELS[arch].inputs != ds.inputs:
                fits = sorted(a for a, m in models.MODELS.items() if m.inputs == ds.inputs)
                raise ConfigError(f"studies.{sname}.archs[{j}]: {arch!r} takes {models.MODELS[arch].inputs}, but "
                                  f"{ds.name} holds {ds.inputs}; architectures for {ds.name}: {fits}")
        if "depth" in study["model"] and any(models.MODELS[a].square_dim is None for a in study["archs"]):
            raise ConfigError(f"studies.{sname}.model.depth: only the mlp architecture has a depth; "
                              f"this study's archs are {study['archs']}")
        for i, reg in enumerate(study["regularizers"]):
            where = f"studies.{sname}.regularizers[{i}]"
            _check_variant(reg, variants, where)
            if regularizers.build(reg, variants).needs_annotation and not study.get("shortcut"):
                raise ConfigError(f"{where}: {reg!r} penalizes gradients inside each image's planted mark, and "
                                  f"studies.{sname} plants none; give the study a `shortcut:` or drop {reg!r}")
            for arch in study["archs"]:
                try:
                    regularizers.build(reg, variants).check_task(ds.channels * ds.size ** 2, ds.num_classes,
                                                                 models.MODELS[arch].square_dim)
                except ValueError as exc:
                    raise ConfigError(f"{where} ({reg!r} on {ds.name}/{arch}): {exc.args[0]}") from None
    _check_roar(cfg)
    _check_replicate(cfg)
    _check_paths(cfg)
    _check_actmax_units(cfg)
    e = cfg["embedding"]
    if not (e["perplexity"] < e["images"] and 2 * e["neighbors"] < e["images"]):
        raise ConfigError(f"embedding: perplexity ({e['perplexity']}) must be below images ({e['images']}) and "
                          f"neighbors ({e['neighbors']}) below half of it")
    return cfg


def _check_actmax_units(cfg: dict) -> None:
    """`actmax.units` names layers some architecture that runs activation maximization has, and units
    each of them has (every model built on the meta device, with its study's model settings)."""
    units, seen = cfg["actmax"]["units"], {}
    for sname, study in cfg["studies"].items() if units else ():
        ds = data.DATASETS[study["dataset"]]
        if ds.inputs != "images" or (study.get("analyses") is not None and "actmax" not in study["analyses"]):
            continue
        for arch in study["archs"]:
            with torch.device("meta"):
                model = models.build(arch, ds.channels, ds.size, ds.num_classes, **study["model"])
            seen.update(channels := actmax.layer_channels(model))
            try:
                actmax.check_units(channels, units)
            except ValueError as exc:
                raise ConfigError(f"{exc.args[0]} in {arch} (studies.{sname})") from None
    unknown = sorted(set(units) - set(seen))
    if unknown:
        raise ConfigError(f"actmax.units: {unknown} is no named layer of an architecture that runs activation "
                          f"maximization; valid: {sorted(seen)}")



def _check_paths(cfg: dict) -> None:
    """No two cells share a folder (paths compared as the file system resolves them)."""
    seen = {}
    for cell in cells(cfg):
        folder = os.path.normcase(os.path.normpath(cell.path))
        if folder in seen:
            raise ConfigError(f"cells {seen[folder]!r} and {cell.path!r} would write to one folder; rename one")
        seen[folder] = cell.path


def used_regularizers(cfg: dict) -> list[str]:
    """Variant names some study or the ROAR learner uses, with the parts of the names joined by '+'."""
    names = {reg for study in cfg["studies"].values() for reg in study["regularizers"]}
    names.add(cfg["roar"]["learner"]["reg"])
    parts = {part for name in names if name not in cfg["regularizers"] for part in name.split("+")}
    return sorted(n for n in names | parts if n in cfg["regularizers"])


def used_config(cfg: dict) -> dict:
    """The config without the regularizer variants nothing uses: what the results depend on."""
    return {**cfg, "regularizers": {name: cfg["regularizers"][name] for name in used_regularizers(cfg)}}


def _dissect_settings(cfg: dict) -> None:
    broden = cfg["dissect"]["broden"]
    if broden["source"] == "folder" and not broden["folder"]:
        raise ConfigError("dissect.broden.folder: source 'folder' needs the path of an unpacked Broden "
                          "(the folder holding index.csv)")
    if broden["source"] == "download":
        try:
            broden_io.remote(broden["version"], broden["md5"])
        except broden_io.BrodenFormatError as exc:
            raise ConfigError(str(exc)) from None
    try:
        dissect.settings(cfg["dissect"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_roar(cfg: dict) -> None:
    r = cfg["roar"]
    if "random" not in r["methods"]:
        raise ConfigError(f"roar.methods: {r['methods']} lacks 'random', the baseline every score is measured against")
    r["cells"] = expand_roar_cells(cfg)
    if r["learner"]["arch"] is not None and r["learner"]["arch"] not in models.MODELS:
        raise ConfigError(f"roar.learner.arch: {r['learner']['arch']!r} is not valid; valid: {sorted(models.MODELS)}")
    _check_variant(r["learner"]["reg"], cfg["regularizers"], "roar.learner.reg")


def _check_variant(name: str, variants: dict, where: str) -> None:
    try:
        regularizers.build(name, variants)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc.args[0]}") from None


# options added after results could exist: left out of params while at these values, so that an
# upgrade reruns no finished job (a new option's default reproduces what was computed before it)
ADDED_OPTIONS = {"occlusion_fill": 0.0, "units": {}}


def canonical(value, defaults=None):
    """A params value in one form: mappings with sorted keys (recursively), and a whole number given
    where the default is a float (`lr: 1`) as that float, so that reordering a config or writing a
    number another way changes no job's params; an added option at its old behaviour is left out."""
    if isinstance(value, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        return {key: canonical(value[key], defaults.get(key)) for key in sorted(value)
                if not (key in ADDED_OPTIONS and value[key] == ADDED_OPTIONS[key])}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(defaults, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
