from reglens.stages.common import job
from reglens.stages.shortcut import plant_dataset

with job(snakemake.log[0]):
    plant_dataset(snakemake.input[0], snakemake.output[0], snakemake.params.settings)
