import json

import pandas as pd
import torch

from reglens import plots, robustness
from reglens.io import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    out = snakemake.output
    robustness.run_diagnostics(snakemake.input.model, snakemake.input.data, dict(out.items()),
                               snakemake.params.cfg, snakemake.params.device)
    w = snakemake.wildcards
    title = f"{w.arch} / {w.reg} / seed {w.seed}"
    figures = dict(zip(["boundaries", "reliability", "spectrum", "pca"], out.figures))
    maps = torch.load(out.boundary_maps, weights_only=True)
    plots.boundary_maps(maps["maps"], pd.read_csv(out.boundary), maps["span"], figures["boundaries"], title)
    plots.reliability(pd.read_csv(out.reliability), json.loads(open(out.calibration).read()),
                      figures["reliability"], title)
    plots.spectrum(pd.read_csv(out.spectrum), figures["spectrum"], title)
    plots.pca(pd.read_csv(out.pca), figures["pca"], title)
