# Attribution maps and their metrics ("where"); activation maximization ("what").
rule explain:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("explain"),
    params:
        cfg=canonical(CFG["explain"]),
    log:
        analysis_log("explain"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("explain", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/explain.py"


rule actmax:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("actmax"),
    params:
        cfg=canonical(CFG["actmax"]),
    log:
        analysis_log("actmax"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("actmax", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/actmax.py"
