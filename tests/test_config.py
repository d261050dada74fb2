"""Config validation: bad input names the key and the valid choices; the shipped configs are valid."""
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from reglens import analyses, config, configdoc, grid, layout

BASE = {"regularizers": {"none": [], "l2": [{"kind": "l2", "weight": 1e-4}]},
        "studies": {"s": {"dataset": "digits", "archs": ["lenet"], "regularizers": ["none"], "seeds": [0]}}}


def _with(**study):
    cfg = yaml.safe_load(yaml.safe_dump(BASE))
    cfg["studies"]["s"].update(study)
    return cfg


@pytest.mark.parametrize("change,expected", [
    (dict(archs=["resnet19"]), r"studies\.s\.archs\[0\]: 'resnet19' is not valid; valid: \['alexnet', 'alexnet_b', 'ddnet', 'lenet'"),
    (dict(dataset="imagenet"), r"studies\.s\.dataset: 'imagenet' is not valid; valid: \['cifar10', 'cifar100', 'clusters2d', 'digits', 'mnist'\]"),
    (dict(regularizers=["l3"]), r"studies\.s\.regularizers\[0\]: unknown regularizer 'l3'; defined variants: \['l2', 'none'\]"),
    (dict(epochs=3), r"studies\.s: unknown key\(s\) \['epochs'\]; valid: \['analyses', 'archs', 'dataset', 'model', 'regularizers', 'seeds', 'shortcut', 'train'\]"),
    (dict(train={"optimiser": "sgd"}), r"studies\.s\.train: unknown key\(s\) \['optimiser'\]"),
    (dict(train={"schedule": "linear"}), r"studies\.s\.train\.schedule: 'linear' is not valid; valid: \['cosine', 'step', 'constant'\]"),
    (dict(seeds=[-1]), r"studies\.s\.seeds\[0\]"),
    (dict(shortcut={"size": 1}), r"studies\.s\.shortcut\.size: a 1x1 mark on 1 channel\(s\) has 0 distinct"),
    (dict(shortcut={"placement": "corner"}), r"studies\.s\.shortcut\.placement: 'corner' is not valid; valid: \['class', 'fixed', 'random'\]"),
    (dict(shortcut={"rate": 1.5}), r"studies\.s\.shortcut\.rate: 1\.5 is greater than the maximum of 1"),
    (dict(analyses=["attack", "dissekt"]), r"studies\.s\.analyses\[1\]: 'dissekt' is not an analysis; valid: \['actmax', 'attack'"),
    (dict(analyses=["net2vec"]), r"studies\.s\.analyses: 'net2vec' reads the outputs of \['dissect'\]; list them too"),
    (dict(dataset="clusters2d", archs=["mlp"], shortcut={}), r"studies\.s\.shortcut: a mark is planted in images; clusters2d holds points"),
])
def test_bad_study_is_named(change, expected):
    with pytest.raises(config.ConfigError, match=expected):
        config.validate(_with(**change))


def test_a_studys_analyses_choose_what_its_cells_run():
    cfg = config.validate(_with(analyses=["attack", "dissect", "net2vec"], seeds=[0, 1]))
    shape = layout.shape(cfg)
    cell = grid.cells(cfg)[0].record()
    assert [a.name for a in layout.analyses_of(shape, cell)] == ["train", "attack", "dissect", "net2vec"]
    shape["dissect"]["enabled"] = False  # what net2vec reads is gone: it does not run either
    assert [a.name for a in layout.analyses_of(shape, cell)] == ["train", "attack"]
    every = config.validate(_with())
    assert len(layout.analyses_of(layout.shape(every), grid.cells(every)[0].record())) > 6
    assert analyses.scorecard()  # the registry is filled


def test_bad_regularizer_kind_and_params_are_named():
    cfg = _with()
    cfg["regularizers"]["x"] = [{"kind": "l7"}]
    with pytest.raises(config.ConfigError, match=r"regularizers\.x\[0\]\.kind: 'l7' is not valid; valid: \[.*'l2'"):
        config.validate(cfg)
    cfg["regularizers"]["x"] = [{"kind": "l2", "strength": 1}]
    with pytest.raises(config.ConfigError, match=r"regularizers\.x: regularizer 'l2': unknown key\(s\) \['strength'\]"):
        config.validate(cfg)


