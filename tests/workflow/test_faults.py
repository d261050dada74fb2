"""Lose nothing: faults injected into a tiny study. Every message names the file or key and the fix,
and every result that existed before is unchanged afterwards (or rebuilt with the same bytes)."""
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
import yaml

from conftest import REPO, file_hashes, jobs_of, run_snakemake
from reglens import analyses, config, io, layout  # noqa: F401  (analyses: the registry)
from reglens.data import download
from reglens.analyses import REGISTRY
from reglens.stages.train import run_cell
from reglens.train import NonFiniteLoss

TINY = {
    "regularizers": {"none": [], "l2": [{"kind": "l2", "weight": 1e-3}]},
    "figures": {"svg": False},
    "robustness": {"n_images": 40, "fgsm_eps": [0.0, 0.1], "pgd_eps": [0.1], "pgd_steps": [2],
                   "worst_case": {"linf_eps": [0.0, 0.1], "l2_eps": [0.5], "apgd_steps": 5, "targets": 2, "square_queries": 20},
                   "iterations": {"steps": [1, 3], "restarts": [1, 2], "restart_steps": 2},
                   "boundary": {"images": 1, "resolution": 5}, "pca_images": 20},
    "explain": {"methods": ["saliency", "random"], "figure_images": 2, "metric_images": 4,
                "mprt_methods": ["saliency"], "mprt_images": 2},
    "actmax": {"steps": 2, "units_per_layer": 1},
    "embedding": {"enabled": False}, "neurons": {"enabled": False},
    "dissect": {"enabled": False},
    "road": {"enabled": False}, "meta_consistency": {"enabled": False},
    "studies": {"tiny": {"dataset": "digits", "archs": ["simplecnn"], "regularizers": ["none", "l2"],
                         "seeds": [0], "model": {"width": 0.25}, "train": {"epochs": 2, "batch_size": 128}}},
}
# files whose content holds wall-clock times; everything else a job writes is the same bytes on a rerun
TIMED = ("metrics.json", "history.csv", ".metrics.json.integrity", ".history.csv.integrity")
# every per-cell file of a cell (with dissection and ROAD off): rebuilding it is the point, not redrawing
# figures (tested in test_workflow); Snakemake does not rerun the table for inputs that are missing
CELL = {"study": "tiny", "dataset": "digits", "arch": "simplecnn", "reg": "l2", "seed": 0}
CELL_FILES = [analysis.target(CELL) for analysis in layout.REGISTRY.values()
              if analysis.applies(config.validate(TINY), CELL)]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults") / "study"
    root.mkdir()
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run_snakemake(root, "all")
    return root


@pytest.fixture
def study(built, tmp_path):
    """A private copy of the built study (times preserved), so each fault starts from the same state."""
    copy = tmp_path / "study"
    shutil.copytree(built, copy, copy_function=shutil.copy2, symlinks=True)
    return copy


def results(study):
    return file_hashes(study / "results", study / "resources" / "data")


def assert_rebuilt_identically(before, after):
    """Every result file is back with the same bytes, but for recorded times and what is drawn from them."""
    for path, digest in before.items():
        if os.path.basename(path) in TIMED or "/figures/" in path or "/tables/" in path \
                or path.endswith(("report.html", ".integrity")):
            assert path in after, path
            continue
        assert after.get(path) == digest, path


def edit(study, change):
    cfg = yaml.safe_load((study / "tiny.yaml").read_text())
    change(cfg)
    (study / "tiny.yaml").write_text(yaml.safe_dump(cfg))


def cells_of(jobs):
    return {(w.get("study"), w.get("reg")) for rule, w in jobs if "reg" in w}


def test_params_hold_only_what_determines_a_cell(study):
    edit(study, lambda c: c["regularizers"].update(l1=[{"kind": "l1", "weight": 1e-4}]))  # used by no study
    assert jobs_of(run_snakemake(study, "all", "-n")) == []

    def add_study(c):
        c["studies"]["extra"] = {**c["studies"]["tiny"], "regularizers": ["none"]}
    edit(study, add_study)
    jobs = jobs_of(run_snakemake(study, "all", "-n"))
    assert cells_of(jobs) == {("extra", "none")}
    assert {rule for rule, w in jobs if "study" not in w} == {"aggregate", "draw_figures", "report", "all"}

    edit(study, lambda c: c["regularizers"]["l2"][0].update(weight=2e-3))  # one cell's own setting
    jobs = jobs_of(run_snakemake(study, "all", "-n"))
    assert cells_of(jobs) == {("extra", "none"), ("tiny", "l2")}
    assert sorted(rule for rule, w in jobs if w.get("study") == "tiny") == [
        "actmax", "attack", "diagnose", "explain", "train"]


