import torch

from reglens import regularizers
from reglens.io import log_to
from reglens.train import run_cell

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    run = snakemake.params.run
    cell = run["cell"]
    metrics = run_cell(
        dataset_path=snakemake.input.data,
        out_dir=snakemake.output.metrics.rsplit("/", 1)[0],
        arch=cell["arch"],
        regs=regularizers.build(cell["reg"], run["variants"]),
        cell=cell,
        train_cfg=run["train"],
        model_cfg=run["model"],
        seed=cell["seed"],
        device=run["device"],
    )
    print(f"{cell}: test_acc={metrics['test_acc']:.4f} images/s={metrics['images_per_s']:.0f}")
