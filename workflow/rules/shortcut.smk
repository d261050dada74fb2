# Planted-shortcut studies: each cell's reliance on the mark, and how well each attribution method
# finds it (the study's dataset is planted once, in data.smk).


rule shortcut:
    input:
        model=intact(analysis_file("train", "model")),
        data=study_dataset_file,
    output:
        **analysis_outputs("shortcut"),
    params:
        cfg=canonical(CFG["shortcut"]),
        options=canonical(CFG["explain"]["options"]),
    wildcard_constraints:
        study=one_of(SHORTCUT_STUDIES),
    log:
        analysis_log("shortcut"),
    threads: config["torch_threads"]
    resources:
        **slurm_resources("shortcut"),
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/shortcut.py"