def test_shipped_configs_are_valid_and_grids_as_documented():
    full = config.validate(config.load_yaml(REPO / "config" / "config.yaml"))
    cells = grid.cells(full)
    by_study = {s: sum(c.study == s for c in cells) for s in full["studies"]}
    regs = len(full["studies"]["cifar10"]["regularizers"])
    toy = len(full["studies"]["clusters"]["regularizers"])
    marked = len(full["studies"]["cifar10_shortcut"]["regularizers"])
    assert by_study == {"cifar10": 5 * regs * 5, "mnist": 2 * regs * 5, "cifar100": 1 * regs * 5, "clusters": toy * 5,
                        "cifar10_shortcut": 2 * marked * 5, "mnist_shortcut": 2 * marked * 5, "tukl": 2 * 3 * 5}
    assert {c.groups for c in cells if c.study == "tukl"} == {5} and {c.groups for c in cells if c.study == "mnist"} == {5}
    assert {c.arch for c in cells if c.study == "cifar10"} == {"simplecnn", "ddnet", "resnet18", "resnet50", "vgg19"}
    demo = config.validate(config.load_yaml(REPO / "config" / "demo.yaml"))
    assert {c.dataset for c in grid.cells(demo)} == {"digits", "clusters2d"}
    assert {c.study for c in grid.cells(demo) if c.shortcut} == {"digits_shortcut"}


