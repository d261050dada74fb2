# Attribution maps and their metrics ("where"); activation maximization ("what").
EXPLAIN_DIR = f"{CELL_DIR}/explain"


rule explain:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        data=study_dataset_file,
    output:
        maps=f"{EXPLAIN_DIR}/maps.pt",
        metrics=f"{EXPLAIN_DIR}/metrics.csv",
        mprt=f"{EXPLAIN_DIR}/mprt.csv",
        agreement=f"{EXPLAIN_DIR}/agreement.csv",
    params:
        cfg=canonical(CFG["explain"]),
    log:
        "logs/explain/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/explain.py"


rule actmax:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        data=study_dataset_file,
    output:
        images=f"{EXPLAIN_DIR}/actmax.pt",
        table=f"{EXPLAIN_DIR}/actmax.csv",
    params:
        cfg=canonical(CFG["actmax"]),
    log:
        "logs/actmax/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/actmax.py"
