from reglens.stages.common import job
from reglens.stages.roar import run_score

with job(snakemake.log[0]):
    run_score(snakemake.input.baseline, snakemake.input.retrains, dict(snakemake.output.items()))
