import torch

from reglens import regularizers, roar
from reglens.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    learner = snakemake.params.learner
    rows = roar.run_retrain(snakemake.input[0], snakemake.output[0], learner["arch"],
                            regularizers.build(learner["reg"], learner["variants"]), learner["train"],
                            learner["model"], learner["seeds"], learner["meta"], snakemake.params.device)
    print(learner["meta"], rows)
