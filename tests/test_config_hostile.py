"""Hostile and edge-case configs: names that could make two cells share a folder, numbers that are not
finite, values YAML reads as text, every section checked by the same rules, and the CLI's one-line errors."""
import json
import os
import random
import re
import string

import pytest
import yaml

from conftest import REPO
from reglens import cli, config, grid

BASE = {"regularizers": {"none": [], "l2": [{"kind": "l2", "weight": 1e-4}]},
        "studies": {"s": {"dataset": "digits", "archs": ["lenet", "simplecnn"], "regularizers": ["none"],
                          "seeds": [0]}}}


def _cfg(**changes):
    cfg = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in changes.items():
        *parents, key = path.split("__")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[key] = value
    return cfg


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "l2+..", "+l2", "l2+", "-x"])
def test_names_that_are_not_a_plain_folder_are_refused(name):
    cfg = _cfg(regularizers__x=[])
    cfg["regularizers"][name] = []
    cfg["studies"]["s"]["regularizers"] = [name]
    with pytest.raises(config.ConfigError, match=re.escape(f"regularizers: the name {name!r}: each part (joined by '+') starts with")):
        config.validate(cfg)


def test_long_and_reserved_names_are_refused():
    cfg = _cfg()
    cfg["regularizers"]["a" * 65] = []
    with pytest.raises(config.ConfigError, match="is 65 characters; at most 64"):
        config.validate(cfg)
    for reserved in config.RESERVED_STUDIES:
        cfg = _cfg()
        cfg["studies"][reserved] = cfg["studies"].pop("s")
        with pytest.raises(config.ConfigError, match=f"studies.{reserved}: '{reserved}' is a results folder"):
            config.validate(cfg)


def test_no_two_legal_names_give_two_cells_one_folder(tmp_path):
    """Property test: 300 random configs of names drawn from the allowed characters (dots, dashes and
    '+' included); every config that validates has as many distinct resolved cell folders as cells."""
    rng = random.Random(0)
    alphabet = string.ascii_lowercase[:4] + "0_.-"
    checked, root = 0, str(tmp_path)
    for _ in range(300):
        names = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(4)}
        cfg = _cfg()
        cfg["regularizers"] = {"none": [], **{name: [] for name in names}}
        cfg["studies"]["s"]["regularizers"] = sorted(names)
        try:
            valid = config.validate(cfg)
        except config.ConfigError as error:
            assert "the name" in str(error) or "would write to one folder" in str(error), error
            continue
        folders = {f"results/{c.path}" for c in grid.cells(valid)}
        resolved = {os.path.realpath(os.path.join(root, f)) for f in folders}
        assert len(resolved) == len(grid.cells(valid)) == len(folders)
        checked += 1
    assert checked > 50


@pytest.mark.parametrize("path,value,where", [
    ("studies__s__train__lr", float("nan"), "studies.s.train.lr"),
    ("studies__s__train__momentum", float("inf"), "studies.s.train.momentum"),
    ("studies__s__model__width", float("nan"), "studies.s.model.width"),
    ("robustness__fgsm_eps", [0.0, float("inf")], r"robustness.fgsm_eps\[1\]"),
    ("roar__fractions", [float("nan")], r"roar.fractions\[0\]"),
])
def test_non_finite_numbers_are_refused_naming_the_key(path, value, where):
    with pytest.raises(config.ConfigError, match=f"^{where}: (nan|inf) is not a finite number"):
        config.validate(_cfg(**{path: value}))


def test_yaml_and_json_non_finite_numbers_are_refused_from_files(tmp_path):
    text = yaml.safe_dump(BASE).replace("weight: 0.0001", "weight: .nan")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(config.ConfigError, match=r"regularizers.l2\[0\].weight: nan"):
        config.validate(config.load_yaml(tmp_path / "c.yaml"))
    (tmp_path / "c.json").write_text(json.dumps(BASE).replace("0.0001", "NaN"))   # as Snakemake reads JSON
    with pytest.raises(config.ConfigError, match=r"regularizers.l2\[0\].weight: nan"):
        config.validate(json.loads((tmp_path / "c.json").read_text()))


@pytest.mark.parametrize("value,message", [
    (-1, r"roar.train.lr: -1 is less than or equal to the minimum of 0"),
    ("fast", r"roar.train.lr: 'fast' is not of type 'number'"),
    ("1e-3", r"roar.train.lr: '1e-3' is text, not a number: .* write 1.0e-3"),
    ("1.5e3", r"roar.train.lr: '1.5e3' is text, not a number: .* write 1.5e\+3"),
])
def test_roar_train_is_checked_as_a_studys_train(value, message):
    with pytest.raises(config.ConfigError, match=message):
        config.validate(_cfg(roar__train={"lr": value}))
    with pytest.raises(config.ConfigError, match=r"roar.train: unknown key\(s\) \['epoch'\]"):
        config.validate(_cfg(roar__train={"epoch": 3}))
    with pytest.raises(config.ConfigError, match=r"roar.train.epochs: 0 is less than the minimum of 1"):
        config.validate(_cfg(roar__train={"epochs": 0}))


