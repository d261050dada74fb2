from reglens.stages.common import job
from reglens.stages.neurons import run_neurons

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_neurons(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()),
                snakemake.params.cfg, snakemake.params.units, snakemake.config["device"])
