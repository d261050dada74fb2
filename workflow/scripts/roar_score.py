from reglens import roar
from reglens.io import log_to

with log_to(snakemake.log[0]):
    roar.run_score(snakemake.input, snakemake.output.curves, snakemake.output.scores)
