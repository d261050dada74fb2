# Aggregate every per-cell output into tidy tables, then figures and the report, drawn from the
# tables and saved maps only: `snakemake figures` never needs a GPU or a model. The code that draws
# is an input, so a change to it reruns figures and report, and nothing upstream.
import reglens.aggregate
import reglens.analyses
import reglens.layout
import reglens.measures
import reglens.metaeval
import reglens.plots.build
import reglens.plots.cell
import reglens.plots.study
import reglens.replication
import reglens.report
import reglens.report_trust
import reglens.meta_consistency
import reglens.stages.report
import reglens.stats

TABLES = "results/tables"

localrules:  # seconds of work: on a cluster they run on the submitting node, never in the queue
    aggregate,
    draw_figures,
    report,
    figures,


rule aggregate:
    input:
        aggregate_inputs,
        code=[reglens.aggregate.__file__, reglens.analyses.__file__, reglens.layout.__file__, reglens.stats.__file__,
              reglens.measures.__file__, reglens.metaeval.__file__, reglens.replication.__file__],
    output:
        **{name: f"{TABLES}/{name}.csv" for name in reglens.stages.report.aggregate_tables()},
    params:
        shape=canonical(SHAPE),
        cells=canonical([cell.record() for cell in CELLS]),
        headline=CFG["headline"],
        replicate=canonical(reglens.replication.plan(CFG["replicate"], reglens_config.used_config(CFG)["regularizers"])),
    log:
        "logs/aggregate.log",
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/aggregate.py"


rule draw_figures:
    input:
        tables=rules.aggregate.output,
        cells=figure_inputs,
        code=[reglens.plots.build.__file__, reglens.plots.cell.__file__, reglens.plots.study.__file__,
              reglens.analyses.__file__],
    output:
        report(directory("results/figures"), patterns=["{name}.png"], category="Figures"),
    params:
        shape=canonical(SHAPE),
        cells=canonical([cell.record() for cell in CELLS]),
        svg=CFG["figures"]["svg"],
    log:
        "logs/figures.log",
    threads: workflow.cores
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/figures.py"


rule report:
    input:
        tables=rules.aggregate.output,
        figures="results/figures",
        code=[reglens.report.__file__, reglens.report_trust.__file__, reglens.measures.__file__,
              reglens.analyses.__file__, reglens.replication.__file__, reglens.meta_consistency.__file__],
    output:
        report("results/report.html", category="Report"),
    params:
        config=canonical({k: v for k, v in reglens_config.used_config(CFG).items() if k not in ("torch_threads", "device")}),
    log:
        "logs/report.log",
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/report.py"


rule figures:
    input:
        "results/figures",
        "results/report.html",
