"""Report stage: per-cell outputs -> tidy tables -> figures -> one HTML report."""
from __future__ import annotations

from reglens import aggregate, analyses, report, stats
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


def run_aggregate(root, shape: dict, cells: list[dict], out: dict) -> None:
    """`out` maps metrics, missing, summary, comparisons, ranking, scorecard, agreement, shortcut,
    dissect_groups and every stacked table (analyses.stacked_tables) to paths; `root` holds results/,
    `shape` is layout.shape(config): which analyses run on which cells."""
    groups = aggregate.group_tables(root, cells)  # once: the tidy metrics and their own table
    tidy, missing = aggregate.collect(root, shape, cells, groups=groups)
    write_csv(out["metrics"], tidy)
    write_csv(out["missing"], missing)
    for name in analyses.stacked_tables():
        write_csv(out[name], aggregate.concat_cell_tables(root, shape, cells, name))
    card = analyses.scorecard()
    summary = stats.summarize(tidy)
    write_csv(out["summary"], summary)
    write_csv(out["comparisons"], stats.compare_to_baseline(tidy))
    write_csv(out["ranking"], stats.ranking(summary))
    write_csv(out["scorecard"], stats.scorecard(tidy, card, baselines=baselines(cells)))
    write_csv(out["agreement"], stats.agreement(tidy, card))
    write_csv(out["shortcut"], stats.shortcut_detection(tidy))
    write_csv(out["dissect_groups"], groups)


AGGREGATE_TABLES = ["metrics", "missing", "summary", "comparisons", "ranking", "scorecard", "agreement", "shortcut",
                    "dissect_groups"]


def aggregate_tables() -> list[str]:
    """The tables the aggregate job writes (results/tables/<name>.csv)."""
    return AGGREGATE_TABLES + list(analyses.stacked_tables())


def run_figures(tables_dir, root, shape: dict, out_dir, cells: list[dict], workers: int = 1,
                svg: bool = True) -> list[str]:
    return build.study_figures(tables_dir, root, shape, out_dir, cells, workers, svg)


def run_report(tables_dir, figures_dir, config: dict, out_path) -> None:
    report.build(tables_dir, figures_dir, config, out_path)
