import torch

from reglens import dissect
from reglens.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    cfg = {**snakemake.params.cfg, "workers": min(snakemake.params.cfg["workers"], snakemake.threads)}
    out_dir = snakemake.output.summary.rsplit("/", 1)[0]
    summary = dissect.run_dissect(snakemake.input.model, snakemake.input.broden, out_dir, cfg,
                                  snakemake.params.device)
    total = summary["total"]
    print(f"{total['detectors']}/{total['units']} units are detectors; unique concepts "
          f"{total['unique_concepts']} (one label per unit), {total['unique_concepts_per_category']} (per category)")
