from pathlib import Path

from reglens.stages.common import job
from reglens.stages.report import run_figures

with job(snakemake.log[0]):
    run_figures(Path(snakemake.input.tables[0]).parent, ".", snakemake.params.shape, snakemake.output[0],
                snakemake.params.cells, snakemake.threads, snakemake.params.svg)
