from reglens.stages.common import job
from reglens.stages.report import run_aggregate

with job(snakemake.log[0]):
    run_aggregate("results", snakemake.params.cells, snakemake.params.roar_cells, snakemake.params.enabled,
                  dict(snakemake.output.items()))
