from reglens.stages.common import job
from reglens.stages.concepts import run_net2vec

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run_net2vec(snakemake.input.model, snakemake.input.broden, snakemake.input.units, dict(snakemake.output.items()),
                snakemake.params.dissect, snakemake.params.cfg, snakemake.config["device"], snakemake.input.decoded)