def test_damaged_dataset_stops_the_run_before_any_job_and_rebuilds_to_the_same_bytes(study):
    before = results(study)
    data = study / "resources" / "data" / "digits.pt"
    data.write_bytes(data.read_bytes()[:1000])  # truncated
    shutil.rmtree(study / "results" / "tiny" / "simplecnn" / "l2")  # a cell to rebuild: jobs would run
    before_run = results(study)
    run = run_snakemake(study, "all", check=False)
    assert run.returncode != 0
    message = run.stdout + run.stderr
    assert f"{os.path.join('resources', 'data', 'digits.pt')} is damaged" in message
    assert "rm resources/data/digits.pt && snakemake resources/data/digits.pt" in message
    assert results(study) == before_run  # nothing was deleted or rewritten
    # the fix as the message gives it: rebuild just that file, then the run
    data.unlink()
    rebuilt = run_snakemake(study, "resources/data/digits.pt")
    assert [rule for rule, _ in jobs_of(rebuilt)] == ["prepare_data"]
    assert results(study)[str(data)] == before[str(data)]  # the same bytes
    ran = jobs_of(run_snakemake(study, *CELL_FILES))  # the removed cell (figures and report: not the point here)
    assert cells_of(ran) == {("tiny", "l2")}  # only the removed cell
    assert_rebuilt_identically(before, results(study))


def test_damaged_model_stops_the_run_and_its_cell_rebuilds_identically(study):
    model = study / "results" / "tiny" / "simplecnn" / "none" / "seed0" / "model.pt"
    before = results(study)
    model.write_bytes(model.read_bytes()[:-100])
    (study / "results" / "tiny" / "simplecnn" / "l2" / "seed0" / "explain" / "maps.pt").unlink()  # work to do
    damaged = results(study)
    run = run_snakemake(study, "all", check=False)
    assert run.returncode != 0 and "model.pt is damaged" in run.stdout + run.stderr
    assert results(study) == damaged
    rel = os.path.relpath(model, study)
    model.unlink()
    run_snakemake(study, rel)
    run_snakemake(study, "results/tiny/simplecnn/l2/seed0/explain/maps.pt",
                  *[path.replace("/l2/", "/none/") for path in CELL_FILES])
    assert_rebuilt_identically(before, results(study))


