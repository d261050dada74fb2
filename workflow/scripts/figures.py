from reglens import plots
from reglens.io import log_to

with log_to(snakemake.log[0]):
    plots.study_figures("results/tables", "results", snakemake.output[0], snakemake.params.cells)
