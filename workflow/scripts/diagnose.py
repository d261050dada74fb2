from reglens.stages.common import job
from reglens.stages.diagnose import run_diagnostics

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_diagnostics(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()),
                    snakemake.params.cfg, snakemake.config["device"])
