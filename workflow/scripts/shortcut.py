from reglens.stages.common import job
from reglens.stages.shortcut import run_shortcut

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_shortcut(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()), snakemake.params.cfg,
                 snakemake.params.options, snakemake.config["device"])