def test_a_duplicated_config_key_is_named_with_both_lines(study):
    text = (study / "tiny.yaml").read_text()
    (study / "tiny.yaml").write_text(text + "regularizers:\n  none: []\n")
    run = run_snakemake(study, "all", "-n", check=False)
    message = run.stdout + run.stderr
    assert run.returncode != 0 and "key 'regularizers' is defined twice" in message
    first = 1 + text.splitlines().index("regularizers:")
    assert f"(lines {first} and {len(text.splitlines()) + 1})" in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("studies:\n  a:\n\tdataset: digits\n")
    run = subprocess.run([sys.executable, "-m", "reglens", "check-config", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1
    assert f"{bad} is not valid YAML at line 3, column 1" in run.stderr and "tab" in run.stderr
    ok = subprocess.run([sys.executable, "-m", "reglens", "check-config", str(REPO / "config" / "demo.yaml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout


FULL_DISK = """
import resource, signal, sys, torch
from reglens import io
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # a full disk, for this process
try:
    io.torch_save({"w": torch.zeros(500_000)}, sys.argv[1])
except io.DiskFull as exc:
    print(exc)
"""


def test_a_full_disk_names_the_file_and_the_cause(tmp_path):
    target = tmp_path / "model.pt"
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True)
    assert f"writing {target} failed: File too large" in run.stdout and "GB free" in run.stdout, run.stderr
    assert "Free space there" in run.stdout
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temporary left behind


def test_a_corrupt_download_names_the_fix(tmp_path):
    good = tmp_path / "src" / "file.bin"
    good.parent.mkdir()
    good.write_bytes(b"official")
    remote = download.RemoteFile("file.bin", (good.as_uri(),), download.md5sum(good))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "file.bin").write_bytes(b"offic")  # an interrupted copy by hand
    with pytest.raises(download.ChecksumError, match=rf"Delete it \(rm {downloads / 'file.bin'}\) and rerun"):
        download.fetch(remote, downloads)


def test_damaged_project_files_fail_naming_the_file_and_the_fix(tmp_path):
    path = tmp_path / "ranks.pt"
    io.torch_save({"a": torch.arange(5)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(io.DamagedFile, match=re.escape(f"rm {path} && snakemake {path}")):
        io.load_torch(path)
    with pytest.raises(io.DamagedFile, match=rf"{path} is damaged: 50 bytes where \d+ were written"):
        io.check_intact(path)
    csv = tmp_path / "t.csv"
    csv.write_text("")
    with pytest.raises(io.DamagedFile, match="t.csv cannot be read"):
        io.read_csv(csv)


def test_same_inputs_same_bytes(tmp_path):
    for name in ("a.pt", "b.pt"):
        io.torch_save({"x": torch.arange(10.0), "name": "same"}, tmp_path / name)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_unreadable_checkpoint_is_replaced_with_a_warning(digits_file, tmp_path):
    args = ({"arch": "simplecnn", "reg": "none", "seed": 0}, [], {"epochs": 2, "batch_size": 256}, {"width": 0.25})
    clean = run_cell(digits_file, REGISTRY["train"].under(tmp_path / "clean"), *args, device="cpu")
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "train_state.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.warns(UserWarning, match="ignoring the epoch checkpoint: .*train_state.pt cannot be read"):
        resumed = run_cell(digits_file, REGISTRY["train"].under(cell), *args, device="cpu")
    assert resumed["resumed_from_epoch"] == 0 and resumed["test_loss"] == clean["test_loss"]
    assert (cell / "model.pt").read_bytes() == (tmp_path / "clean" / "model.pt").read_bytes()
    assert not (cell / "train_state.pt").exists()


def test_a_diverging_last_step_is_caught_by_the_final_evaluation(digits_file, tmp_path):
    # one step per epoch: the loss of the only batch is finite (computed before the step), the
    # weights after the step are not
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NonFiniteLoss, match="final model's training loss"):
            run_cell(digits_file, REGISTRY["train"].under(tmp_path / "cell"), {"arch": "simplecnn", "reg": "none", "seed": 0}, [],
                     {"epochs": 1, "batch_size": 4096, "lr": 1e38, "momentum": 0.0}, {"width": 0.25}, device="cpu")
    assert not (tmp_path / "cell" / "model.pt").exists()


def test_a_job_orphaned_by_a_killed_snakemake_keeps_what_it_finishes(tmp_path):
    """kill -9 of Snakemake alone while a cell trains: the training job goes on and finishes; after
    `--unlock` the rerun keeps its files (same bytes) and schedules no training job."""
    import signal
    import time

    cfg = {**TINY, "studies": {"tiny": {**TINY["studies"]["tiny"], "regularizers": ["none"],
                                        "train": {"epochs": 40, "batch_size": 64}}}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/tiny/simplecnn/none/seed0/metrics.json"
    cell = tmp_path / "results" / "tiny" / "simplecnn" / "none" / "seed0"
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
               str(tmp_path), "--configfile", str(tmp_path / "tiny.yaml"), "--cores", "1", target]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (cell / "train_state.pt").exists():                  # training has run an epoch
        assert time.time() < deadline and parent.poll() is None, "training did not start"
        time.sleep(0.2)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    outputs = [cell / name for name in ("model.pt", "metrics.json", "history.csv")]
    while not (all(io.finished(p) for p in outputs) and not (cell / "train_state.pt").exists()):
        assert time.time() < deadline, "the orphaned job did not finish"
        time.sleep(0.5)
    assert (tmp_path / ".snakemake" / "incomplete").exists()        # Snakemake never saw the job end
    before = file_hashes(cell)
    run_snakemake(tmp_path, "--unlock")
    assert "train" not in [rule for rule, _ in jobs_of(run_snakemake(tmp_path, "-n", target))]
    run_snakemake(tmp_path, target)
    assert file_hashes(cell) == before
