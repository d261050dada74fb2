# ROAR / KAR for the base cells of config roar.cells: rank -> ablate -> retrain -> score.
ROAR_DIR = f"{CELL_DIR}/roar"


wildcard_constraints:
    method=r"[a-z_]+",
    mode=r"roar|kar",
    fraction=r"[0-9]+(\.[0-9]+)?",


rule roar_rank:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        data=study_dataset_file,
    output:
        f"{ROAR_DIR}/{{method}}/ranks.pt",
    params:
        cfg={key: ROAR[key] for key in ("batch_size", "options")},
    log:
        "logs/roar_rank/{study}/{arch}/{reg}/seed{seed}/{method}.log",
    threads: 1
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/roar_rank.py"


rule roar_ablate:
    input:
        ranks=intact(f"{ROAR_DIR}/{{method}}/ranks.pt"),
        data=study_dataset_file,
    output:
        temp(f"{ROAR_DIR}/{{method}}/{{mode}}_{{fraction}}/data.pt"),
    log:
        "logs/roar_ablate/{study}/{arch}/{reg}/seed{seed}/{method}/{mode}_{fraction}.log",
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/roar_ablate.py"


rule roar_retrain:
    input:
        f"{ROAR_DIR}/{{method}}/{{mode}}_{{fraction}}/data.pt",
    output:
        f"{ROAR_DIR}/{{method}}/{{mode}}_{{fraction}}/retrain.json",
    params:
        learner=roar_learner,
    log:
        "logs/roar_retrain/{study}/{arch}/{reg}/seed{seed}/{method}/{mode}_{fraction}.log",
    threads: 1
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/roar_retrain.py"


rule roar_score:
    input:
        lambda wildcards: roar_retrain_targets(CELL_DIR.format(**wildcards)),
    output:
        curves=f"{ROAR_DIR}/curves.csv",
        scores=f"{ROAR_DIR}/scores.csv",
    log:
        "logs/roar_score/{study}/{arch}/{reg}/seed{seed}.log",
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/roar_score.py"
