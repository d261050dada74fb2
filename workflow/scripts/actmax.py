from reglens.stages.common import job
from reglens.stages.explain import run_actmax

with job(snakemake.log[0], snakemake.threads):
    run_actmax(snakemake.input.model, snakemake.output.images, snakemake.params.cfg, snakemake.config["device"])
