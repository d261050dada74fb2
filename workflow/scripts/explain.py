from reglens.stages.common import job
from reglens.stages.explain import run_explain

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_explain(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()), snakemake.params.cfg,
                snakemake.config["device"])
