import torch

from reglens import roar
from reglens.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    roar.run_rank(snakemake.input.model, snakemake.input.data, snakemake.output[0], snakemake.wildcards.method,
                  snakemake.params.cfg, snakemake.params.device)
