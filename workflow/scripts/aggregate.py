from reglens import aggregate
from reglens.io import log_to, write_csv

with log_to(snakemake.log[0]):
    tidy, missing = aggregate.collect("results", snakemake.params.cells)
    write_csv(snakemake.output.metrics, tidy)
    write_csv(snakemake.output.missing, missing)
