from reglens import data
from reglens.io import log_to

with log_to(snakemake.log[0]):
    data.prepare(snakemake.wildcards.dataset, snakemake.output[0], snakemake.params.downloads_dir)
