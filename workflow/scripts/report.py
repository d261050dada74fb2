from reglens.stages.common import job
from reglens.stages.report import run_report

with job(snakemake.log[0]):
    run_report("results/tables", snakemake.input.figures, snakemake.params.config, snakemake.output[0])
