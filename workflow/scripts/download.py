from reglens import data
from reglens.io import log_to, write_json
from reglens.data.download import md5sum

with log_to(snakemake.log[0]):
    name = snakemake.wildcards.dataset
    raw = data.fetch_raw(name, snakemake.params.downloads_dir, snakemake.params.offline_dir)
    write_json(snakemake.output[0], {k: {"path": str(p), "md5": md5sum(p)} for k, p in raw.items()})
