from reglens.stages.common import job
from reglens.stages.roar import run_retrain

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_retrain(snakemake.input.data, snakemake.input.ranks, snakemake.output[0], snakemake.params.learner,
                snakemake.params.cfg, snakemake.config["device"])
