from reglens.stages.common import job
from reglens.stages.dissect import run_dissect

with job(snakemake.log[0], snakemake.config["torch_threads"]):
    cfg = {**snakemake.params.cfg, "workers": min(snakemake.params.cfg["workers"], snakemake.threads)}
    out_dir = snakemake.output.summary.rsplit("/", 1)[0]
    summary = run_dissect(snakemake.input.model, snakemake.input.broden, out_dir, cfg, snakemake.config["device"],
                          snakemake.input.decoded)
    total = summary["total"]
    print(f"{total['detectors']}/{total['units']} units are detectors; unique concepts "
          f"{total['unique_concepts']} (one label per unit), {total['unique_concepts_per_category']} (per category)")
