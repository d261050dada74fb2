import torch

from reglens import robustness
from reglens.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    robustness.run_attacks(snakemake.input.model, snakemake.input.data, snakemake.output.attacks,
                           snakemake.params.cfg, snakemake.params.device)
