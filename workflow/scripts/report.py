from reglens import report
from reglens.io import log_to

with log_to(snakemake.log[0]):
    report.build("results/tables", snakemake.input.figures, snakemake.params.config, snakemake.output[0])
