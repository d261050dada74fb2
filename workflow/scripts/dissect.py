from reglens.stages.common import job
from reglens.stages.dissect import run_dissect

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    cfg = {**snakemake.params.cfg, "workers": min(snakemake.params.cfg["workers"], snakemake.threads)}
    summary = run_dissect(snakemake.input.model, snakemake.input.broden, dict(snakemake.output.items()), cfg,
                          snakemake.config["device"], snakemake.input.decoded)
    total = summary["total"]
    print(f"{total['detectors']}/{total['units']} units are detectors; unique concepts "
          f"{total['unique_concepts']} (one label per unit), {total['unique_concepts_per_category']} (per category)")
