# Aggregate every per-cell output into tidy tables; figures and report build on these.


rule aggregate:
    input:
        [f for pattern in reglens_aggregate.stage_files(CELL_DIR) for f in cell_paths(pattern)],
    output:
        metrics="results/tables/metrics.csv",
        missing="results/tables/missing.csv",
    params:
        cells=[cell.as_dict() for cell in CELLS],
    log:
        "logs/aggregate.log",
    script:
        "../scripts/aggregate.py"
