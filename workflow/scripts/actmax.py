import torch

from reglens import actmax
from reglens.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    actmax.run_actmax(snakemake.input.model, snakemake.output.images, snakemake.params.cfg, snakemake.params.device)
