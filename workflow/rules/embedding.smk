# t-SNE of each image cell's penultimate representation, with its trustworthiness and kNN accuracy
# (reglens.embedding).
rule embedding:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("embedding"),
    params:
        cfg=canonical({key: value for key, value in CFG["embedding"].items() if key != "enabled"}),
    log:
        analysis_log("embedding"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("embedding", packed=True),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/embedding.py"
