from reglens.stages.common import job
from reglens.stages.train import run_cell

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    run = snakemake.params.run
    metrics = run_cell(snakemake.input.data, dict(snakemake.output.items()), run["cell"], run["regularizer"],
                       run["train"], run["model"], snakemake.config["device"])
    print(f"{run['cell']}: test_acc={metrics['test_acc']:.4f} images/s={metrics['images_per_s']:.0f}")
