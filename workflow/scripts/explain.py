import torch

from reglens import attribution
from reglens.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    attribution.run_explain(snakemake.input.model, snakemake.input.data, dict(snakemake.output.items()),
                            snakemake.params.cfg, snakemake.params.device)
