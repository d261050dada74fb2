from reglens.stages.common import job
from reglens.stages.data import download

with job(snakemake.log[0]):
    download(snakemake.wildcards.dataset, snakemake.params.downloads_dir, snakemake.params.offline_dir,
             snakemake.output[0])
