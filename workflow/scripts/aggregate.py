from reglens import aggregate
from reglens.io import log_to, write_csv

with log_to(snakemake.log[0]):
    out, cells = snakemake.output, snakemake.params.cells
    tidy, missing = aggregate.collect("results", cells, snakemake.params.roar_cells,
                                       dissect=snakemake.params.dissect)
    write_csv(out.metrics, tidy)
    write_csv(out.missing, missing)
    for name, filename in (("roar_curves", "roar/curves.csv"), ("mprt", "explain/mprt.csv"),
                           ("attacks", "robustness/attacks.csv"), ("dissect_units", "dissect/units.csv")):
        write_csv(out[name], aggregate.concat_cell_tables("results", cells, filename))
    summary = aggregate.summarize(tidy)
    write_csv(out.summary, summary)
    write_csv(out.comparisons, aggregate.compare_to_baseline(tidy))
    write_csv(out.ranking, aggregate.ranking(summary))
