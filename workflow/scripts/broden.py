from reglens.data.broden import fetch_broden
from reglens.data.synthetic_broden import write_broden
from reglens.io import log_to

with log_to(snakemake.log[0]):
    broden = snakemake.params.broden
    out = snakemake.output[0]
    if broden["source"] == "synthetic":
        s = broden["synthetic"]
        write_broden(out, n_images=s["images"], seg_size=s["seg_size"], scale=s["scale"], seed=s["seed"])
    else:
        fetch_broden(broden["version"], snakemake.params.downloads_dir, out,
                     offline_dir=snakemake.params.offline_dir, md5=broden["md5"])
    print(f"Broden ready in {out}")
