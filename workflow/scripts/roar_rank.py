from reglens.stages.common import job
from reglens.stages.roar import run_rank

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_rank(snakemake.input.model, snakemake.input.data, snakemake.output[0], snakemake.wildcards.method,
             snakemake.params.cfg, snakemake.config["device"])
