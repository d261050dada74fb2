# Aggregate every per-cell output into tidy tables, then figures and the report, drawn from the
# tables and saved maps only: `snakemake figures` never needs a GPU or a model. The code that draws
# is an input, so a change to it reruns figures and report, and nothing upstream.
import reglens.measures
import reglens.plots
import reglens.report
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
        code=[reglens_aggregate.__file__, reglens.stats.__file__, reglens.measures.__file__],
    output:
        metrics=f"{TABLES}/metrics.csv",
        missing=f"{TABLES}/missing.csv",
        roar_curves=f"{TABLES}/roar_curves.csv",
        mprt=f"{TABLES}/mprt.csv",
        attacks=f"{TABLES}/attacks.csv",
        summary=f"{TABLES}/summary.csv",
        comparisons=f"{TABLES}/comparisons.csv",
        ranking=f"{TABLES}/ranking.csv",
        scorecard=f"{TABLES}/scorecard.csv",
        agreement=f"{TABLES}/agreement.csv",
        shortcut=f"{TABLES}/shortcut.csv",
        shortcut_scores=f"{TABLES}/shortcut_scores.csv",
        dissect_groups=f"{TABLES}/dissect_groups.csv",
        net2vec=f"{TABLES}/net2vec.csv",
        lesion_curves=f"{TABLES}/lesion_curves.csv",
        dissect_units=f"{TABLES}/dissect_units.csv",
        roar_leakage=f"{TABLES}/roar_leakage.csv",
        roar_detector=f"{TABLES}/roar_detector.csv",
        road_curves=f"{TABLES}/road_curves.csv",
        history=f"{TABLES}/history.csv",
        weight_hist=f"{TABLES}/weight_hist.csv",
    params:
        cells=canonical([cell.record() for cell in CELLS]),
        roar_cells=canonical(CFG["roar"]["cells"]),
        enabled=ENABLED,
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
        code=reglens.plots.__file__,
    output:
        report(directory("results/figures"), patterns=["{name}.png"], category="Figures"),
    params:
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
        code=[reglens.report.__file__, reglens.measures.__file__],
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