def test_exponent_numbers_yaml_reads_as_text_get_the_spelling_that_works():
    text = yaml.safe_dump(_cfg(studies__s__train={"weight_decay": 0.5})).replace("weight_decay: 0.5", "weight_decay: 1e12")
    with pytest.raises(config.ConfigError, match=r"train.weight_decay: '1e12' is text, not a number: .* write 1.0e\+12"):
        config.validate(yaml.safe_load(text))
    assert yaml.safe_load("x: 1.0e+12")["x"] == 1e12                 # the spelling the message gives works


def test_seeds_and_data_root_are_bounded():
    with pytest.raises(config.ConfigError, match=r"studies.s.seeds\[0\]: 18446744073709551616 is greater than"):
        config.validate(_cfg(studies__s__seeds=[2 ** 64]))
    with pytest.raises(config.ConfigError, match=r"data.root: '' should be non-empty"):
        config.validate(_cfg(data__root=""))


def test_canonical_params_ignore_key_order_and_number_spelling():
    defaults = {"train": {"lr": 0.05, "epochs": 10}}
    a = config.canonical({"train": {"lr": 1, "epochs": 3}, "cell": {"seed": 0, "arch": "lenet"}}, defaults)
    b = config.canonical({"cell": {"arch": "lenet", "seed": 0}, "train": {"epochs": 3, "lr": 1.0}}, defaults)
    assert a == b and json.dumps(a) == json.dumps(b)
    assert isinstance(a["train"]["lr"], float) and isinstance(a["train"]["epochs"], int)
    assert config.canonical([{"b": 1, "a": True}]) == [{"a": True, "b": 1}]
    # an option added later, at the value that reproduces earlier results, leaves params as they were
    before = {"options": {"occlusion_window": 0.25}, "steps": 3}
    assert config.canonical({"options": {"occlusion_window": 0.25, "occlusion_fill": 0.0}, "steps": 3, "units": {}}) \
        == config.canonical(before)
    assert config.canonical({"options": {"occlusion_fill": 0.5}})["options"] == {"occlusion_fill": 0.5}


def test_cli_errors_are_one_line_and_bounded(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(BASE))
    assert cli.main(["status", "--configfile", str(tmp_path / "c.yaml"), "--root", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().endswith("(the one holding results/ and logs/)")
    for utilization in ("0", "-0.5", "1.5"):
        assert cli.main(["plan", "--configfile", str(tmp_path / "c.yaml"), "--utilization", utilization]) == 2
        err = capsys.readouterr().err
        assert f"--utilization {float(utilization)}: a fraction of the device's peak, in (0, 1]" in err
    (tmp_path / "bench.json").write_text("not json")
    assert cli.main(["plan", "--configfile", str(tmp_path / "c.yaml"), "--measured", str(tmp_path / "bench.json")]) == 2
    assert f"--measured {tmp_path / 'bench.json'}: not the JSON" in capsys.readouterr().err
    assert cli.main(["plan", "--configfile", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


def alias_bomb(path, under="_"):
    """472 bytes whose aliases of aliases stand for 10^9 values (YAML's 'billion laughs')."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path.write_text(yaml.safe_dump(BASE) + f"{under}:\n" + "\n".join("  " + line for line in lines) + "\n")
    return path


def test_an_alias_bomb_is_refused_in_under_a_second_naming_the_key(tmp_path):
    import time

    for under in ("_", "notes"):
        start = time.perf_counter()
        with pytest.raises(config.ConfigError, match=rf"1,234,567,9[0-9][0-9] values once its YAML aliases are expanded .*"
                                                     rf"most of them under {under}\.a8"):
            config.load_yaml(alias_bomb(tmp_path / f"{under}.yaml", under))
        assert time.perf_counter() - start < 1.0
    assert config.load_yaml(REPO / "config" / "config.yaml")["studies"]    # the full study is far below the cap
    big = tmp_path / "big.yaml"
    big.write_text("x: " + "a" * (2 << 20))
    with pytest.raises(config.ConfigError, match="bytes; a config is at most 1,048,576"):
        config.load_yaml(big)


def test_check_config_refuses_yte_templates_without_running_them(tmp_path, capsys):
    marker = tmp_path / "marker"
    path = tmp_path / "yte.yaml"
    path.write_text(yaml.safe_dump(BASE) + f"__use_yte__: true\n?__import__('os').system('touch {marker}'):\n  x: 1\n")
    assert cli.main(["check-config", str(path)]) == 1
    assert "__use_yte__ turns on Snakemake's YTE templates" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.slow
def test_the_workflow_refuses_an_alias_bomb_before_any_job(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                          "--directory", str(tmp_path), "--configfile", str(alias_bomb(tmp_path / "bomb.yaml"))],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "most of them under _.a8" in run.stdout + run.stderr
