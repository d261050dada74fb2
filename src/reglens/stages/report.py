"""Report stage: per-cell outputs -> tidy tables -> figures -> one HTML report."""
from __future__ import annotations

from reglens import aggregate, plots, report, stats
from reglens.io import write_csv

STACKED = {"history": "history.csv", "weight_hist": "robustness/weight_hist.csv", "roar_curves": "roar/curves.csv", "roar_leakage": "roar/leakage.csv",
           "roar_detector": "roar/detector.csv", "road_curves": "road/curves.csv",
           "mprt": "explain/mprt.csv", "attacks": "robustness/attacks.csv", "dissect_units": "dissect/units.csv",
           "shortcut_scores": "shortcut/scores.csv", "net2vec": "concepts/net2vec.csv", "lesion_curves": "lesion/curves.csv"}


def baselines(cells: list[dict]) -> dict[str, str]:
    """Each study's scorecard baseline: `none`, or (without it) the study's first regularizer, in the
    config's order (weight decay in the TUKL study)."""
    out: dict[str, str] = {}
    for cell in cells:
        regs = [c["reg"] for c in cells if c["study"] == cell["study"]]
        out[cell["study"]] = "none" if "none" in regs else regs[0]
    return out


def run_aggregate(results_root, cells: list[dict], roar_cells, enabled, out: dict) -> None:
    """`out` maps metrics, missing, summary, comparisons, ranking, scorecard, agreement, shortcut and the STACKED tables to paths;
    `enabled` names the optional per-cell stages the config runs."""
    groups = aggregate.group_tables(results_root, cells)  # once: the tidy metrics and their own table
    tidy, missing = aggregate.collect(results_root, cells, roar_cells, enabled=enabled, groups=groups)
    write_csv(out["metrics"], tidy)
    write_csv(out["missing"], missing)
    for name, filename in STACKED.items():
        write_csv(out[name], aggregate.concat_cell_tables(results_root, cells, filename))
    summary = stats.summarize(tidy)
    write_csv(out["summary"], summary)
    write_csv(out["comparisons"], stats.compare_to_baseline(tidy))
    write_csv(out["ranking"], stats.ranking(summary))
    write_csv(out["scorecard"], stats.scorecard(tidy, baselines=baselines(cells)))
    write_csv(out["agreement"], stats.agreement(tidy))
    write_csv(out["shortcut"], stats.shortcut_detection(tidy))
    write_csv(out["dissect_groups"], groups)


def run_figures(tables_dir, results_root, out_dir, cells: list[dict], workers: int = 1, svg: bool = True) -> list[str]:
    return plots.study_figures(tables_dir, results_root, out_dir, cells, workers, svg)


def run_report(tables_dir, figures_dir, config: dict, out_path) -> None:
    report.build(tables_dir, figures_dir, config, out_path)
