from reglens.stages.common import job
from reglens.stages.meta_consistency import run_meta_consistency

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_meta_consistency(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()),
                         snakemake.params.cfg, snakemake.config["device"])