def _snakemake(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_dry_run_of_full_config_lists_every_training_job_offline():
    full = config.validate(config.load_yaml(REPO / "config" / "config.yaml"))
    run = _snakemake("all", "-n", "--configfile", "config/config.yaml")
    assert run.returncode == 0, run.stderr[-2000:]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", run.stdout, re.M)}
    images = [c for c in grid.cells(full) if c.dataset != "clusters2d"]
    shared = [c for c in images if c.arch in full["gpu_sharing"]["archs"]]
    assert counts["train_shared"] == len(shared) > 0 and counts["train"] == len(images) - len(shared)
    assert counts["train_toy"] == len(grid.cells(full)) - len(images)
    assert counts["plant_shortcut"] == 2 and counts["shortcut"] == sum(c.shortcut for c in images) == 180
    absent = {c.dataset for c in grid.cells(full)} - {p.stem for p in (REPO / "resources" / "data").glob("*.pt")}
    assert counts["download"] == 3 and counts["prepare_data"] == len(absent)  # the toy dataset is generated
    # ROAR and KAR: every regularizer of one architecture per dataset, 3 base seeds; ROAD on every cell
    base = len(full["roar"]["cells"])
    regs = len(full["studies"]["cifar10"]["regularizers"])
    assert base == 3 * regs * 3 and len(full["roar"]["methods"]) == 4
    assert counts["roar_retrain"] == counts["roar_rank"] == base * 3  # random is the shared baseline
    assert counts["roar_baseline"] == 3 and counts["roar_score"] == base
    assert counts["road"] == counts["explain"] == len(images)  # none for the 2-D toy study


def test_invalid_config_fails_before_any_job(tmp_path):
    bad = _with(archs=["resnet19"])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    run = _snakemake("all", "-n", "--configfile", str(path))
    assert run.returncode != 0
    assert "resnet19" in run.stderr + run.stdout and "valid:" in run.stderr + run.stdout


def test_config_readme_is_generated_from_the_schema_and_every_key_is_described():
    rows = configdoc.schema_rows(config.schema())
    undescribed = [key for key, _, _, text in rows if not text]
    assert not undescribed, undescribed
    assert (REPO / "config" / "README.md").read_text() == configdoc.config_doc(), \
        "config/README.md is stale: python -m reglens config-doc > config/README.md"
    keys = {key for key, *_ in rows}
    assert {"explain.options.ig_steps", "studies.<name>.train.epochs", "dissect.broden.synthetic.seed"} <= keys
    defaults = {key: default for key, _, default, _ in rows}
    assert defaults["studies.<name>.train.epochs"] == "`10`" and defaults["device"] == "`auto`"


def test_gpu_sharing_trains_the_named_archs_by_train_shared(tmp_path):
    cfg = _with(archs=["lenet", "simplecnn"], regularizers=["none", "l2"], seeds=[0, 1])
    cfg["gpu_sharing"] = {"archs": ["lenet"]}
    (tmp_path / "shared.yaml").write_text(yaml.safe_dump(cfg))
    run = _snakemake("train_all", "-n", "--configfile", str(tmp_path / "shared.yaml"), "--directory", str(tmp_path))
    assert run.returncode == 0, run.stderr[-2000:]
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", run.stdout, re.M)}
    assert counts["train_shared"] == 4 and counts["train"] == 4
    shared_jobs = re.findall(r"rule train_shared:\n(?:    .*\n)*?    output: results/s/(\w+)/", run.stdout)
    assert set(shared_jobs) == {"lenet"}
    cfg["gpu_sharing"] = {"archs": ["lenet5"]}
    with pytest.raises(config.ConfigError, match=r"gpu_sharing\.archs\[0\]: unknown architecture 'lenet5'; valid: \["):
        config.validate(cfg)


def test_defaults_live_in_one_tree_that_the_schema_shows():
    tree = config.schema()

    def leaves(node, defaults, path=()):
        for key, default in defaults.items():
            child = node["properties"][key]          # every default names a key of the schema
            assert child["default"] == default, path + (key,)
            if isinstance(default, dict) and "properties" in child:
                leaves(child, default, path + (key,))

    leaves(tree, config.DEFAULTS)
    text = (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()
    assert not re.search(r"(^\s*|[{,]\s*)default:", text, re.M)       # the YAML file holds none
    given = {"roar": {"learner": {"reg": "l2"}, "fractions": [0.5]}, "extra": 1}
    filled = config.with_defaults(given, config.DEFAULTS)
    assert filled["roar"]["learner"] == {**config.DEFAULTS["roar"]["learner"], "reg": "l2"}
    assert filled["roar"]["fractions"] == [0.5] and filled["extra"] == 1 and filled["device"] == "auto"
    assert given == {"roar": {"learner": {"reg": "l2"}, "fractions": [0.5]}, "extra": 1}  # the input is not touched
    filled["robustness"]["boundary"]["span"] = -1.0
    assert config.DEFAULTS["robustness"]["boundary"]["span"] != -1.0                     # nor the tree


def test_the_demo_runs_every_analysis_somewhere_and_tests_its_headline_over_three_seeds():
    demo = config.validate(config.load_yaml(REPO / "config" / "demo.yaml"))
    shape = layout.shape(demo)
    ran = {a.name for cell in grid.cells(demo) for a in layout.analyses_of(shape, cell.record())}
    assert ran == set(layout.REGISTRY)
    head = demo["headline"]
    assert len(demo["studies"][head["study"]]["seeds"]) >= 3
    showcase = config.validate(config.load_yaml(REPO / "config" / "showcase.yaml"))
    assert all("analyses" not in study for study in showcase["studies"].values())  # everything everywhere


@pytest.mark.parametrize("headline,expected", [
    ({"study": "t", "arch": "lenet", "reg": "l2", "measure": "pgd_acc"}, r"headline\.study: 't' is not a study; valid: \['s'\]"),
    ({"study": "s", "arch": "vgg19", "reg": "l2", "measure": "pgd_acc"}, r"headline\.arch: 'vgg19' is not in studies\.s\.archs"),
    ({"study": "s", "arch": "lenet", "reg": "none", "measure": "pgd_acc"}, r"headline\.reg: 'none' is the study's baseline"),
    ({"study": "s", "arch": "lenet", "reg": "l2"}, r"headline"),
])
def test_a_bad_headline_is_named(headline, expected):
    cfg = _with(regularizers=["none", "l2"])
    cfg["headline"] = headline
    with pytest.raises(config.ConfigError, match=expected):
        config.validate(cfg)


def test_the_headline_measure_must_be_on_the_scorecard():
    from reglens.stages.report import check_headline
    cfg = config.validate({**_with(regularizers=["none", "l2"]),
                           "headline": {"study": "s", "arch": "lenet", "reg": "l2", "measure": "pgd_accuracy"}})
    with pytest.raises(config.ConfigError, match=r"headline\.measure: 'pgd_accuracy' is not a scorecard measure; valid: \["):
        check_headline(cfg)
    check_headline({**cfg, "headline": {**cfg["headline"], "measure": "pgd_acc"}})
