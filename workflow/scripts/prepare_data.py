from reglens.stages.common import job
from reglens.stages.data import prepare

with job(snakemake.log[0]):
    prepare(snakemake.wildcards.dataset, snakemake.output[0], snakemake.params.downloads_dir,
            options=snakemake.params.options)
