# One training job per cell.


def train_params(wildcards):
    cell = cell_of(wildcards)
    study = CFG["studies"][cell.study]
    return {
        "cell": cell.as_dict(),
        "variants": CFG["regularizers"],
        "train": study["train"],
        "model": study["model"],
        "device": CFG["device"],
    }


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
    threads: 1
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/train.py"


rule train_all:
    input:
        train_targets(),
