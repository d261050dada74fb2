import torch

from reglens import robustness
from reglens.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    robustness.run_diagnostics(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()),
                               snakemake.params.cfg, snakemake.params.device)
