"""Report stage: per-cell outputs -> tidy tables -> figures -> one HTML report."""
from __future__ import annotations

from reglens import aggregate, analyses, metaeval, replication, report, stats
from reglens.grid import ConfigError
from reglens.plots import build
from reglens.io import write_csv

def baselines(cells: list[dict]) -> dict[str, str]:
    """Each study's scorecard baseline: `none`, or (without it) the study's first regularizer, in the
    config's order (weight decay in the TUKL study)."""
    out: dict[str, str] = {}
    for cell in cells:
        regs = [c["reg"] for c in cells if c["study"] == cell["study"]]
        out[cell["study"]] = "none" if "none" in regs else regs[0]
    return out


def check_headline(cfg: dict) -> None:
    """The declared headline's measure is a scorecard measure (the rest: reglens.config)."""
    head = cfg.get("headline")
    names = [m.name for m in analyses.scorecard()]
    if head and head["measure"] not in names:
        raise ConfigError(f"headline.measure: {head['measure']!r} is not a scorecard measure; valid: {names}")


def run_aggregate(root, shape: dict, cells: list[dict], out: dict, headline: dict | None = None,
                  replicate: dict | None = None) -> None:
    """`out` maps metrics, missing, summary, untrained, comparisons, ranking, scorecard, metaeval, controls,
    agreement, shortcut, dissect_groups, headline, replication, replication_curve and every stacked table
    (analyses.stacked_tables) to paths; `root` holds results/, `shape` is layout.shape(config): which
    analyses run on which cells; `headline`: the config's declared comparison (its scorecard row goes to
    `out["headline"]`); `replicate`: {"studies": config's replicate, "weights": replication.weights of
    its regularizer variants}."""
    groups = aggregate.group_tables(root, cells)  # once: the tidy metrics and their own table
    tidy, missing = aggregate.collect(root, shape, cells, groups=groups)
    write_csv(out["metrics"], tidy)
    write_csv(out["missing"], missing)
    for name in analyses.stacked_tables():
        write_csv(out[name], aggregate.concat_cell_tables(root, shape, cells, name))
    card = analyses.scorecard()
    summary = stats.summarize(tidy)
    write_csv(out["summary"], summary)
    failed = stats.untrained(tidy)  # in metrics and summary, flagged; in no comparison
    write_csv(out["untrained"], failed)
    trained = stats.without_cells(tidy, failed)
    write_csv(out["comparisons"], stats.compare_to_baseline(trained))
    write_csv(out["ranking"], stats.ranking(stats.summarize(trained)))
    scores = stats.scorecard(trained, card, baselines=baselines(cells))
    meta = metaeval.metaeval(trained, card, scores)
    write_csv(out["metaeval"], meta)
    write_csv(out["controls"], metaeval.control_check(metaeval.method_values(trained, card), card))
    scores = stats.mark_masking(metaeval.mark_trust(scores, meta), trained)
    write_csv(out["scorecard"], scores)
    write_csv(out["headline"], scores[(scores.study == headline["study"]) & (scores.arch == headline["arch"])
                                      & (scores.reg == headline["reg"]) & (scores.measure == headline["measure"])]
              if headline else scores.iloc[0:0])
    write_csv(out["agreement"], stats.agreement(trained, card))
    write_csv(out["shortcut"], stats.shortcut_detection(trained))
    write_csv(out["dissect_groups"], groups)
    known = (replicate or {}).get("studies") or {}
    write_csv(out["replication"], replication.replicate(tidy, card, known, failed))
    write_csv(out["replication_curve"], replication.curve(tidy, known, (replicate or {}).get("weights") or {}, failed))


AGGREGATE_TABLES = ["metrics", "missing", "summary", "untrained", "comparisons", "ranking", "scorecard", "headline",
                    "metaeval", "controls", "agreement", "shortcut", "dissect_groups", "replication",
                    "replication_curve"]


def aggregate_tables() -> list[str]:
    """The tables the aggregate job writes (results/tables/<name>.csv)."""
    return AGGREGATE_TABLES + list(analyses.stacked_tables())


def run_figures(tables_dir, root, shape: dict, out_dir, cells: list[dict], workers: int = 1,
                svg: bool = True) -> list[str]:
    return build.study_figures(tables_dir, root, shape, out_dir, cells, workers, svg)


def run_report(tables_dir, figures_dir, config: dict, out_path) -> None:
    report.build(tables_dir, figures_dir, config, out_path)
