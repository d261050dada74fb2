from reglens.stages.common import job
from reglens.stages.data import broden_folder

with job(snakemake.log[0]):
    out = broden_folder(snakemake.params.broden, snakemake.output[0], snakemake.params.downloads_dir,
                        snakemake.params.offline_dir)
    print(f"Broden ready in {out}")
