"""The Snakemake workflow end to end on a tiny config in a temporary directory."""
import html
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO
from reglens import dissect, measures, robustness
from reglens.stages.common import load_dataset, load_model

TINY = {
    "regularizers": {"none": [], "l2": [{"kind": "l2", "weight": 1e-3}]},
    "figures": {"svg": False},
    "robustness": {"n_images": 360, "fgsm_eps": [0.0, 0.1], "pgd_eps": [0.0, 0.1], "pgd_steps": [3],
                   "worst_case": {"linf_eps": [0.0, 0.1], "l2_eps": [0.5], "apgd_steps": 5, "targets": 2, "square_queries": 20},
                   "iterations": {"steps": [1, 3], "restarts": [1, 2], "restart_steps": 2},
                   "boundary": {"images": 1, "resolution": 9, "span": 2.0}, "pca_images": 50},
    "explain": {"methods": ["saliency", "gradcam", "random"], "figure_images": 2, "metric_images": 20,
                "mprt_methods": ["saliency"], "mprt_images": 8},
    "actmax": {"steps": 10, "units_per_layer": 1},
    "embedding": {"images": 60, "perplexity": 10.0, "max_iter": 250},
    "neurons": {"images": 2, "ig_steps": 8},
    "dissect": {"broden": {"source": "synthetic", "synthetic": {"images": 40, "seg_size": 16, "scale": 2}},
                "input_size": 16, "workers": 0, "top_units": 2, "top_images": 2},
    "roar": {"cells": [{"archs": ["simplecnn"], "regularizers": ["none"], "seeds": [0]}],
             "methods": ["random", "saliency"], "fractions": [0.5], "modes": ["roar", "kar"], "retrain_seeds": [0, 1],
             "fit_floor": 0.3, "train": {"optimizer": "adam", "lr": 0.01, "epochs": 8}},
    "road": {"methods": ["random", "saliency"], "fractions": [0.25, 0.5], "images": 60},
    "meta_consistency": {"methods": ["saliency", "random"], "images": 12, "perturbations": 1},
    "shortcut": {"methods": ["saliency", "random"], "images": 20},
    "net2vec": {"images": 40, "min_pixels": 20, "max_concepts": 5, "epochs": 5},
    "lesion": {"ks": [1, 2], "draws": 2, "train_images": 200},
    "studies": {"tiny": {"dataset": "digits", "archs": ["simplecnn", "lenet"], "regularizers": ["none", "l2"],
                         "seeds": [0], "model": {"width": 0.25}, "shortcut": {"size": 2, "rate": 0.9},
                         "train": {"epochs": 3, "lr": 0.05, "batch_size": 64}},
                "toy": {"dataset": "clusters2d", "archs": ["mlp"], "regularizers": ["none"], "seeds": [0],
                        "model": {"width": 0.25, "depth": 1},
                        "train": {"epochs": 3, "optimizer": "adam", "lr": 0.01, "batch_size": 64}}},
    "data": {"clusters2d": {"train_per_class": 50, "test_per_class": 20}},
}


def snakemake(workdir, *args, env=None):
    run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                          "--directory", str(workdir), "--configfile", str(workdir / "tiny.yaml"),
                          "--cores", "2", *args], capture_output=True, text=True, timeout=900,
                         env={**os.environ, **(env or {})})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def job_counts(output):
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", output, re.M) if k != "total"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("study")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    snakemake(tmp_path, "all")
    return tmp_path


