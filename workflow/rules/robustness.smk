# Attacks (FGSM / PGD curves) and diagnostics (decision boundaries, calibration, weights, PCA).
rule attack:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("attack"),
    params:
        cfg=canonical(CFG["robustness"]),
    log:
        analysis_log("attack"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("attack", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/attack.py"


rule diagnose:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("diagnose"),
    params:
        cfg=canonical(CFG["robustness"]),
    log:
        analysis_log("diagnose"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("diagnose", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/diagnose.py"
