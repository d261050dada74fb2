"""config/README.md, generated from the schema's descriptions and the defaults validation fills in."""
from __future__ import annotations

from pathlib import Path

import yaml

from reglens import regularizers
from reglens.config import SCHEMA_PATH, schema, validate
from reglens.train import TRAIN_DEFAULTS


MINIMAL = {"regularizers": {"none": []},
           "studies": {"s": {"dataset": "digits", "archs": ["simplecnn"], "regularizers": ["none"], "seeds": [0]}}}


def default_tree() -> dict:
    """Every setting's default, as validation fills it in (studies.<name> shows a study's)."""
    cfg = validate(MINIMAL)
    cfg["studies"] = {"<name>": {"model": {"width": 1.0}, "train": TRAIN_DEFAULTS}}
    cfg["regularizers"] = {}
    return cfg


def _allowed(node: dict) -> str:
    if node.get("enum"):
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kinds = node.get("type", "object" if "properties" in node else "")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    text = " or ".join(str(k) for k in kinds if k)
    bounds = [f"{sym} {node[key]}" for key, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"),
                                                    ("maximum", "≤"), ("exclusiveMaximum", "<")) if key in node]
    if node.get("type") == "array" and "items" in node:
        inner = _allowed(node["items"])
        text = f"list of {inner}" if inner else "list"
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _default(tree, path):
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return ""
        tree = tree[part]
    if isinstance(tree, dict):
        return ""
    return f"`{yaml.safe_dump(tree, default_flow_style=True).strip().removesuffix('...').strip()}`"


def schema_rows(node: dict, path: tuple = (), defaults: dict | None = None) -> list[tuple[str, str, str, str]]:
    """(key, allowed values, default, description) for every key of the schema, depth first."""
    defaults = default_tree() if defaults is None else defaults
    rows = []
    for key, child in node.get("properties", {}).items():
        here = path + (key,)
        text = " ".join(child.get("description", "").split()).replace("|", "\\|")
        rows.append((".".join(here), _allowed(child), _default(defaults, here), text))
        rows += schema_rows(child, here, defaults)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        rows += schema_rows(extra, path + ("<name>",), defaults)
    return rows


def config_doc(schema_path: str | Path = SCHEMA_PATH) -> str:
    """config/README.md: every config key, from the schema's descriptions and the defaults."""
    tree = schema(schema_path)
    lines = ["# Configuration", "",
             "Generated from `workflow/schemas/config.schema.yaml` by `python -m reglens config-doc`; do not edit.",
             "A config is validated before any job runs; a bad key fails naming its path and the valid choices.",
             "`config/demo.yaml` is the default (the demo study); `config/config.yaml` is the full study.", "",
             "| key | allowed | default | meaning |", "|---|---|---|---|"]
    for key, allowed, default, text in schema_rows(tree):
        lines.append(f"| `{key}` | {allowed} | {default} | {text} |".replace("\n", " "))
    lines += ["", "## Regularizer kinds", "",
              "A variant under `regularizers` is a list of `{kind: <kind>, <key>: <value>}`; a key left out takes its default.",
              "", "| kind | keys (defaults) | what it does |", "|---|---|---|"]
    for kind, cls in sorted(regularizers.KINDS.items()):
        keys = ", ".join(f"`{k}` ({v})" for k, v in cls.params.items()) or "—"
        lines.append(f"| `{kind}` | {keys} | {cls.summary.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"
