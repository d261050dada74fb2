from reglens.stages.common import job
from reglens.stages.dissect import decode_broden

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    decode_broden(snakemake.input[0], snakemake.output[0], snakemake.params.view, snakemake.params.sizes,
                  snakemake.threads)