@pytest.mark.slow
def test_tiny_study_end_to_end(study):
    tmp_path = study
    digits = load_dataset(tmp_path / "resources" / "data" / "digits.pt")
    planted = torch.load(tmp_path / "resources" / "data" / "shortcut" / "tiny.pt", weights_only=True)
    assert torch.equal(planted["x_test"], digits.x_test.cpu())  # the tiny study trains on marked digits
    table = pd.read_csv(tmp_path / "results" / "tables" / "metrics.csv")
    # explain: gini and entropy per method, 6 randomization-check measures per checked method, the
    # agreement mean and its undefined count; diagnose: calibration 3, boundary 6 per plane kind,
    # weights 5; actmax: 5; embedding: 4; neurons: 3; dissect: 4 counts, 4 per layer, 5 categories and the
    # interpretability score; attack: FGSM and PGD accuracy and loss per eps (8), per eps of both norms
    # three attacks and their worst case (12), PGD at 2 step and 2 restart counts, the masking flag and
    # its 4 checks
    # shortcut: 6 cell-level measures, and mass, pointing and undefined count per method; lesion: top,
    # random and their difference per k; net2vec: 8 over layers and 6 per layer (checked below)
    # meta_consistency: MC, its four criteria and the two kept shares per measure and perturbation type
    per_cell = {"train": 8, "attack": 8 + 4 * 3 + 4 + 5, "diagnose": 3 + 2 * 6 + 5,
                "explain": 3 * 2 + 6 + 2, "actmax": 5, "embedding": 4, "neurons": 3, "dissect": 4 + 4 * 2 + 5 + 1, "road": 3 * 2, "shortcut": 6 + 2 * 3,
                "meta_consistency": 2 * 2 * 7,
                "lesion": 3 * 2, "net2vec": 8 + 6 * 2}
    # roar: score and accuracy at the largest fraction per mode and method, runs, unfitted, leakage per method,
    # the detector's accuracy, its majority rate and the recovered masks' leakage per mode and method, and
    # the count of detector controls that did not fit;
    # the toy study's one cell (2-D points) has every stage but those that need images, and no Square L2
    points = {"train": 0, "attack": -1, "diagnose": 0}
    expected = {k: 4 * v + (v + points[k] if k in points else 0) for k, v in per_cell.items()} | {"roar": 2 * 2 * 2 + 2 + 2 + 2 * 2 * 3 + 1}
    assert table.groupby("stage").size().to_dict() == expected
    assert pd.read_csv(tmp_path / "results" / "tables" / "missing.csv").empty
    for arch in ("simplecnn", "lenet"):
        for reg in ("none", "l2"):
            cell = tmp_path / "results" / "tiny" / arch / reg / "seed0"
            metrics = json.loads((cell / "metrics.json").read_text())
            model = load_model(cell / "model.pt")
            with torch.no_grad():
                logits = model(digits.x_test.float() / 255)
            acc = (logits.argmax(1) == digits.y_test).sum().item() / len(digits.y_test)
            assert metrics["test_acc"] == pytest.approx(acc, abs=1e-12)
            assert metrics["test_loss"] == pytest.approx(
                torch.nn.functional.cross_entropy(logits, digits.y_test).item(), rel=1e-5)
            row = table[(table.arch == arch) & (table.reg == reg) & (table.metric == "test_acc")]
            assert row.value.item() == pytest.approx(acc)
            # the attack stage saw the whole test set: eps = 0 is the clean accuracy
            for attack in ("fgsm", "pgd3"):
                clean = table[(table.arch == arch) & (table.reg == reg) & (table.metric == f"{attack}_linf_acc@0")]
                assert clean.value.item() == pytest.approx(acc)
            ece = json.loads((cell / "robustness" / "calibration.json").read_text())
            assert ece["accuracy"] == pytest.approx(acc) and 0 <= ece["ece"] <= 1
            history = pd.read_csv(cell / "history.csv")
            assert list(history.epoch) == [1, 2, 3]
            assert ("penalty_l2" in history) == (reg == "l2")
            assert metrics["regularizer"] == TINY["regularizers"][reg]
            # dissection: the aggregated counts are the cell's own, recomputed from its units table
            units = pd.read_csv(cell / "dissect" / "units.csv")
            summary = json.loads((cell / "dissect" / "summary.json").read_text())
            feats = dissect.layer_features(model, torch.zeros(1, 1, 16, 16), list(model.layer_names))
            assert units.groupby("layer").size().to_dict() == {k: f.shape[1] for k, f in feats.items()}
            assert len(units) == summary["total"]["units"]
            row = table[(table.arch == arch) & (table.reg == reg) & (table.metric == "dissect_detectors")]
            assert row.value.item() == units.detector.sum() == summary["total"]["detectors"]
            assert (tmp_path / "results" / "figures" / "cells" / "tiny" / arch / reg / "seed0" / "dissection.png").exists()
            # shortcut: the reliance is the model's own clean minus flipped accuracy
            with torch.no_grad():
                flipped = (model(planted["x_test_flipped"].float() / 255).argmax(1) == digits.y_test).double().mean()
            metric = lambda name: table[(table.arch == arch) & (table.reg == reg) & (table.metric == name)].value.item()  # noqa: E731
            assert metric("shortcut_acc_flipped") == pytest.approx(float(flipped))
            assert metric("shortcut_reliance") == pytest.approx(acc - float(flipped))
            assert metric("shortcut_area") == pytest.approx(4 / 64)

    # ROAR: every retrain recorded with its fit status; the clean point starts every curve; scores
    # recomputed here from the runs that fitted; random scores 0
    roar_dir = tmp_path / "results" / "tiny" / "simplecnn" / "none" / "seed0" / "roar"
    curves = pd.read_csv(roar_dir / "curves.csv")
    assert sorted(set(zip(curves["mode"], curves.method, curves.fraction))) == [
        (mode, method, f) for mode in ("kar", "roar") for method in ("random", "saliency") for f in (0.0, 0.5)]
    assert curves.groupby(["mode", "method", "fraction"]).size().eq(2).all()  # two retrain seeds each
    assert curves.test_acc.between(0, 1).all() and curves.clean_test_acc.between(0, 1).all()
    expected_fit = (curves.train_acc >= 0.3) | (curves.status == "no_content")
    assert (curves.fitted == expected_fit).all() and set(curves.status) <= {"fitted", "underfit", "no_content"}
    scores = pd.read_csv(roar_dir / "scores.csv").set_index(["mode", "method"])
    fitted = curves[curves.fitted]
    for mode in ("roar", "kar"):
        means = fitted[fitted["mode"] == mode].groupby(["method", "fraction"]).test_acc.mean()
        if all((m, f) in means for m in ("random", "saliency") for f in (0.0, 0.5)):
            diff = means["random"] - means["saliency"] if mode == "roar" else means["saliency"] - means["random"]
            assert scores.loc[(mode, "saliency"), "score"] == pytest.approx(np.trapezoid(diff.values, [0.0, 0.5]))
            assert scores.loc[(mode, "random"), "score"] == 0
        else:
            assert np.isnan(scores.loc[(mode, "saliency"), "score"])
        assert scores.loc[(mode, "saliency"), "unfitted"] == (~curves[(curves["mode"] == mode) & (curves.method == "saliency")
                                                                        & (curves.fraction > 0)].fitted).sum()
    leakage = pd.read_csv(roar_dir / "leakage.csv")
    assert sorted(zip(leakage.method, leakage.fraction)) == [("random", 0.5), ("saliency", 0.5)]
    detector = pd.read_csv(roar_dir / "detector.csv")
    assert sorted(zip(detector["mode"], detector.method)) == [("kar", "random"), ("kar", "saliency"),
                                                              ("roar", "random"), ("roar", "saliency")]
    assert np.allclose(detector.detector_base, 0.5, atol=0.02)      # fraction 0.5: half removed either way
    assert (detector.detector_acc >= detector.detector_base - 0.02).all()   # a detector does no worse than a guess
    tidy_detector = table[(table.reg == "none") & (table.arch == "simplecnn") & table.metric.str.contains("_detector@")]
    named = detector.assign(metric=detector["mode"] + "_detector@0.5_" + detector.method).set_index("metric")
    assert len(tidy_detector) == 4
    assert tidy_detector.value.tolist() == pytest.approx(named.detector_acc[tidy_detector.metric].tolist())
    baseline = json.loads((tmp_path / "results" / "tiny" / "_roar" / "simplecnn" / "baseline.json").read_text())
    assert [r["test_acc"] for r in baseline["clean"]] == curves[(curves.fraction == 0) & (curves.method == "random")
                                                                & (curves["mode"] == "roar")].test_acc.tolist()
    shared = curves[(curves.method == "random") & (curves.fraction > 0)]
    assert shared.test_acc.tolist() == [r["test_acc"] for r in sorted(baseline["random"]["runs"], key=lambda r: (
        r["mode"], r["fraction"], r["retrain_seed"]))]
    pooled = pd.read_csv(tmp_path / "results" / "tables" / "roar_curves.csv")
    assert len(pooled) == len(curves) and set(pooled.arch) == {"simplecnn"}
    # ROAD on every cell: the score is the LeRF - MoRF area of its own curves
    for arch in ("simplecnn", "lenet"):
        road = tmp_path / "results" / "tiny" / arch / "none" / "seed0" / "road"
        rc, rs = pd.read_csv(road / "curves.csv"), pd.read_csv(road / "scores.csv").set_index("method")
        for method, g in rc.groupby("method"):
            t = g.pivot_table(index="fraction", columns="order", values="accuracy").sort_index()
            assert list(t.index) == [0.0, 0.25, 0.5] and t.loc[0.0, "morf"] == t.loc[0.0, "lerf"]
            assert rs.loc[method, "score"] == pytest.approx(np.trapezoid((t.lerf - t.morf).values, t.index.values))
    # the toy study ran through the same rules, minus those that need images; its last saved decision
    # regions are the saved model's, and its figures were drawn from the saved grids
    toy = tmp_path / "results" / "toy" / "mlp" / "none" / "seed0"
    assert not (toy / "explain").exists() and (toy / "robustness" / "attacks.csv").exists()
    blob = torch.load(toy / "regions.pt", weights_only=True)
    assert blob["grids"].shape[0] == 3 and blob["epochs"] == [1, 2, 3]
    assert torch.equal(blob["grids"][-1], robustness.decision_grid(load_model(toy / "model.pt"), blob["grids"].shape[-1]))
    drawn = tmp_path / "results" / "figures"
    assert {"regions.png", "regions.gif", "learning_curves.png"} <= {p.name for p in (drawn / "cells" / "toy" / "mlp" / "none" / "seed0").iterdir()}
    assert (drawn / "regions_toy_mlp.png").exists() and (drawn / "learning_curves.png").exists()


