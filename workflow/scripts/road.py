from reglens.stages.common import job
from reglens.stages.roar import run_road

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_road(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()), snakemake.params.cfg,
             snakemake.config["device"])
