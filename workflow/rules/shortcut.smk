# Planted-shortcut studies: each cell's reliance on the mark, and how well each attribution method
# finds it (the study's dataset is planted once, in data.smk).


rule shortcut:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        data=study_dataset_file,
    output:
        scores=f"{CELL_DIR}/shortcut/scores.csv",
        maps=f"{CELL_DIR}/shortcut/maps.pt",
    params:
        cfg=canonical(CFG["shortcut"]),
        options=canonical(CFG["explain"]["options"]),
    wildcard_constraints:
        study=one_of(SHORTCUT_STUDIES),
    log:
        "logs/shortcut/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/shortcut.py"
