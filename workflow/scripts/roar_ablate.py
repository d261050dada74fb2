from reglens.stages.common import job
from reglens.stages.roar import run_ablate

with job(snakemake.log[0]):
    w = snakemake.wildcards
    run_ablate(snakemake.input.data, snakemake.input.ranks, snakemake.output[0], float(w.fraction), w.mode)
