# Attacks (FGSM / PGD curves) and diagnostics (decision boundaries, calibration, weights, PCA).
ROB_DIR = f"{CELL_DIR}/robustness"


rule attack:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        data=study_dataset_file,
    output:
        attacks=f"{ROB_DIR}/attacks.csv",
    params:
        cfg=canonical(CFG["robustness"]),
    log:
        "logs/attack/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/attack.py"


rule diagnose:
    input:
        model=intact(f"{CELL_DIR}/model.pt"),
        data=study_dataset_file,
    output:
        boundary=f"{ROB_DIR}/boundary.csv",
        boundary_maps=f"{ROB_DIR}/boundary_maps.pt",
        calibration=f"{ROB_DIR}/calibration.json",
        reliability=f"{ROB_DIR}/reliability.csv",
        weights=f"{ROB_DIR}/weights.csv",
        weight_hist=f"{ROB_DIR}/weight_hist.csv",
        features=f"{ROB_DIR}/features.pt",
        spectrum=f"{ROB_DIR}/spectrum.csv",
        pca=f"{ROB_DIR}/pca.csv",
    params:
        cfg=canonical(CFG["robustness"]),
    log:
        "logs/diagnose/{study}/{arch}/{reg}/seed{seed}.log",
    threads: config["torch_threads"]
    conda:
        "../envs/reglens.yaml"
    script:
        "../scripts/diagnose.py"
