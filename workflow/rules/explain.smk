# Attribution maps and their metrics ("where"); activation maximization ("what").
EXPLAIN_DIR = CELL_DIR + "/explain"


rule explain:
    input:
        model=CELL_DIR + "/model.pt",
        data=study_dataset_file,
    output:
        maps=EXPLAIN_DIR + "/maps.pt",
        metrics=EXPLAIN_DIR + "/metrics.csv",
        mprt=EXPLAIN_DIR + "/mprt.csv",
        agreement=EXPLAIN_DIR + "/agreement.csv",
    params:
        cfg=CFG["explain"],
        device=CFG["device"],
    log:
        "logs/explain/{study}/{arch}/{reg}/seed{seed}.log",
    threads: 1
    script:
        "../scripts/explain.py"


rule actmax:
    input:
        model=CELL_DIR + "/model.pt",
    output:
        images=EXPLAIN_DIR + "/actmax.pt",
    params:
        cfg=CFG["actmax"],
        device=CFG["device"],
    log:
        "logs/actmax/{study}/{arch}/{reg}/seed{seed}.log",
    threads: 1
    script:
        "../scripts/actmax.py"
