# Config loading and validation, the grid of cells, target functions.
from pathlib import Path

from reglens import aggregate as reglens_aggregate
from reglens import config as reglens_config
from reglens import data as reglens_data
from reglens import regularizers as reglens_regularizers

REPO = Path(workflow.basedir).parent
if not config:
    config.update(reglens_config.load_yaml(REPO / "config" / "demo.yaml"))
try:
    CFG = reglens_config.validate(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
except reglens_config.ConfigError as error:
    raise WorkflowError(str(error)) from None

CELLS = reglens_config.cells(CFG)
DATA_ROOT = CFG["data"]["root"]
CELL_DIR = "results/{study}/{arch}/{reg}/seed{seed}"
ROAR = CFG["roar"]
DISSECT = CFG["dissect"]


wildcard_constraints:
    study=r"[a-z0-9_]+",
    arch=r"[a-z0-9_]+",
    reg=r"[a-z0-9_.\-]+(\+[a-z0-9_.\-]+)*",
    seed=r"\d+",
    dataset=r"[a-z0-9_]+",


def cell_of(wildcards):
    try:
        return reglens_config.find_cell(CFG, wildcards.study, wildcards.arch, wildcards.reg,
                                        int(wildcards.seed))
    except reglens_config.ConfigError as error:
        raise WorkflowError(str(error)) from None


def dataset_file(dataset):
    return f"{DATA_ROOT}/data/{dataset}.pt"


def study_dataset_file(wildcards):
    return dataset_file(cell_of(wildcards).dataset)


def existing_only(paths):
    """With `--config partial=true`, only the files that exist (report what is there, list the rest)."""
    return [p for p in paths if Path(p).exists()] if CFG["partial"] else paths


def cell_paths(pattern):
    return [pattern.format(**cell.as_dict()) for cell in CELLS]


def train_targets():
    return cell_paths(f"{CELL_DIR}/metrics.json")


def robustness_targets():
    return cell_paths(f"{CELL_DIR}/robustness/attacks.csv") + cell_paths(f"{CELL_DIR}/robustness/calibration.json")


def explain_targets():
    return cell_paths(f"{CELL_DIR}/explain/metrics.csv") + cell_paths(f"{CELL_DIR}/explain/actmax.pt")


def roar_targets():
    return [f"results/{path}/roar/scores.csv" for path in CFG["roar"]["cells"]]


def all_targets():
    return (train_targets() + robustness_targets() + explain_targets() + roar_targets()
            + dissect_targets() + ["results/report.html"])


# Helpers of the stage rules (rule files hold rules only).


def raw_flag(wildcards):
    if not reglens_data.remote_files(wildcards.dataset):
        return []  # bundled with a package (digits)
    return f"{DATA_ROOT}/downloads/{wildcards.dataset}.verified.json"


def train_params(wildcards):
    cell = cell_of(wildcards)
    study = CFG["studies"][cell.study]
    return {
        "cell": cell.as_dict(),
        "regularizer": reglens_regularizers.resolve(cell.reg, CFG["regularizers"]),
        "train": study["train"],
        "model": study["model"],
        "device": CFG["device"],
    }


def roar_retrain_targets(cell_dir):
    return [f"{cell_dir}/roar/{method}/{mode}_{fraction:g}/retrain.json"
            for method in ROAR["methods"] for mode in ROAR["modes"] for fraction in ROAR["fractions"]]


def roar_learner(wildcards):
    cell = cell_of(wildcards)
    study = CFG["studies"][cell.study]
    return {
        "arch": ROAR["learner"]["arch"] or cell.arch,
        "reg": ROAR["learner"]["reg"],
        "regularizer": reglens_regularizers.resolve(ROAR["learner"]["reg"], CFG["regularizers"]),
        "train": {**study["train"], **ROAR["train"]},
        "model": study["model"],
        "seeds": ROAR["retrain_seeds"],
        "meta": {"cell": cell.as_dict(), "method": wildcards.method, "mode": wildcards.mode,
                 "fraction": float(wildcards.fraction)},
    }


def broden_root():
    source = DISSECT["broden"]
    if source["source"] == "folder":
        return source["folder"]
    name = source["version"] if source["source"] == "download" else "synthetic"
    return f"{DATA_ROOT}/broden/{name}"


def dissect_targets():
    if not DISSECT["enabled"]:
        return []
    return cell_paths(f"{CELL_DIR}/dissect/summary.json")
