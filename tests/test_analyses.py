"""The registry of per-cell analyses (reglens.layout, reglens.analyses): a new analysis is one record,
one stage function and one rule, and the workflow, the tidy table, `reglens status` and `reglens plan`
all pick it up."""
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO, jobs_of
from reglens import analyses, config, grid, layout

RECORD = '''

def _toy_accuracy_cost(c):
    return c.fwd * c.ds.test_size


register(Analysis("toy_accuracy", {"table": "toy_accuracy/accuracy.json"}, "table",
                  lambda files: {"toy_test_acc": read_json(files["table"])["accuracy"]}, inputs="images",
                  cost=_toy_accuracy_cost))
'''
STAGE = '''"""Toy analysis: the cell's test accuracy, recomputed from its saved model."""
import torch

from reglens.data import to_float
from reglens.io import write_json
from reglens.stages.common import load_dataset, load_model


def run_toy_accuracy(model_path, dataset_path, out: dict) -> None:
    data, model = load_dataset(dataset_path), load_model(model_path)
    with torch.no_grad():
        pred = model(to_float(data.x_test)).argmax(1)
    write_json(out["table"], {"accuracy": (pred == data.y_test).float().mean().item()})
'''
RULE = '''
rule toy_accuracy:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("toy_accuracy"),
    log:
        analysis_log("toy_accuracy"),
    script:
        "../scripts/toy_accuracy.py"
'''
SCRIPT = '''from reglens.stages.common import job
from reglens.stages.toy_accuracy import run_toy_accuracy

with job(snakemake.log[0]):
    run_toy_accuracy(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()))
'''
SMALL = {
    "regularizers": {"none": [], "l2": [{"kind": "l2", "weight": 1e-3}]},
    "figures": {"svg": False},
    "robustness": {"n_images": 40, "fgsm_eps": [0.0, 0.1], "pgd_eps": [0.1], "pgd_steps": [2],
                   "worst_case": {"linf_eps": [0.0, 0.1], "l2_eps": [0.5], "apgd_steps": 5, "targets": 2, "square_queries": 20},
                   "iterations": {"steps": [1, 3], "restarts": [1, 2], "restart_steps": 2},
                   "boundary": {"images": 1, "resolution": 5}, "pca_images": 20},
    "explain": {"methods": ["saliency", "random"], "figure_images": 1, "metric_images": 4,
                "mprt_methods": ["saliency"], "mprt_images": 2},
    "actmax": {"steps": 2, "units_per_layer": 1},
    "embedding": {"images": 60, "perplexity": 10.0, "max_iter": 250},
    "neurons": {"images": 2, "ig_steps": 8},
    "dissect": {"enabled": False}, "road": {"enabled": False},
    "meta_consistency": {"methods": ["saliency", "random"], "images": 8, "perturbations": 1},
    "roar": {"cells": [], "methods": ["random", "saliency"]},
    "studies": {"small": {"dataset": "digits", "archs": ["simplecnn"], "regularizers": ["none", "l2"], "seeds": [0],
                          "model": {"width": 0.25}, "train": {"epochs": 1, "batch_size": 256}},
                "toy": {"dataset": "clusters2d", "archs": ["mlp"], "regularizers": ["none"], "seeds": [0],
                        "model": {"width": 0.25, "depth": 1}, "train": {"epochs": 1, "batch_size": 64}}},
    "data": {"clusters2d": {"train_per_class": 20, "test_per_class": 10}},
}


def test_every_analysis_writes_its_result_and_names_its_outputs_once():
    for analysis in layout.REGISTRY.values():
        assert analysis.result in analysis.outputs
        assert analysis.target({"study": "s", "arch": "a", "reg": "r", "seed": 3}) == \
            f"results/s/a/r/seed3/{analysis.outputs[analysis.result]}"
    files = [name for a in layout.REGISTRY.values() for name in [*a.outputs.values(), *a.point_outputs.values()]]
    assert len(files) == len(set(files))  # no two analyses write one file
    assert [m.name for m in analyses.scorecard()][:3] == ["test_acc", "gap", "train_seconds"]


def test_which_cells_an_analysis_runs_on():
    cfg = config.validate(SMALL)
    cells = {cell.path: cell for cell in grid.cells(cfg)}
    names = {path: [a.name for a in layout.analyses_of(cfg, cell)] for path, cell in cells.items()}
    assert names["toy/mlp/none/seed0"] == ["train", "attack", "diagnose"]  # 2-D points: no image analyses
    assert names["small/simplecnn/l2/seed0"] == ["train", "attack", "diagnose", "embedding", "explain", "actmax",
                                                 "neurons", "meta_consistency"]
    with_roar = config.validate({**SMALL, "roar": {**SMALL["roar"], "cells": ["small/simplecnn/none/seed0"]}})
    assert "roar" in [a.name for a in layout.analyses_of(with_roar, grid.cells(with_roar)[0])]
    assert layout.parse_cell_path("small/simplecnn/l2/seed0") == ("small", "simplecnn", "l2", 0)
    with pytest.raises(ValueError, match="not a cell path"):
        layout.parse_cell_path("small/simplecnn/l2")


@pytest.mark.slow
def test_a_new_analysis_is_one_record_one_stage_and_one_rule(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "workflow", copy / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "src" / "reglens" / "analyses.py", "a") as f:   # the record
        f.write(RECORD)
    (copy / "src" / "reglens" / "stages" / "toy_accuracy.py").write_text(STAGE)   # the stage function
    (copy / "workflow" / "rules" / "toy_accuracy.smk").write_text(RULE)          # the rule, and its script
    (copy / "workflow" / "scripts" / "toy_accuracy.py").write_text(SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    (work / "small.yaml").write_text(yaml.safe_dump(SMALL))
    env = {**os.environ, "PYTHONPATH": str(copy / "src")}

    def snakemake(*args):
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(copy / "workflow" / "Snakefile"),
                   "--directory", str(work), "--configfile", str(work / "small.yaml"), "--cores", "2", *args]
        run = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return run

    planned = [w for rule, w in jobs_of(snakemake("all", "-n")) if rule == "toy_accuracy"]
    assert sorted((w["study"], w["reg"]) for w in planned) == [("small", "l2"), ("small", "none")]  # images only
    snakemake("all")
    tidy = pd.read_csv(work / "results" / "tables" / "metrics.csv")
    toy = tidy[tidy.stage == "toy_accuracy"].set_index("reg").value
    train = tidy[tidy.metric == "test_acc"].set_index(["study", "reg"]).value
    assert len(toy) == 2 and all(toy[reg] == pytest.approx(train[("small", reg)], abs=1e-6) for reg in toy.index)

    def reglens(*args):
        return subprocess.run([sys.executable, "-m", "reglens", *args, "--configfile", str(work / "small.yaml")],
                              capture_output=True, text=True, env=env, cwd=work, timeout=300)

    shown = reglens("status", "--root", str(work))
    assert shown.returncode == 0 and "toy_accu" in shown.stdout.splitlines()[0], shown.stdout + shown.stderr
    (work / layout.REGISTRY["train"].target({"study": "small", "arch": "simplecnn", "reg": "l2", "seed": 0})
     ).parent.joinpath("toy_accuracy", "accuracy.json").unlink()
    assert "1 missing" in reglens("status", "--root", str(work)).stdout
    bill = reglens("plan").stdout
    row = next(line.split() for line in bill.splitlines() if line.split()[:1] == ["toy_accuracy"])
    assert int(row[1]) == 2, bill                                          # one job per image cell
    assert "toy_accuracy" not in layout.REGISTRY   # the new analysis lives in the copy only
