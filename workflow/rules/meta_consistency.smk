# MetaQuantus's criteria of each per-image explainability measure on a cell's own model: scores under
# small and disruptive perturbations of the model and of the input (reglens.meta_consistency).
rule meta_consistency:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("meta_consistency"),
    params:
        cfg=canonical({key: value for key, value in CFG["meta_consistency"].items() if key != "enabled"}),
    log:
        analysis_log("meta_consistency"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("meta_consistency"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/meta_consistency.py"
