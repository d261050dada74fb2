from reglens import roar
from reglens.io import log_to

with log_to(snakemake.log[0]):
    w = snakemake.wildcards
    roar.run_ablate(snakemake.input.data, snakemake.input.ranks, snakemake.output[0], float(w.fraction), w.mode)
