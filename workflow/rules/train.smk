# One training job per cell.


rule train:
    input:
        data=study_dataset_file,
    output:
        model=f"{CELL_DIR}/model.pt",
        history=f"{CELL_DIR}/history.csv",
        metrics=f"{CELL_DIR}/metrics.json",
    params:
        run=train_params,
    log:
        "logs/train/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    retries: RESUMABLE_RETRIES
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/train.py"


rule train_all:
    input:
        train_targets(),
