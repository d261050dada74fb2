from pathlib import Path

from reglens.stages.common import job
from reglens.stages.report import run_report

with job(snakemake.log[0]):
    run_report(Path(snakemake.input.tables[0]).parent, snakemake.input.figures, snakemake.params.config,
               snakemake.output[0])
