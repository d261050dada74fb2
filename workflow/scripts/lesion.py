from reglens.stages.common import job
from reglens.stages.concepts import run_lesion

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_lesion(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()), snakemake.params.cfg,
               snakemake.config["device"])
