from reglens.stages.common import job
from reglens.stages.report import run_aggregate

with job(snakemake.log[0]):
    run_aggregate(".", snakemake.params.shape, snakemake.params.cells, dict(snakemake.output.items()),
                  snakemake.params.headline, snakemake.params.replicate)
