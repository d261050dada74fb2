# The two commands: `make demo` (set up + run the demo study end to end) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-installed-stamp
CORES ?= all

.PHONY: install demo showcase replicate test test-fast bench readme plan clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# the test extra, and two reference implementations the tests compare against, without their own
# dependencies (torchattacks' requests~=2.25 pin would downgrade snakemake's; torchray's plotting and
# dataset packages are not used), so they cannot be in the extra
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps torchattacks==3.5.1 torchray==1.0.0.2
	touch $(TEST_STAMP)

install: $(STAMP)

demo: install
	$(BIN)/snakemake all --cores $(CORES)

showcase: install   # every analysis on every cell of five small studies, in showcase/
	$(BIN)/snakemake all --configfile config/showcase.yaml --directory showcase --cores $(CORES)

replicate: install   # known results of the literature, reproduced on digits (config/replicate.yaml), in replicate/
	$(BIN)/snakemake all --configfile config/replicate.yaml --directory replicate --cores $(CORES)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not slurm"

readme: install   # after `make demo`, `make showcase` and `make replicate`: the generated blocks of the docs
	$(BIN)/python -m reglens readme README.md --tables results/tables
	$(BIN)/python -m reglens readme docs/results.md docs/roar.md --tables showcase/results/tables
	test ! -d replicate/results/tables || $(BIN)/python -m reglens readme docs/replication.md --tables replicate/results/tables

plan: install     # the full study's bill: jobs, FLOPs and GPU-hours per rule
	$(BIN)/python -m reglens plan --configfile config/config.yaml

bench: install   # on a GPU node: `make bench`; the plan then uses the measured utilization
	$(BIN)/python benchmarks/train_throughput.py --precisions fp32 bf16 --json results/bench/train_throughput.json
	$(BIN)/python benchmarks/train_throughput.py --archs lenet simplecnn resnet18
	$(BIN)/python benchmarks/shared_gpu.py --arch lenet --cells 8
	$(BIN)/python benchmarks/attack_throughput.py
	$(BIN)/python benchmarks/dissect_throughput.py

clean-results:
	rm -rf results logs
