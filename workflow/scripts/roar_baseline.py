from reglens.stages.common import job
from reglens.stages.roar import run_baseline

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_baseline(snakemake.input.data, snakemake.output[0], snakemake.params.learner, snakemake.params.cfg,
                 snakemake.config["device"])