def jobs_of_dry_run(output):
    return set(job_counts(output)) - {"all"}


CHECKS = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const out = document.createElement("pre");
  out.id = "checks";
  out.textContent = JSON.stringify({
    overflow: document.documentElement.scrollWidth - window.innerWidth, images: images.length,
    undecoded: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    sections: [...document.querySelectorAll("h2")].map(h => h.id)});
  document.body.appendChild(out);
});</script>"""


def render_in_chromium(report, tmp_path, width=1400):
    """What a reader's browser makes of the report: the page's horizontal overflow at `width` px, the
    images and whether each decoded, and the section order."""
    page = tmp_path / "rendered.html"
    page.write_text(report.read_text().replace("</body>", CHECKS + "</body>"))
    run = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},1000",
                          "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=300)
    found = re.search(r'<pre id="checks">(.*?)</pre>', run.stdout, re.S)
    assert found, run.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.slow
def test_figures_regenerate_from_cached_results_and_the_report_renders_in_chromium(study, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "reglens", src / "reglens")
    env = {"PYTHONPATH": str(src)}
    allowed = {"aggregate", "draw_figures", "report", "figures"}
    ran = jobs_of_dry_run(snakemake(study, "figures", "-n", env=env))
    assert ran <= allowed, ran  # a moved code input reruns only the drawing side
    snakemake(study, "figures", env=env)
    assert jobs_of_dry_run(snakemake(study, "all", "-n", env=env)) == set()
    # deleted figures and report come back from the tables alone
    shutil.rmtree(study / "results" / "figures")
    (study / "results" / "report.html").unlink()
    assert jobs_of_dry_run(snakemake(study, "figures", "-n", env=env)) == {"draw_figures", "report", "figures"}
    plots = src / "reglens" / "plots" / "cell.py"
    plots.write_text(plots.read_text().replace('fig, ax = plt.subplots(figsize=(5, 3.5))',
                                               'fig, ax = plt.subplots(figsize=(6, 4))', 1))
    ran = jobs_of_dry_run(snakemake(study, "all", "-n", env=env))
    assert {"draw_figures", "report"} <= ran <= allowed, ran
    snakemake(study, "figures", env=env)
    report = study / "results" / "report.html"
    html = report.read_text()
    assert html.count('src="data:image/png;base64,') >= 5 and 'src="http' not in html
    assert "<table" in html and "(empty)" not in html
    # as a reader's browser shows it
    summary = pd.read_csv(study / "results" / "tables" / "summary.csv")
    for row in summary.dropna(subset=["ci_low"]).itertuples():
        lo, hi = measures.bounds(row.metric)
        assert lo <= row.ci_low <= row.ci_high <= hi, row
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): the report was not rendered")
    checks = render_in_chromium(report, tmp_path)
    assert checks["overflow"] <= 0, checks  # no horizontal scrolling of the page at 1400 px
    assert checks["images"] >= 10 and checks["undecoded"] == [], checks
    assert checks["sections"][0] == "scorecard", checks


@pytest.mark.slow
def test_partial_report_lists_what_is_missing(study):
    gone = study / "results" / "tiny" / "lenet" / "none" / "seed0" / "robustness" / "masking.csv"  # the result
    gone.unlink()
    snakemake(study, "figures", "--config", "partial=True")
    missing = pd.read_csv(study / "results" / "tables" / "missing.csv")
    assert missing[["arch", "reg", "stage"]].values.tolist() == [["lenet", "none", "attack"]]
    assert "lenet" in (study / "results" / "report.html").read_text().split("Missing outputs")[1]


@pytest.mark.slow
def test_rebuild_one_cell_by_its_path(study):
    """Rebuild one deleted cell by its path; nothing else reruns, and it comes back identical."""
    tmp_path = study
    target = tmp_path / "results" / "tiny" / "lenet" / "l2" / "seed0"
    before = json.loads((target / "metrics.json").read_text())
    other = tmp_path / "results" / "tiny" / "simplecnn" / "none" / "seed0" / "model.pt"
    other_mtime = other.stat().st_mtime_ns
    shutil.rmtree(target)
    rel = "results/tiny/lenet/l2/seed0/metrics.json"
    assert job_counts(snakemake(tmp_path, "-n", rel)) == {"train": 1}
    snakemake(tmp_path, rel)
    after = json.loads((target / "metrics.json").read_text())
    assert after["test_loss"] == before["test_loss"] and after["train_loss"] == before["train_loss"]
    assert other.stat().st_mtime_ns == other_mtime


@pytest.mark.slow
def test_reordered_config_explicit_defaults_and_a_touched_script_retrain_nothing(study, tmp_path):
    """The tiny study's config with every mapping's keys in reverse order (as a formatter may write
    it) and defaults written out: no training job; and none either from a copy of the workflow whose
    training script was touched (a checkout does that)."""
    def reverse(value):
        return {key: reverse(value[key]) for key in reversed(list(value))} if isinstance(value, dict) else value

    cfg = reverse(TINY)
    cfg["studies"]["tiny"]["train"].update({"momentum": 0.9, "nesterov": False, "warmup_epochs": 0})
    (tmp_path / "reordered.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    copy = tmp_path / "copy" / "workflow"
    shutil.copytree(REPO / "workflow", copy)
    (copy / "scripts" / "train.py").touch()
    for snakefile in (REPO / "workflow" / "Snakefile", copy / "Snakefile"):
        run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory",
                              str(study), "--configfile", str(tmp_path / "reordered.yaml"), "--cores", "1", "-n",
                              "train_all"], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert not {"train", "train_shared"} & set(job_counts(run.stdout + run.stderr)), run.stdout[-3000:]
