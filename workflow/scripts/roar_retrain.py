from reglens.stages.common import job
from reglens.stages.roar import run_retrain

with job(snakemake.log[0], snakemake.threads):
    learner = snakemake.params.learner
    rows = run_retrain(snakemake.input[0], snakemake.output[0], learner, snakemake.config["device"])
    print(learner["meta"], rows)
