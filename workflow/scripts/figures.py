from reglens.stages.common import job
from reglens.stages.report import run_figures

with job(snakemake.log[0]):
    run_figures("results/tables", "results", snakemake.output[0], snakemake.params.cells, snakemake.threads,
                snakemake.params.svg)
