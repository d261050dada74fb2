# ROAR / KAR for the base cells of config roar.cells: rank -> retrain (every point of one base cell and
# method in one job, plus the leakage controls) -> score. What does not depend on the base model, the
# clean 0 % point and the random baseline, is trained once per study and learner.
# ROAD for every cell: its own model on imputed images, no retraining.
localrules:
    roar_score,


wildcard_constraints:
    method=r"[a-z_]+",
    learner=r"[a-z0-9_]+",


rule roar_rank:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        analysis_file("roar", "ranks"),
    params:
        cfg=canonical({key: ROAR[key] for key in ("batch_size", "options")}),
    log:
        reglens_layout.cell_log("roar_rank", "method"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("roar_rank"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/roar_rank.py"


rule roar_baseline:
    input:
        data=lambda wildcards: ancient(checked(study_data(wildcards.study))),
    output:
        ROAR_BASELINE,
    params:
        learner=roar_baseline_learner,
        cfg=roar_settings(),
    log:
        "logs/roar_baseline/{study}/{learner}.log",
    threads: config["torch_threads"]
    resources:
        **slurm_resources("roar_baseline"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/roar_baseline.py"


rule roar_retrain:
    input:
        data=study_dataset_file,
        ranks=intact(analysis_file("roar", "ranks")),
    output:
        analysis_file("roar", "retrain"),
    params:
        learner=roar_learner,
        cfg=roar_settings(),
    log:
        reglens_layout.cell_log("roar_retrain", "method"),
    threads: config["torch_threads"]
    retries: RESUMABLE_RETRIES
    resources:
        **slurm_resources("roar_retrain"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/roar_retrain.py"


rule roar_score:
    input:
        baseline=lambda wildcards: checked(roar_baseline_file(cell_of(wildcards))),
        retrains=lambda wildcards: [checked(analysis_file("roar", "retrain").format(**dict(wildcards.items()), method=method))
                                    for method in ROAR["methods"] if method != "random"],
    output:
        **analysis_outputs("roar"),
    log:
        analysis_log("roar_score"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/roar_score.py"


rule road:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("road"),
    params:
        cfg=canonical({key: value for key, value in CFG["road"].items() if key != "enabled"}),
    log:
        analysis_log("road"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("road"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/road.py"
