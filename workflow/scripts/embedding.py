from reglens.stages.common import job
from reglens.stages.embedding import run_embedding

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_embedding(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()),
                  snakemake.params.cfg, snakemake.config["device"])
