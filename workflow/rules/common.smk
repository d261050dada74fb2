# Config loading and validation, the grid of cells, target, input and param functions.
import time
from pathlib import Path

from reglens import analyses as reglens_analyses  # registers every per-cell analysis
from reglens import cluster as reglens_cluster
from reglens import config as reglens_config
from reglens import grid as reglens_grid
from reglens import data as reglens_data
from reglens import io as reglens_io
from reglens import layout as reglens_layout
from reglens import models as reglens_models
from reglens import regularizers as reglens_regularizers
from reglens import roar as reglens_roar
from reglens.plots import build as reglens_figures
from reglens.stages import report as reglens_report
from reglens.train import TRAIN_DEFAULTS, merged_train_config

REPO = Path(workflow.basedir).parent
# the float defaults a whole number given in their place is read as (`lr: 1` is `lr: 1.0`)
PARAM_DEFAULTS = {"train": TRAIN_DEFAULTS}
try:
    for configfile in workflow.configfiles:  # Snakemake's YAML reader keeps a duplicated key's last value
        reglens_config.load_yaml(configfile)
    if not config:
        config.update(reglens_config.load_yaml(REPO / "config" / "demo.yaml"))
    CFG = reglens_config.validate(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    reglens_report.check_headline(CFG)
except reglens_config.ConfigError as error:
    raise WorkflowError(str(error)) from None
config["device"] = CFG["device"]  # read by the scripts, not a param: moving to a GPU reruns nothing
config["torch_threads"] = CFG["torch_threads"]  # likewise; the same on SLURM and locally
# Only the checkpointed rules (train, roar_retrain) are retried (config `retries`), and only when the
# failure was not their own (workflow/rules/cluster.smk): a job SLURM ended resumes from its checkpoint.
# Only the main process retries: inside a SLURM job Snakemake reads this file again, and retrying
# there too would run a failing job retries x retries times.
RESUMABLE_RETRIES = CFG["retries"] if workflow.is_main_process else 0
# Cells of the config's gpu_sharing.archs train by rule train_shared, the others by train; on SLURM with
# cluster.shards, train_shared jobs ask for a GPU shard, so that several share one GPU concurrently.
SHARED_ARCHS = sorted(CFG["gpu_sharing"]["archs"])
OWN_GPU_ARCHS = sorted(set(reglens_models.MODELS) - set(SHARED_ARCHS))

CELLS = reglens_grid.cells(CFG)
IMAGE_CELLS = [cell for cell in CELLS if cell.inputs == "images"]
POINT_STUDIES = sorted({cell.study for cell in CELLS} - {cell.study for cell in IMAGE_CELLS})
IMAGE_STUDIES = sorted({cell.study for cell in IMAGE_CELLS})
SHORTCUT_CELLS = [cell for cell in CELLS if cell.shortcut]
SHORTCUT_STUDIES = sorted({cell.study for cell in SHORTCUT_CELLS})
DATA_ROOT = CFG["data"]["root"]
CELL_DIR = reglens_layout.CELL_DIR
ANALYSES = reglens_layout.REGISTRY
SHAPE = reglens_layout.shape(CFG)  # which analyses run on which cells
ROAR = CFG["roar"]
DISSECT = CFG["dissect"]


wildcard_constraints:
    study=r"[a-z0-9_]+",
    arch=r"[a-z0-9_]+",
    reg=r"[a-z0-9_][a-z0-9_.\-]*(\+[a-z0-9_][a-z0-9_.\-]*)*",
    seed=r"\d+",
    dataset=r"[a-z0-9_]+",


def cell_of(wildcards):
    try:
        return reglens_grid.find_cell(CFG, wildcards.study, wildcards.arch, wildcards.reg,
                                        int(wildcards.seed))
    except reglens_config.ConfigError as error:
        raise WorkflowError(str(error)) from None


def keep_finished_outputs(marker_folder=".snakemake/incomplete"):
    """Snakemake marks a job's outputs incomplete when the job starts and unmarks them when it sees the
    job end. A job whose Snakemake died (kill -9 of Snakemake alone) goes on and finishes, but its
    outputs stay marked, and the next run would delete them and run the job again. reglens writes
    every output atomically with an integrity record, so an output whose record matches it is
    finished: its mark is removed here, before the DAG is built. (Marks are Snakemake's files: one
    per output, named by the output path in URL-safe base64, split into '@'-prefixed folders.)"""
    import base64

    for marker in Path(marker_folder).rglob("*"):
        if not marker.is_file():
            continue
        parts = marker.relative_to(marker_folder).parts
        try:
            output = base64.urlsafe_b64decode("".join(part.removeprefix("@") for part in parts)).decode()
        except (ValueError, UnicodeDecodeError):
            continue                                        # not a mark of an output (Snakemake's own files)
        if reglens_io.finished(output):
            marker.unlink()


if workflow.is_main_process:
    keep_finished_outputs()


def checked(path):
    """`path`, after checking it against the integrity record written with it: a damaged file stops
    the run here, before any job starts, so nothing built from it is deleted."""
    try:
        reglens_io.check_intact(path)
    except reglens_io.DamagedFile as error:
        raise WorkflowError(str(error)) from None
    return path


def intact(pattern):
    """Input function: the file the pattern names for a job's wildcards, checked."""
    return lambda wildcards: checked(pattern.format(**dict(wildcards.items())))


def dataset_file(dataset):
    return f"{DATA_ROOT}/data/{dataset}.pt"


def study_data(study):
    """A study's dataset file: its dataset's, or the study's own when it plants a shortcut."""
    if "shortcut" in CFG["studies"][study]:
        return f"{DATA_ROOT}/data/shortcut/{study}.pt"
    return dataset_file(CFG["studies"][study]["dataset"])


def study_dataset_file(wildcards):
    """A cell's dataset file, checked, as ancient: it is a deterministic conversion of a checksummed
    release, so rebuilding it (same bytes) must not make every cell's results look outdated."""
    return ancient(checked(study_data(cell_of(wildcards).study)))


def existing_only(paths):
    """With `--config partial=True`, only the files that exist (report what is there, list the rest)."""
    return [p for p in paths if Path(p).exists()] if CFG["partial"] else paths


def one_of(names):
    """A wildcard regex matching exactly these names (none: matches nothing)."""
    return "|".join(names) if names else "(?!)"


def figure_inputs(wildcards):
    """What draw_figures reads besides the tables: each cell's saved maps and tables."""
    paths = [path for cell in CELLS for path in reglens_figures.cell_figure_sources(SHAPE, cell.record())]
    return [checked(path) for path in existing_only(paths)]


def targets(name):
    """An analysis's result file for every cell it runs on."""
    return [ANALYSES[name].target(cell.record()) for cell in CELLS if ANALYSES[name].applies(CFG, cell)]


def aggregate_inputs(wildcards):
    return [checked(path) for path in existing_only([path for name in ANALYSES for path in targets(name)])]


def train_targets():
    return targets("train")


def all_targets():
    return [path for name in ANALYSES for path in targets(name)] + ["results/report.html"]


def analysis_file(name, key):
    """One file of an analysis as a rule's wildcard pattern."""
    return ANALYSES[name].pattern(key)


def analysis_outputs(name):
    """An analysis's outputs as a rule's named outputs."""
    return ANALYSES[name].files()


def analysis_log(name):
    """A per-cell job's log."""
    return reglens_layout.cell_log(name)


RUN_STARTED = time.time()
SLURM_KEYS = ("cpus_per_task", "mem_mb", "runtime", "gpu", "gpu_model", "gres")


def on_slurm():
    return workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm"


def slurm_log_folder(rule, wildcards):
    """Where the SLURM plugin keeps a job's logs (profile slurm-logdir, one folder per rule and wildcards)."""
    logdir = getattr(workflow.executor_settings, "logdir", None) or "logs/slurm"
    return Path(logdir) / f"rule_{rule}" / "_".join(str(value) for value in wildcards).replace("/", "_")


def partition_limit():
    """The configured max_runtime, or on SLURM the MaxTime of the profile's partition (its default one)."""
    if CFG["cluster"]["max_runtime"] is not None or not on_slurm():
        return CFG["cluster"]["max_runtime"]
    defaults = workflow.resource_settings.default_resources
    named = dict(arg.split("=", 1) for arg in (defaults.args if defaults else []) if "=" in arg)
    partition = named.get("slurm_partition")
    return reglens_cluster.scontrol_limit(partition.strip("'\"") if partition else None)


def packed_steps(rule, cell):
    """How many steps of `cell` run in the one SLURM job that the profile's `groups` pack `rule` into
    (1 when it is not packed)."""
    groups = workflow.group_settings.overwrite_groups
    if rule not in groups:
        return 1
    return sum(groups.get(name) == groups[rule] and ANALYSES[name].applies(CFG, cell) for name in ANALYSES)


def slurm_resources(rule, packed=False):
    """A rule's SLURM requests (reglens.cluster.requests): one function per key (None: not asked);
    a packed rule also takes one `cell_steps`, which the profile limits to 1 per packed job."""

    def ask(key):
        def request(wildcards):
            cell = reglens_cluster.cell_of(CFG, dict(wildcards.items()))
            timeouts = reglens_cluster.timeouts(slurm_log_folder(rule, wildcards)) if on_slurm() else 0
            steps = packed_steps(rule, cell) if packed and cell is not None else 1
            return reglens_cluster.requests(CFG, rule, cell, timeouts, partition_limit(), steps).get(key)
        return request

    return {**{key: ask(key) for key in SLURM_KEYS}, **({"cell_steps": 1} if packed else {})}


# Helpers of the stage rules (rule files hold rules only).


def raw_flag(wildcards):
    if not reglens_data.remote_files(wildcards.dataset):
        return []  # bundled with a package (digits)
    return f"{DATA_ROOT}/downloads/{wildcards.dataset}.verified.json"


def train_params(wildcards):
    cell = cell_of(wildcards)
    study = CFG["studies"][cell.study]
    return canonical({
        "cell": cell.as_dict(),
        "regularizer": reglens_regularizers.resolve(cell.reg, CFG["regularizers"]),
        "train": merged_train_config(study["train"]),
        "model": study["model"],
    })


def canonical(value):
    """A rule's params in one form (keys sorted, defaults merged, numbers as their default's type), so that
    reordering the config or writing a default out reruns nothing."""
    return reglens_config.canonical(value, PARAM_DEFAULTS)


def roar_settings():
    """What every ROAR point depends on besides its learner (a param: a change reruns the retrains)."""
    return canonical({key: ROAR[key] for key in ("fractions", "modes", "retrain_seeds", "fill", "noise", "dither",
                                                 "fit_floor", "leakage", "detector", "batch_size", "options")})


def learner_of(cell):
    return reglens_roar.learner_of(CFG, cell.study, cell.arch)


ROAR_BASELINE = f"{reglens_layout.RESULTS}/{{study}}/_roar/{{learner}}/baseline.json"


def roar_baseline_file(cell):
    return ROAR_BASELINE.format(study=cell.study, learner=learner_of(cell)["arch"])


def roar_learner(wildcards):
    cell = cell_of(wildcards)
    return canonical({**learner_of(cell), "meta": {"cell": cell.as_dict(), "method": wildcards.method}})


def roar_baseline_learner(wildcards):
    """The learner of the study's base cells whose learner arch is `wildcards.learner`."""
    base = next(cell for cell in roar_cells() if cell.study == wildcards.study
                and learner_of(cell)["arch"] == wildcards.learner)
    return canonical(learner_of(base))


def roar_cells():
    return [reglens_grid.cell_at(CFG, path) for path in ROAR["cells"]]


def broden_root():
    source = DISSECT["broden"]
    if source["source"] == "folder":
        return source["folder"]
    name = source["version"] if source["source"] == "download" else "synthetic"
    return f"{DATA_ROOT}/broden/{name}"


def broden_sizes():
    """(input size, channels) pairs the dissected cells read Broden at."""
    channels = {reglens_data.DATASETS[cell.dataset].channels for cell in IMAGE_CELLS}
    return [[DISSECT["input_size"], c] for c in sorted(channels)]
