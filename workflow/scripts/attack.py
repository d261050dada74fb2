from reglens.stages.common import job
from reglens.stages.attack import run_attacks

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_attacks(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()), snakemake.params.cfg,
                snakemake.config["device"])
